"""scripts/device_train.py: the one-call GPU structure run, exercised end to end on the CPU.

The device machine starts bare and sees neither ``../shared`` nor ViennaRNA, so the
test runs the exact command ``prepare`` prints, from a folder holding only the
package, the script and the bundle, with the shared data directory pointed nowhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mire2e_viz import trainingdata as td

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("device_train", ROOT / "scripts" / "device_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def tiny_cache(tmp_path, monkeypatch) -> Path:
    """A cache folder with a 24-window labelled table, as ``trainingdata.load_windows`` writes it."""
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGU"), int(rng.integers(70, 101)))) for _ in range(24)]
    n = len(seqs)
    ws = td.WindowSet(seqs, (np.arange(n) % 2).astype(np.int64), np.array(["genomic"] * n), np.array([""] * n),
                      np.array([f"w{i}" for i in range(n)]), np.array(["train"] * 18 + ["val"] * 6))
    arrays = ws.arrays(processes=1)
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / "windows_seed0.pkl", "wb") as fh:
        pickle.dump((dict(vars(ws)), arrays), fh)
    monkeypatch.setenv("MIRE2E_CACHE_DIR", str(cache))
    return cache


def test_device_command_trains_from_the_bundle_alone(tiny_cache, tmp_path):
    dt = _script()
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("mire2e_viz", "scripts"):
        (repo / name).symlink_to(ROOT / name)
    res = dt.prepare(1.0, "hsa", 0, repo=repo, overrides={
        "device": "cpu", "autocast": None, "batch_size": 4, "max_steps": 3, "eval_every": 3,
        "eval_windows": 6, "threads": 1})
    assert res["carry"] == [".devtrain"]
    assert (repo / ".devtrain" / "cache" / "windows_seed0.pkl").is_file()
    assert json.loads((repo / ".devtrain" / "config.json").read_text())["init"] == "hsa"
    # the device command as printed, on this CPU: the interpreter of this test, and no GPU check
    command = res["command"].replace("python3", f'"{sys.executable}"').replace(" check ", " check --allow-cpu ")
    out = tmp_path / "OUT"
    env = {k: v for k, v in os.environ.items() if k not in ("MIRE2E_CACHE_DIR", "PYTHONPATH")}
    proc = subprocess.run(["bash", "-c", command], cwd=repo, env={**env, "OUT": str(out)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPU run" in proc.stdout
    ck = torch.load(out / "structure.pt", weights_only=True, map_location="cpu")
    state = ck["model"]
    assert "optimizer" not in ck and ck["stage"] == "structure"
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert sum(p.stat().st_size for p in out.iterdir()) < 16e6  # the device brings back 16 MB a file
    run = json.loads((out / "run.json").read_text())
    assert run["step"] == 3 and run["config"]["init"] == "hsa"
    assert run["last_eval"]["val_acc3"] > 0.3  # shipped weights, six random windows
    # the export is an initialisation for any later training config
    # and a record entry for make_model_card.py --export
    from mire2e_viz.model import build
    from mire2e_viz.train import _run_entry, load_state

    build("structure").load_state_dict(load_state(out / "structure.pt", "structure"))
    entry = _run_entry(out / "structure.pt", ck)
    assert entry["steps"] == 3 and entry["batch_size"] == 4 and entry["hardware"]


def test_local_init_travels_as_a_state_dict(tiny_cache, tmp_path):
    dt = _script()
    from mire2e_viz.model import build

    ck = tmp_path / "run.pt"
    torch.save({"model": build("structure").state_dict()}, ck)
    repo = tmp_path / "repo"
    repo.mkdir()
    res = dt.prepare(2.0, str(ck), 0, repo=repo)
    assert res["config"]["init"] == ".devtrain/init.pt" and res["config"]["max_minutes"] == 2.0
    assert res["config"]["device"] == "cuda"
    assert set(torch.load(repo / ".devtrain" / "init.pt", weights_only=True)) == set(build("structure").state_dict())


def test_check_refuses_a_machine_without_gpu():
    dt = _script()
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        assert "torch" in dt.check()
    else:
        with pytest.raises(SystemExit, match="sees no CUDA GPU"):
            dt.check()


def test_prepare_without_a_window_table_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRE2E_CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="windows_seed0.pkl not found"):
        _script().prepare(1.0, "hsa", 0, repo=tmp_path)
