from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mire2e_viz import Cascade, call_candidates, export, scan, window_result
from mire2e_viz.encoding import reverse_complement
from mire2e_viz.errors import InputError
from mire2e_viz.scan import window_starts
from mire2e_viz.sequences import Record, read_records

# hsa-let-7a-1 (miRBase MI0000060), 80 nt
LET7A1 = "UGGGAUGAGGUAGUAGGUUGUAUAGUUUUAGGGUCACACCCACCACUGGGAGAUAACUAUACAAUCUACUGUCUUUCCUA"


@pytest.fixture(scope="module")
def cascade():
    return Cascade.untrained_model(seed=1, device="cpu")


def _random(n, seed=0):
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("ACGT"), n))


@pytest.mark.parametrize("length,step", [(100, 20), (101, 20), (459, 20), (1000, 7), (250, 1000)])
def test_windows_cover_the_3prime_tail(length, step):
    starts = window_starts(length, step)
    assert starts[0] == 0 and starts[-1] + 100 == length
    assert (np.diff(starts) <= step).all() and (np.diff(starts) > 0).all()


def test_short_sequence_is_one_padded_window(cascade):
    df = scan("ACGUACGUAGCUAGCUAGCUAGCUGAUCGAUCG", cascade=cascade)
    assert len(df) == 2 and set(df["strand"]) == {"+", "-"}
    assert (df["start"] == 0).all() and (df["end"] == 33).all() and (df["length"] == 33).all()
    alone = cascade.run(["ACGUACGUAGCUAGCUAGCUAGCUGAUCGAUCG"]).score[0]
    assert df.loc[df.strand == "+", "score"].iloc[0] == pytest.approx(alone, abs=1e-6)


def test_scan_table_is_tidy_and_matches_the_cascade(cascade):
    seq = _random(530, seed=3)
    df = scan(seq, cascade=cascade, step=20)
    assert list(df.columns[:6]) == ["seqname", "start", "end", "strand", "score", "mfe"]
    n = len(window_starts(530, 20))
    assert (df.groupby("strand").size() == n).all()
    assert ((df["end"] - df["start"]) == 100).all()
    assert df.attrs["coordinates"].startswith("0-based half-open")
    row = df[(df.strand == "+") & (df.start == 40)].iloc[0]
    assert row["score"] == pytest.approx(cascade.run([seq[40:140]]).score[0], abs=1e-6)
    assert (df["mfe"] <= 0).all()


def test_hairpin_planted_on_minus_strand_maps_back(cascade):
    left, right = _random(300, seed=4), _random(300, seed=5)
    dna = left + reverse_complement(LET7A1).replace("U", "T") + right  # hairpin on the minus strand
    start = len(left) - 10  # the 100-nt window holding the 80-nt hairpin plus 10 nt each side
    df = scan({"chrT": dna}, cascade=cascade, step=10)
    row = df[(df.strand == "-") & (df.start == start)].iloc[0]
    assert row["end"] == start + 100
    win = window_result({"chrT": next(read_records(dna, name="chrT"))}, row, cascade)
    assert win.sequence[10:90] == LET7A1
    assert win.strand == "-" and win.start == start
    assert win.score == pytest.approx(row["score"], abs=1e-6)
    plus = df[(df.strand == "+") & (df.start == start)].iloc[0]
    assert plus["score"] != pytest.approx(row["score"], abs=1e-6)


def test_streaming_in_small_chunks_gives_the_same_table(cascade):
    seq = _random(900, seed=6)
    a = scan(seq, cascade=cascade, step=13)
    b = scan(seq, cascade=cascade, step=13, chunk_windows=5)
    pd.testing.assert_frame_equal(a, b)


def test_multi_record_fasta_and_strand_choice(tmp_path, cascade):
    p = tmp_path / "two.fa"
    p.write_text(f">chr1:1001-1300\n{_random(300, 1)}\n>seqB\n{_random(150, 2)}\n")
    df = scan(p, cascade=cascade, step=50, strands="-")
    assert set(df["strand"]) == {"-"}
    assert set(df["seqname"]) == {"chr1", "seqB"}
    assert df[df.seqname == "chr1"]["start"].min() == 1000
    assert df[df.seqname == "chr1"]["end"].max() == 1300


@pytest.mark.parametrize("step", [0, -5, 2.5])
def test_bad_step(step, cascade):
    with pytest.raises(InputError, match="step"):
        scan("ACGU" * 40, cascade=cascade, step=step)


def test_bad_strand(cascade):
    with pytest.raises(InputError, match="strands"):
        scan("ACGU" * 40, cascade=cascade, strands="up")


def _windows(rows):
    return pd.DataFrame(rows, columns=["seqname", "start", "end", "strand", "score", "mfe"])


def test_candidates_merge_overlapping_windows():
    w = _windows([
        ("c", 0, 100, "+", 0.9, -30), ("c", 20, 120, "+", 0.95, -35), ("c", 40, 140, "+", 0.6, -20),
        ("c", 60, 160, "+", 0.2, -10), ("c", 300, 400, "+", 0.7, -25), ("c", 20, 120, "-", 0.8, -31),
    ])
    cands = call_candidates(w, threshold=0.5)
    assert len(cands) == 3
    best = cands.iloc[0]
    assert (best.start, best.end, best.score, best.best_start, best.n_windows) == (0, 140, 0.95, 20, 3)
    assert set(cands.strand) == {"+", "-"}
    assert list(cands.name) == ["cand1", "cand2", "cand3"]
    assert call_candidates(w, threshold=0.99).empty


def test_candidates_carry_the_strand_margin():
    w = _windows([
        ("c", 0, 100, "+", 0.9, -30), ("c", 20, 120, "+", 0.95, -35), ("c", 300, 400, "+", 0.7, -25),
        ("c", 20, 120, "-", 0.8, -31), ("c", 100, 200, "-", 0.99, -40), ("c", 400, 500, "-", 0.1, -5),
        ("d", 300, 400, "-", 0.2, -9),
    ])
    cands = call_candidates(w, threshold=0.5).set_index(["strand", "best_start"])
    # + region, best window 20-120: the - windows overlapping it are 20-120 (0.8) and 100-200 (0.99)
    assert cands.loc[("+", 20), "opposite_score"] == pytest.approx(0.99)
    assert cands.loc[("+", 20), "strand_margin"] == pytest.approx(-0.04)
    # - region, best window 100-200: + window 20-120 (0.95) overlaps it, 0-100 only touches it
    assert cands.loc[("-", 100), "opposite_score"] == pytest.approx(0.95)
    assert cands.loc[("-", 100), "strand_margin"] == pytest.approx(0.04)
    # + 300-400: the - window 400-500 only touches it, and another seqname never counts
    assert np.isnan(cands.loc[("+", 300), "opposite_score"]) and np.isnan(cands.loc[("+", 300), "strand_margin"])
    one = call_candidates(w[w.strand == "+"], threshold=0.5)
    assert len(one) == 2 and one["strand_margin"].isna().all()
    assert list(call_candidates(w, 0.5).columns) == list(call_candidates(w.iloc[:0], 0.5).columns)


def test_exports_open_in_igv_formats(tmp_path):
    w = _windows([("chr19", 13836300, 13836400, "-", 0.91, -40.2), ("chr19", 13836320, 13836420, "-", 0.5, -30)])
    cands = call_candidates(w, 0.4)
    bed = export(cands, tmp_path / "c.bed").read_text().splitlines()
    assert bed[0].startswith("track")
    assert bed[1].split("\t") == ["chr19", "13836300", "13836420", "cand1", "910", "-"]
    gff = export(cands, tmp_path / "c.gff3").read_text().splitlines()
    assert gff[0] == "##gff-version 3"
    f = gff[1].split("\t")
    assert f[:8] == ["chr19", "mire2e-viz", "pre_miRNA", "13836301", "13836420", "0.9100", "-", "."]
    assert "ID=cand1" in f[8] and "strand_margin" not in f[8]  # one strand scanned: no margin
    both = pd.concat([w, _windows([("chr19", 13836300, 13836400, "+", 0.41, -20.0)])])
    assert "strand_margin=0.500" in export(call_candidates(both, 0.45), tmp_path / "b.gff3").read_text()
    back = pd.read_csv(export(w, tmp_path / "w.csv"))
    assert list(back["start"]) == [13836300, 13836320]
    assert export(w, tmp_path / "w.gff3").read_text().count("\tregion\t") == 2
    with pytest.raises(InputError, match="unknown output format"):
        export(w, tmp_path / "w.xlsx")


def test_scan_accepts_records_with_offsets(cascade):
    rec = next(read_records(_random(200, 9), name="x"))
    rec = Record(name="x", codes=rec.codes, seqname="chr2", offset=5000)
    df = scan(rec, cascade=cascade, step=50)
    assert df["start"].min() == 5000 and df["end"].max() == 5200 and set(df.seqname) == {"chr2"}
