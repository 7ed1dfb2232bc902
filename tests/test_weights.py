"""Shipped weights: records agree with files, load strictly, stay small."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from mire2e_viz import weights as W
from mire2e_viz.errors import WeightsError

REQUIRED_META = ("training_data", "recipe", "metrics", "date", "code_version", "layout")


def test_import_does_not_load_torch():
    code = "import mire2e_viz, sys; pre = 'torch' in sys.modules; import mire2e_viz.weights; print(pre, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[0] == "True":
        pytest.skip("the package itself imports torch")
    assert out[1] == "False"


def test_unknown_name_lists_available():
    with pytest.raises(WeightsError, match="available"):
        W.get("no-such-model")


@pytest.mark.skipif(not W.available(), reason="no weights shipped yet")
def test_hsa_is_available():
    assert "hsa" in W.available()


@pytest.mark.parametrize("name", W.available())
def test_records_match_files(name):
    recs = W.get(name)
    assert set(recs) == {"structure", "mfe", "classifier"}
    total = 0
    for stage, rec in recs.items():
        assert rec.name == name and rec.stage == stage
        rec.verify()
        assert W.sha256_file(rec.path) == rec.sha256
        total += rec.path.stat().st_size
        for key in REQUIRED_META:
            assert key in rec.meta, (stage, key)
        assert rec.meta["layout"] == "fixed"
    assert total < 15 * 1024 * 1024


@pytest.mark.parametrize("name", W.available())
def test_state_dicts_load_strictly(name):
    torch = pytest.importorskip("torch")
    from mire2e_viz.model import build

    for stage, rec in W.get(name).items():
        sd = rec.state_dict()
        assert all(v.dtype != torch.float16 for v in sd.values())
        model = build(stage)
        model.load_state_dict(sd, strict=True)


@pytest.mark.parametrize("name", W.available())
def test_checksum_mismatch_raises(name, tmp_path, monkeypatch):
    rec = W.get(name)["mfe"]
    shutil.copy(rec.path, tmp_path / rec.file)
    with open(tmp_path / rec.file, "ab") as fh:
        fh.write(b"\0")
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match="sha256"):
        rec.verify()
    with pytest.raises(WeightsError, match="sha256"):
        rec.state_dict()
    (tmp_path / rec.file).unlink()
    with pytest.raises(WeightsError, match="missing"):
        rec.verify()


def test_export_roundtrip(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from mire2e_viz.model import build

    model = build("classifier")
    info = W.export_state_dict(model.state_dict(), "classifier", tmp_path / "t-classifier.pt")
    assert any(k.startswith("med2tag.") for k in info["omitted"])
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    rec = W.Weights("t", "classifier", info["file"], info["sha256"], {"omitted": info["omitted"]})
    fresh = build("classifier")
    fresh.load_state_dict(rec.state_dict(), strict=True)
    ref = model.state_dict()
    got = fresh.state_dict()
    for k, v in ref.items():
        if k in info["omitted"]:
            continue
        assert (got[k].float() - v.float()).abs().max() <= 1e-2 * max(1.0, float(v.abs().max()))
    doc = {"name": "t", "stages": {s: {"file": info["file"], "sha256": info["sha256"], "meta": {}} for s in W.STAGES}}
    (tmp_path / "t.json").write_text(json.dumps(doc))
    assert W.available() == ["t"]
    assert dataclasses.is_dataclass(W.get("t")["mfe"])


@pytest.mark.parametrize("name", [n for n in W.available() if n == "hsa"])
def test_model_card_is_generated_from_records(name):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_model_card", root / "scripts" / "make_model_card.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (root / "MODEL_CARD.md").read_text() == mod.render(name)


def test_recommended_threshold_is_the_recorded_operating_point():
    """Shipped weights default to their 90 %-recall threshold (rounded down); anything else to 0.5."""
    import math

    from mire2e_viz import Cascade

    cascade = Cascade.pretrained("hsa", device="cpu")
    recorded = W.get("hsa")["classifier"].meta["metrics"]["genomic"]["threshold_recall90"]
    thr = cascade.recommended_threshold
    assert thr == math.floor(recorded * 100) / 100 and recorded - 0.01 < thr <= recorded
    assert Cascade.untrained_model(device="cpu").recommended_threshold == 0.5
    # a cascade from bare state-dict files has no record to take an operating point from
    path = W.get("hsa")["mfe"].path
    assert Cascade.from_files(mfe=path, device="cpu").recommended_threshold == 0.5
