from __future__ import annotations

import numpy as np
import pytest
import torch

from mire2e_viz import Cascade
from mire2e_viz.cascade import CascadeResult, default_device
from mire2e_viz.errors import InputError, SequenceError

LET7A1 = "UGGGAUGAGGUAGUAGGUUGUAUAGUUUUAGGGUCACACCCACCACUGGGAGAUAACUAUACAAUCUACUGUCUUUCCUA"


@pytest.fixture(scope="module")
def cascade():
    return Cascade.untrained_model(seed=2, device="cpu")


def test_run_returns_every_stage(cascade):
    out = cascade.run([LET7A1, "ACGU" * 25, "acgunnnnRYacgu"])
    assert isinstance(out, CascadeResult) and len(out) == 3
    assert out.profile.shape == (3, 100) and out.profile.dtype == np.float32
    assert out.mfe.shape == out.score.shape == out.mfe_raw.shape == (3,)
    assert np.all(np.abs(out.profile) <= 1) and np.all((out.score >= 0) & (out.score <= 1))
    # padding carries no prediction
    assert (out.profile[0, 80:] == 0).all() and (out.profile[2, 14:] == 0).all()
    # kcal/mol = -max(raw, 0) * real length
    np.testing.assert_allclose(out.mfe, -np.clip(out.mfe_raw, 0, None) * out.lengths, rtol=1e-6)


def test_dna_rna_and_case_give_identical_outputs(cascade):
    a = cascade.run([LET7A1]).score[0]
    b = cascade.run([LET7A1.replace("U", "T").lower()]).score[0]
    assert a == pytest.approx(b, abs=1e-7)


def test_window_object(cascade):
    w = cascade.window(LET7A1, name="let-7a-1", start=10, strand="-")
    assert w.sequence == LET7A1 and w.profile.shape == (80,) and w.end == 90 and w.strand == "-"
    assert "let-7a-1:10-90(-)" in repr(w)
    frame = cascade.run([LET7A1, LET7A1[:50]]).to_frame()
    assert list(frame.columns) == ["sequence", "length", "score", "mfe", "mfe_raw"]


def test_errors(cascade):
    with pytest.raises(SequenceError, match="record 'sequence 2', position 2"):
        cascade.run(["ACGU", "AXGU"])
    with pytest.raises(InputError, match="use mire2e_viz.scan|Use mire2e_viz.scan"):
        cascade.run(["A" * 150])
    with pytest.raises(ValueError, match="no sequences"):
        cascade.run([])
    with pytest.raises(ValueError, match="precision"):
        Cascade.untrained_model(precision="fp8")


def test_untrained_is_loud(cascade):
    assert not cascade.is_trained and "UNTRAINED" in cascade.describe()
    with pytest.warns(UserWarning, match="not predictions"):
        cascade.run([LET7A1])


def test_eval_mode_and_device(cascade):
    assert not cascade.structure.training and not cascade.classifier.training
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cascade.device.type == "cpu"


def test_bf16_autocast_agrees_with_fp32():
    a = Cascade.untrained_model(seed=4, device="cpu")
    b = Cascade.untrained_model(seed=4, device="cpu", bf16=True)
    seqs = [LET7A1, "GCAUGC" * 16]
    ra, rb = a.run(seqs), b.run(seqs)
    assert b.precision == "bf16"
    assert np.abs(ra.score - rb.score).max() < 0.01
    assert np.abs(ra.profile - rb.profile).max() < 0.05
