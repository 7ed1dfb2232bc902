"""The notebooks: committed without outputs, and each runs top to bottom from a clean kernel, offline.

Also checks that the Binder environment (``binder/requirements.txt``) lists the same packages
as ``pyproject.toml``.

The notebooks run through nbclient in a temporary working directory, so the files they
write (figures, exports) never land in the repository. ``pytest --nbmake notebooks/`` runs
them too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = [
    "01_quickstart.ipynb",
    "02_inside_the_cascade.ipynb",
    "03_locus_explorer.ipynb",
    "04_figures.ipynb",
    "05_train_your_own.ipynb",
]


def test_all_notebooks_present():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing "
        "(Edit > Clear Outputs of All Cells, or `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`)"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_before = dict(os.environ)
    os.environ["MPLBACKEND"] = "Agg"  # the kernel inherits it
    os.environ.setdefault("MIRE2E_CACHE_DIR", str(tmp_path / "cache"))  # offline: data come from the local dir
    try:
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


# --------------------------------------------------------------------------- binder


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    out = set()
    for req in requirements:
        req = req.split("#", 1)[0].strip()
        if not req or req.startswith("-"):
            continue
        out.add(_norm(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]))
    return out


#: intentional differences between pyproject.toml and binder/requirements.txt
INTENTIONAL = {
    # the package itself is installed by binder/postBuild (pip install --no-deps -e .)
    "mire2e-viz": "installed by binder/postBuild",
}
#: pyproject extras that Binder installs (the test extras are for CI, not for visitors)
BINDER_EXTRAS = ("notebook",)


def test_binder_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in BINDER_EXTRAS:
        wanted |= _names(project["optional-dependencies"][extra])
    req_text = (REPO / "binder" / "requirements.txt").read_text().splitlines()
    have = _names(req_text)
    missing = wanted - have - set(INTENTIONAL)
    extra = have - wanted - set(INTENTIONAL)
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)} (listed in pyproject.toml)"
    assert not extra, f"binder/requirements.txt has {sorted(extra)}, not listed in pyproject.toml"
    # Binder has no GPU: torch must come from the CPU wheel index, pinned like the Makefile's
    assert any(line.strip().startswith("--extra-index-url https://download.pytorch.org/whl/cpu") for line in req_text)
    assert any(re.match(r"torch==\d", line.strip()) for line in req_text)
    # forgi's wheel is built against NumPy 1: it must be built from source
    assert any(line.strip() == "--no-binary forgi" for line in req_text)
    post = (REPO / "binder" / "postBuild").read_text()
    assert "pip install" in post and "-e ." in post and os.access(REPO / "binder" / "postBuild", os.X_OK)
