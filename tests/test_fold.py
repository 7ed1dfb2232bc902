"""Tests of mire2e_viz.fold: RNAfold wrapper, profile decoding and comparison."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mire2e_viz import fold as F
from mire2e_viz.errors import InputError
from mire2e_viz.sequences import iter_fasta

DATA = Path(__file__).parents[2] / "shared" / "data"
HAIRPINS = DATA / "mirbase" / "hairpin_v22_hsa.fa"
VIRAL_FOLD = DATA / "viral" / "pre-miRNAs_virus.fold"

needs_data = pytest.mark.skipif(not HAIRPINS.exists(), reason="shared data not available")

LET7A1 = "UGGGAUGAGGUAGUAGGUUGUAUAGUUUUAGGGUCACACCCACCACUGGGAGAUAACUAUACAAUCUACUGUCUUUCCUA"
LET7A1_DB = "(((((.(((((((((((((((((((((.....(((...((((....)))).)))))))))))))))))))))))))))))"


def read_fasta(path: Path, names: set[str] | None = None) -> dict[str, str]:
    """Sequences of a FASTA file by record name (all, or only ``names``), via the library's reader."""
    return {r.name: r.sequence for r in iter_fasta(path) if names is None or r.name in names}


def read_fold_file(path: Path, n: int) -> list[tuple[str, str, str, float]]:
    """First ``n`` records of an RNAfold output file: name, sequence, structure, MFE."""
    lines = [ln.rstrip("\n") for ln in open(path)]
    recs = []
    for i, ln in enumerate(lines):
        if ln.startswith(">") and i + 2 < len(lines):
            db, mfe = lines[i + 2].rsplit("(", 1)
            recs.append((ln[1:].split()[0], lines[i + 1].strip(), db.strip(), float(mfe.strip(" )"))))
            if len(recs) == n:
                break
    return recs


# --------------------------------------------------------------------------- folding


@needs_data
def test_let7a1_matches_known_rnafold_result():
    seq = read_fasta(HAIRPINS, {"hsa-let-7a-1"})["hsa-let-7a-1"]
    assert seq == LET7A1
    res = F.fold_one(seq)
    assert res.mfe == pytest.approx(-34.20, abs=1e-6)
    assert res.structure == LET7A1_DB
    assert res.sequence == seq
    assert len(res) == len(seq)


@needs_data
@pytest.mark.skipif(not VIRAL_FOLD.exists(), reason="shared data not available")
def test_matches_published_rnafold_output():
    recs = read_fold_file(VIRAL_FOLD, 12)
    assert len(recs) == 12
    results = F.fold([r[1] for r in recs], processes=1)
    for (name, _, db, mfe), res in zip(recs, results, strict=True):
        assert res.structure == db, name
        assert res.mfe == pytest.approx(mfe, abs=0.005), name


def test_dna_and_lowercase_fold_like_rna():
    rna = F.fold_one(LET7A1)
    dna = F.fold_one(LET7A1.replace("U", "T").lower())
    assert dna.sequence == LET7A1
    assert dna.structure == rna.structure and dna.mfe == rna.mfe


def test_profile_encoding_of_fold():
    res = F.fold_one(LET7A1)
    prof = res.profile
    assert prof.dtype == np.float32 and prof.shape == (len(LET7A1),)
    assert set(np.unique(prof)) <= {-1.0, 0.0, 1.0}
    assert (prof == 1).sum() == (prof == -1).sum() == len(res.pairs)


def test_single_string_and_empty_inputs():
    assert len(F.fold("GGGGAAAACCCC")) == 1
    with pytest.raises(InputError):
        F.fold([""])


def test_cache_hits_and_identity():
    F.clear_cache()
    a = F.fold(["GGGAAAUCCCAGCGCGAAAGCGC", "ACGUACGUACGU"])
    info = F.cache_info()
    assert info["misses"] == 2 and info["size"] == 2
    b = F.fold(["ACGUACGUACGU", "GGGAAAUCCCAGCGCGAAAGCGC"])
    assert F.cache_info()["hits"] == 2
    assert b[1] is a[0] and b[0] is a[1]  # no re-fold: the very same objects
    # duplicates in one batch are folded once
    F.clear_cache()
    F.fold(["GGGAAACCC"] * 5)
    assert F.cache_info()["size"] == 1


def test_batches_fan_out_over_processes_with_the_same_results():
    rng = np.random.default_rng(7)
    seqs = ["".join(rng.choice(list("ACGU"), 30)) for _ in range(F.PARALLEL_THRESHOLD + 6)]
    F.clear_cache()
    par = F.fold(seqs, processes=2)
    F.clear_cache()
    ser = F.fold(seqs, processes=1)
    assert [r.structure for r in par] == [r.structure for r in ser]
    assert [r.mfe for r in par] == [r.mfe for r in ser]


def test_base_pair_probabilities():
    F.clear_cache()
    plain = F.fold_one(LET7A1)
    assert plain.bpp is None
    with pytest.raises(InputError):
        _ = plain.expected_profile
    res = F.fold_one(LET7A1, bpp=True)  # re-folds: the cached entry had no bpp
    n = len(LET7A1)
    assert res.bpp.shape == (n, n)
    np.testing.assert_allclose(res.bpp, res.bpp.T)
    assert np.all(res.bpp.sum(axis=1) <= 1 + 1e-4)
    exp = res.expected_profile
    assert np.all(np.abs(exp) <= 1 + 1e-5)
    paired = res.profile != 0
    # the MFE structure dominates this hairpin's ensemble
    assert np.mean(np.sign(exp[paired]) == res.profile[paired]) > 0.9
    assert F.fold_one(LET7A1).bpp is not None  # the cache now holds the bpp version


# --------------------------------------------------------------------------- encodings


def test_profile_from_dotbracket_and_base_pairs():
    db = "((..[[..))..]]"
    np.testing.assert_array_equal(
        F.profile_from_dotbracket(db), [1, 1, 0, 0, 1, 1, 0, 0, -1, -1, 0, 0, -1, -1]
    )
    assert F.base_pairs(db) == {(0, 9), (1, 8), (4, 13), (5, 12)}
    assert F.base_pairs("....") == set()
    for bad in ("(()", "())", ")("):
        with pytest.raises(InputError):
            F.base_pairs(bad)


def test_bp_scores():
    assert F.bp_scores("((...))", "((...))") == (1.0, 1.0, 1.0)
    assert F.bp_scores(".......", ".......") == (1.0, 1.0, 1.0)
    assert F.bp_scores(".......", "((...))") == (0.0, 0.0, 0.0)
    assert F.bp_scores("((...))", ".......") == (0.0, 0.0, 0.0)
    p, r, f = F.bp_scores("(.(...))", "((....))")  # pairs {(0,7),(2,6)} vs {(0,7),(1,6)}
    assert (p, r) == (0.5, 0.5) and f == pytest.approx(0.5)
    p, r, f = F.bp_scores("(......)", "((....))")
    assert (p, r) == (1.0, 0.5) and f == pytest.approx(2 / 3)
    with pytest.raises(InputError):
        F.bp_scores("..", "...")


def test_profile_classes():
    np.testing.assert_array_equal(
        F.profile_classes(np.array([0.9, 0.51, 0.5, 0.0, -0.49, -0.6, -1.0])),
        [1, 1, 0, 0, 0, -1, -1],
    )


# --------------------------------------------------------------------------- decoding


@st.composite
def dotbrackets(draw, max_len: int = 70, min_loop: int = 3) -> str:
    """Random balanced dot-brackets whose pairs enclose at least ``min_loop`` nt."""
    n = draw(st.integers(0, max_len))

    def gen(n: int) -> str:
        if n == 0:
            return ""
        if n < min_loop + 2 or draw(st.booleans()):
            return "." + gen(n - 1)
        k = draw(st.integers(min_loop + 1, n - 1))  # pair (0, k)
        return "(" + gen(k - 1) + ")" + gen(n - k - 1)

    return gen(n)


def check_valid(db: str, n: int, min_loop: int, seq: str | None = None) -> None:
    assert len(db) == n
    assert set(db) <= set("().")
    pairs = F.base_pairs(db)  # raises if unbalanced
    for i, j in pairs:
        assert j - i > min_loop
        if seq is not None:
            assert (seq[i], seq[j]) in F._CANONICAL


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dotbrackets())
def test_true_structure_decodes_back(db):
    assert F.dotbracket_from_profile(F.profile_from_dotbracket(db), min_loop=3) == db


@settings(max_examples=60, deadline=None)
@given(dotbrackets(max_len=50, min_loop=0), st.integers(0, 3))
def test_true_structure_decodes_back_for_each_min_loop(db, min_loop):
    # structures generated with min_loop=0 decode back whenever they satisfy min_loop
    pairs = F.base_pairs(db)
    decoded = F.dotbracket_from_profile(F.profile_from_dotbracket(db), min_loop=min_loop)
    check_valid(decoded, len(db), min_loop)
    if all(j - i > min_loop for i, j in pairs):
        assert decoded == db


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1.5, 1.5), st.just(float("nan"))), min_size=0, max_size=80),
    st.integers(0, 4),
)
def test_decoded_profile_is_always_valid(values, min_loop):
    db = F.dotbracket_from_profile(np.array(values, dtype=float), min_loop=min_loop)
    check_valid(db, len(values), min_loop)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_decoding_with_sequence_pairs_only_canonical(data):
    n = data.draw(st.integers(0, 60))
    seq = "".join(data.draw(st.lists(st.sampled_from("ACGUT"), min_size=n, max_size=n)))
    prof = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)), dtype=float)
    db = F.dotbracket_from_profile(prof, sequence=seq)
    check_valid(db, n, 3, seq.replace("T", "U"))


def _all_structures(n: int, min_loop: int) -> list[str]:
    """Every valid structure of length n (brute force, small n only)."""
    memo: dict[int, list[str]] = {}

    def gen(m: int) -> list[str]:
        if m in memo:
            return memo[m]
        if m == 0:
            return [""]
        out = ["." + s for s in gen(m - 1)]
        for k in range(min_loop + 1, m):
            for inner, rest in itertools.product(gen(k - 1), gen(m - k - 1)):
                out.append("(" + inner + ")" + rest)
        memo[m] = out
        return out

    return gen(n)


@pytest.mark.parametrize("seed", range(6))
def test_decoder_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 11
    structures = _all_structures(n, 3)
    for _ in range(5):
        prof = rng.uniform(-1, 1, n)
        best = min(np.abs(prof - F.profile_from_dotbracket(s)).sum() for s in structures)
        got = F.dotbracket_from_profile(prof, min_loop=3)
        cost = np.abs(prof - F.profile_from_dotbracket(got)).sum()
        assert cost == pytest.approx(best, abs=1e-9)


def test_decoding_recovers_a_noisy_real_hairpin():
    ref = F.fold_one(LET7A1)
    rng = np.random.default_rng(0)
    noisy = np.clip(ref.profile + rng.normal(0, 0.3, len(LET7A1)), -1, 1)
    db = F.dotbracket_from_profile(noisy, sequence=LET7A1)
    assert F.bp_scores(db, ref.structure)[2] > 0.9


def test_decoding_is_fast():
    rng = np.random.default_rng(1)
    prof = rng.uniform(-1, 1, 100)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        F.dotbracket_from_profile(prof)
        times.append(time.perf_counter() - t)
    assert min(times) < 0.1


def test_decoder_rejects_bad_arguments():
    with pytest.raises(InputError):
        F.dotbracket_from_profile(np.zeros(5), min_loop=-1)
    with pytest.raises(InputError):
        F.dotbracket_from_profile(np.zeros(5), sequence="ACG")


# --------------------------------------------------------------------------- compare


@needs_data
def test_compare_windows_against_rnafold():
    seqs = read_fasta(HAIRPINS, {"hsa-let-7a-1", "hsa-mir-21", "hsa-mir-155"})
    windows = []
    for name, seq in sorted(seqs.items()):
        ref = F.fold_one(seq)
        padded = np.zeros(100, dtype=np.float32)  # a zero-padded window's profile
        padded[: len(seq)] = ref.profile
        windows.append(SimpleNamespace(sequence=seq, profile=padded, mfe=ref.mfe - 1.5,
                                       score=0.9, name=name))
    df = F.compare(windows)
    assert list(df["name"]) == sorted(seqs)
    expected_cols = {"profile_accuracy", "bp_precision", "bp_recall", "bp_f1", "mfe_pred",
                     "mfe_rnafold", "mfe_error", "structure_pred", "structure_rnafold"}
    assert expected_cols <= set(df.columns)
    assert (df["profile_accuracy"] == 1).all() and (df["decoded_accuracy"] == 1).all()
    assert (df["bp_f1"] == 1).all()
    assert (df["structure_pred"] == df["structure_rnafold"]).all()
    np.testing.assert_allclose(df["mfe_error"], -1.5, atol=1e-6)
    assert df.loc[df["name"] == "hsa-let-7a-1", "mfe_rnafold"].item() == pytest.approx(-34.2)
    assert (df["score"] == 0.9).all()


def test_compare_with_plain_sequences_and_wrong_profiles():
    ref = F.fold_one(LET7A1)
    flipped = -ref.profile  # every pair reversed: all paired positions wrong
    df = F.compare([LET7A1, LET7A1], profiles=[ref.profile, flipped], mfes=[-30.0, -20.0])
    assert df["profile_accuracy"].iloc[0] == 1.0
    unpaired = np.mean(ref.profile == 0)
    assert df["profile_accuracy"].iloc[1] == pytest.approx(unpaired)
    assert df["bp_f1"].iloc[1] < 0.5
    np.testing.assert_allclose(df["mfe_error"], [-30.0 + 34.2, -20.0 + 34.2])
    assert df["score"].isna().all()
    with pytest.raises(InputError):
        F.compare([LET7A1])  # plain sequences need profiles and MFEs
    with pytest.raises(InputError):
        F.compare([LET7A1], profiles=[np.zeros(10)], mfes=[-1.0])  # too short
