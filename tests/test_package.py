"""Packaging hygiene: a light import, the public names, ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = (
        "import sys, mire2e_viz; "
        "heavy = [m for m in ('torch', 'matplotlib', 'ipywidgets', 'pandas', 'RNA', 'forgi') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing mire2e_viz pulled in: {out}"


def test_public_api_names():
    from mire2e_viz import Cascade, scan

    assert callable(scan) and hasattr(Cascade, "from_files") and hasattr(Cascade, "pretrained")
    import inspect

    params = inspect.signature(scan).parameters
    assert list(params)[:4] == ["source", "cascade", "step", "strands"]
    assert params["step"].default == 20 and params["strands"].default == "both"
    sig = inspect.signature(Cascade.from_files).parameters
    assert sig["layout"].default == "reference" and all(sig[s].default is None for s in ("structure", "mfe", "classifier"))


def test_ruff_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "mire2e_viz", "tests", "bench"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
