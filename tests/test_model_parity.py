"""Our three networks against the reference implementation (PyPI mire2e 0.17), used only as an oracle."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mire2e_viz import encoding
from mire2e_viz.cascade import Cascade, check_state_dict, load_state_dict
from mire2e_viz.errors import WeightsError
from mire2e_viz.model import Classifier, MFEEstimator, StructurePredictor, n_parameters

warnings.filterwarnings("ignore", message="enable_nested_tensor")
ref_structure = pytest.importorskip("miRe2e.structure")
from miRe2e.aux import get_pe  # noqa: E402
from miRe2e.mfe import MFE  # noqa: E402
from miRe2e.predictor import Predictor  # noqa: E402
from miRe2e.structure import Structure  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
ORIGINAL = SHARED / "reference" / "original-weights"


def _randomise(ref: torch.nn.Module, seed: int) -> dict:
    """Random weights *and* BatchNorm statistics, so eval-mode BN is exercised."""
    g = torch.Generator().manual_seed(seed)
    sd = ref.state_dict()
    for k, v in sd.items():
        if not v.is_floating_point():
            continue
        if k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif k.endswith("pe"):
            continue
        else:
            v.copy_(torch.randn(v.shape, generator=g) * (0.1 if v.dim() > 1 else 0.3))
    ref.load_state_dict(sd)
    return sd


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    lengths = np.array([100, 100, 83, 61, 100, 45, 100, 100])
    seqs = ["".join(rng.choice(list("ACGU"), n)) for n in lengths]
    seqs[4] = seqs[4][:30] + "N" * 5 + seqs[4][35:]
    codes, lens = encoding.pad_codes(seqs)
    x = torch.from_numpy(encoding.one_hot(codes))
    return x, torch.from_numpy(lens)


@pytest.fixture(scope="module")
def pairs():
    torch.manual_seed(0)
    out = {}
    for i, (name, ref, ours) in enumerate(
        [("structure", Structure("cpu"), StructurePredictor()), ("mfe", MFE("cpu"), MFEEstimator()),
         ("classifier", Predictor("cpu"), Classifier("reference"))]
    ):
        sd = _randomise(ref, seed=10 + i)
        ours.load_state_dict(sd, strict=True)
        out[name] = (ref.eval(), ours.eval())
    return out


@pytest.mark.parametrize("stage", ["structure", "mfe", "classifier"])
def test_parameter_count_and_keys_match_reference(pairs, stage):
    ref, ours = pairs[stage]
    assert n_parameters(ours) == n_parameters(ref)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ref.state_dict().items()
    }


def test_published_parameter_counts():
    # the totals implied by the reference implementation (supplementary tables + compat modules)
    assert n_parameters(StructurePredictor()) == 4_408_606
    assert n_parameters(MFEEstimator()) == 156_135
    assert n_parameters(Classifier()) == 2_893_274


def test_structure_pe_matches_reference(batch):
    _, lens = batch
    ours = encoding.structure_pe(lens.numpy())
    ref = get_pe(lens.int(), 100).float().numpy()
    np.testing.assert_array_equal(ours, ref)


def test_every_stage_matches_reference(pairs, batch):
    x, lens = batch
    pe = torch.from_numpy(encoding.structure_pe(lens.numpy()))
    with torch.no_grad():
        s_ref = pairs["structure"][0](x, get_pe(lens.int(), 100).float())
        s = pairs["structure"][1](x, pe)
        np.testing.assert_allclose(s.numpy(), s_ref.squeeze(-1).numpy(), atol=1e-5)
        m_ref = pairs["mfe"][0](x, s_ref)
        m = pairs["mfe"][1](x, s)
        np.testing.assert_allclose(m.numpy(), m_ref.squeeze(-1).numpy(), atol=1e-5)
        c_ref = pairs["classifier"][0](x, s_ref, m_ref)[:, 0]
        c = pairs["classifier"][1](x, s, m)
        np.testing.assert_allclose(c.numpy(), c_ref.numpy(), atol=1e-5)
    assert float(c.std()) > 0, "scores should vary across windows"


def test_cascade_end_to_end_matches_reference_forward(pairs, batch):
    """Cascade.run in reference layout equals MiRe2e.forward on the same windows."""
    from miRe2e import MiRe2e

    ref = MiRe2e(pretrained="no", device="cpu")
    ref._structure, ref._mfe, ref._predictor = (pairs[s][0] for s in ("structure", "mfe", "classifier"))
    ref._eval()
    cascade = Cascade(*(pairs[s][1] for s in ("structure", "mfe", "classifier")), device="cpu")
    rng = np.random.default_rng(5)
    seqs = ["".join(rng.choice(list("ACGT"), 100)) for _ in range(12)]
    codes, lens = encoding.pad_codes(seqs)
    with torch.no_grad():
        want = ref.forward(torch.from_numpy(encoding.one_hot(codes)),
                           get_pe(torch.from_numpy(lens).int(), 100).float())[:, 0].numpy()
    got = cascade.run(seqs).score
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fixed_layout_is_batch_independent(pairs):
    """Our default classifier scores a window the same alone and in any batch."""
    torch.manual_seed(3)
    cascade = Cascade.untrained_model(seed=3, layout="fixed", device="cpu")
    # give the classifier the reference-randomised weights so the test is not trivially flat
    cascade.classifier.load_state_dict(pairs["classifier"][1].state_dict())
    rng = np.random.default_rng(7)
    seqs = ["".join(rng.choice(list("ACGU"), 100)) for _ in range(40)]
    alone = np.array([cascade.run([s]).score[0] for s in seqs[:5]])
    in_batch = cascade.run(seqs).score[:5]
    shuffled = cascade.run(seqs[:5][::-1] + seqs[20:]).score[:5][::-1]
    np.testing.assert_allclose(in_batch, alone, atol=1e-6)
    np.testing.assert_allclose(shuffled, alone, atol=1e-6)
    for bs in (1, 3, 16):
        np.testing.assert_allclose(cascade.run(seqs, batch_size=bs).score[:5], alone, atol=1e-6)


def test_reference_layout_is_batch_dependent(pairs):
    """Documents the reference quirk: a .view instead of a transpose mixes windows across the batch."""
    clf = pairs["classifier"][1]
    assert clf.layout == "reference"
    rng = np.random.default_rng(7)
    seqs = ["".join(rng.choice(list("ACGU"), 100)) for _ in range(16)]
    codes, _ = encoding.pad_codes(seqs)
    x = torch.from_numpy(encoding.one_hot(codes))
    prof = torch.from_numpy(rng.uniform(-1, 1, (16, 100)).astype(np.float32))
    mfe = torch.from_numpy(rng.uniform(0.2, 0.5, 16).astype(np.float32))
    with torch.no_grad():
        alone = clf.logits(x[:1], prof[:1], mfe[:1])[0]
        in_batch = clf.logits(x, prof, mfe)[0]
        fixed = Classifier("fixed").eval()
        fixed.load_state_dict(clf.state_dict())
        f_alone = fixed.logits(x[:1], prof[:1], mfe[:1])[0]
        f_batch = fixed.logits(x, prof, mfe)[0]
    assert (alone - in_batch).abs().max() > 1e-3, "reference layout should mix windows across the batch"
    torch.testing.assert_close(f_alone, f_batch, atol=1e-5, rtol=0)


def test_published_mfe_weights_load_strictly_and_match_reference():
    for name in ("mfe-hsa.pkl", "mfe.pkl"):
        path = ORIGINAL / name
        sd = torch.load(path, weights_only=True, map_location="cpu")
        ours = MFEEstimator()
        ours.load_state_dict(sd, strict=True)
        ref = MFE("cpu")
        ref.load_state_dict(sd)
        ours.eval(), ref.eval()
        rng = np.random.default_rng(2)
        seqs = ["".join(rng.choice(list("ACGU"), 100)) for _ in range(16)]
        codes, _ = encoding.pad_codes(seqs)
        x = torch.from_numpy(encoding.one_hot(codes))
        prof = torch.from_numpy(rng.choice([-1.0, 0.0, 1.0], (16, 100)).astype(np.float32))
        with torch.no_grad():
            np.testing.assert_allclose(ours(x, prof).numpy(), ref(x, prof.unsqueeze(-1)).squeeze(-1).numpy(), atol=1e-5)


def test_from_files_loads_original_mfe_and_flags_the_rest_untrained():
    cascade = Cascade.from_files(mfe=ORIGINAL / "mfe-hsa.pkl", device="cpu")
    assert cascade.untrained == ("structure", "classifier")
    assert not cascade.is_trained
    assert "UNTRAINED" in cascade.describe()
    assert cascade.classifier.layout == "reference"
    with pytest.warns(UserWarning, match="untrained"):
        out = cascade.run(["ACGU" * 25])
    assert out.profile.shape == (1, 100)


def test_bad_weights_files_name_the_keys(tmp_path):
    sd = StructurePredictor().state_dict()
    sd.pop("hidden2first.weight")
    sd["bogus.weight"] = torch.zeros(3)
    sd["med2tag.weight"] = torch.zeros(2, 2)
    p = tmp_path / "bad.pkl"
    torch.save(sd, p)
    with pytest.raises(WeightsError) as err:
        load_state_dict(p, StructurePredictor(), "structure")
    msg = str(err.value)
    assert "missing keys: hidden2first.weight" in msg
    assert "unexpected keys: bogus.weight" in msg
    assert "med2tag.weight (2, 2) != (1, 10)" in msg


def test_weights_are_never_unpickled_as_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    p = tmp_path / "evil.pkl"
    torch.save({"x": Evil()}, p)
    with pytest.raises(WeightsError, match="not a loadable weights file"):
        Cascade.from_files(structure=p)
    with pytest.raises(WeightsError, match="no such weights file"):
        Cascade.from_files(mfe=tmp_path / "missing.pkl")


def test_check_state_dict_accepts_matching():
    m = MFEEstimator()
    check_state_dict(m.state_dict(), MFEEstimator(), "x")
