"""environment.yml (conda) lists the same dependencies as pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge / bioconda name, where they differ
CONDA_NAME = {"torch": "pytorch-cpu", "matplotlib": "matplotlib-base", "viennarna": "viennarna"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_runtime() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in meta["dependencies"]}
    names |= {_name(r) for r in meta["optional-dependencies"]["notebook"]}
    return {CONDA_NAME.get(n, n) for n in names}


def _conda(path: Path) -> set[str]:
    env = yaml.safe_load(path.read_text())
    return {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}


def test_environment_yml_matches_pyproject():
    conda = _conda(ROOT / "environment.yml")
    runtime = _pyproject_runtime()
    assert runtime - conda == set(), f"in pyproject.toml but not in environment.yml: {sorted(runtime - conda)}"
    assert conda - runtime == set(), f"in environment.yml but not in pyproject.toml: {sorted(conda - runtime)}"


def test_environment_uses_conda_forge_and_bioconda():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][:2] == ["conda-forge", "bioconda"]
