"""Tests of mire2e_viz.plot (and the annotation reader) under Agg, with real inputs.

Image regression: the key figures are compared with ``tests/baseline/*.png``
by matplotlib's ``compare_images``. Regenerate the baselines with

    MIRE2E_UPDATE_BASELINES=1 pytest tests/test_plot.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.testing.compare import compare_images  # noqa: E402

from mire2e_viz import fold as F  # noqa: E402
from mire2e_viz import plot as P  # noqa: E402
from mire2e_viz.annotations import features_in_window, read_annotations  # noqa: E402
from mire2e_viz.encoding import reverse_complement  # noqa: E402
from mire2e_viz.errors import InputError  # noqa: E402
from mire2e_viz.sequences import iter_fasta

DATA = Path(__file__).parents[2] / "shared" / "data"
CHR19 = DATA / "genomic" / "mire2e_example_chr19_13836201_13836660_true.fa"
GFF = DATA / "mirbase" / "hsa_v22_GRCh38.gff3"
HAIRPINS = DATA / "mirbase" / "hairpin_v22_hsa.fa"
# 0-based genomic position of the FASTA's first nucleotide. The file is named
# 13836201-13836660 but holds 459 nt: it starts at 1-based 13836202, as the
# hairpin check below proves (offset 13836200 puts every hairpin 1 nt off).
OFFSET = 13836201
BASELINE = Path(__file__).parent / "baseline"
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
UPDATE = os.environ.get("MIRE2E_UPDATE_BASELINES") == "1"
TOL = 5.0  # RMS, 0-255 scale

pytestmark = pytest.mark.skipif(not CHR19.exists(), reason="shared data not available")


# --------------------------------------------------------------------------- fixtures


def read_fasta(path: Path, names: set[str] | None = None) -> dict[str, str]:
    """Sequences of a FASTA file by record name (all, or only ``names``), via the library's reader."""
    return {r.name: r.sequence for r in iter_fasta(path) if names is None or r.name in names}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def chr19() -> str:
    return "".join(read_fasta(CHR19).values())


@pytest.fixture(scope="module")
def annotations() -> pd.DataFrame:
    return read_annotations(GFF, "chr19", OFFSET, OFFSET + 459)


@pytest.fixture(scope="module")
def scan_df(chr19, annotations) -> pd.DataFrame:
    """A scan table over the real locus: windows every 20 nt on both strands.

    Scores are synthetic but deterministic: high over the three annotated
    (minus-strand) hairpins, low elsewhere.
    """
    starts = np.r_[np.arange(0, len(chr19) - 100 + 1, 20), len(chr19) - 100]
    hp = annotations[annotations["type"] == "miRNA_primary_transcript"]
    centres = ((hp["start"] + hp["end"]) / 2 - OFFSET).to_numpy()
    rng = np.random.default_rng(3)
    rows = []
    for strand in ("+", "-"):
        for s in starts:
            c = s + 50
            score = 0.05 + 0.1 * rng.random()
            if strand == "-":
                score = max(score, float(np.max(0.97 * np.exp(-(((c - centres) / 25) ** 2)))))
            rows.append(("chr19", int(s), int(s) + 100, strand, score, -25.0 - 10 * rng.random()))
    return pd.DataFrame(rows, columns=["seqname", "start", "end", "strand", "score", "mfe"])


@pytest.fixture(scope="module")
def candidates(scan_df) -> pd.DataFrame:
    rows = []
    hits = scan_df[(scan_df["score"] >= 0.5)].sort_values(["strand", "start"])
    for (seqname, strand), g in hits.groupby(["seqname", "strand"]):
        st, en, sc = g["start"].to_numpy(), g["end"].to_numpy(), g["score"].to_numpy()
        new = np.r_[True, st[1:] > np.maximum.accumulate(en)[:-1]]
        ids = np.cumsum(new) - 1
        for k in range(ids[-1] + 1):
            idx = np.flatnonzero(ids == k)
            b = idx[np.argmax(sc[idx])]
            rows.append((seqname, st[idx].min(), en[idx].max(), strand, sc[b], st[b], en[b],
                         len(idx), f"cand{len(rows) + 1}"))
    return pd.DataFrame(rows, columns=["seqname", "start", "end", "strand", "score",
                                       "best_start", "best_end", "n_windows", "name"])


@pytest.fixture(scope="module")
def mir23a_window(chr19, annotations):
    """A 100-nt minus-strand window holding hsa-mir-23a, with a noisy 'prediction'."""
    end = len(chr19)
    start = end - 100
    seq = reverse_complement(chr19[start:end])
    ref = F.fold_one(seq)
    rng = np.random.default_rng(0)
    profile = np.clip(ref.profile + rng.normal(0, 0.35, len(seq)), -1, 1)
    win = SimpleNamespace(sequence=seq, profile=profile, mfe=ref.mfe + 3.1, score=0.93,
                          name="chr19", start=start + OFFSET, end=end + OFFSET, strand="-")
    matures = features_in_window(annotations, start + OFFSET, end + OFFSET, "-")
    return win, ref, matures


def check_image(fig, name: str, tol: float = TOL) -> None:
    """Compare a figure with ``tests/baseline/<name>.png`` (or rewrite it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    actual = ARTIFACTS / f"{name}.png"
    P.save_figure(fig, actual, dpi=72)
    expected = BASELINE / f"{name}.png"
    if UPDATE:
        BASELINE.mkdir(exist_ok=True)
        shutil.copyfile(actual, expected)
        return
    if not expected.exists():
        pytest.fail(f"no baseline {expected}; create it with MIRE2E_UPDATE_BASELINES=1")
    err = compare_images(str(expected), str(actual), tol=tol)
    assert err is None, err


# --------------------------------------------------------------------------- annotations


def test_read_gff3_is_zero_based_half_open(annotations):
    hp = annotations.set_index("name")
    # GFF3: chr19 13836587..13836659 (1-based inclusive)
    assert (hp.loc["hsa-mir-23a", "start"], hp.loc["hsa-mir-23a", "end"]) == (13836586, 13836659)
    assert hp.loc["hsa-mir-23a", "strand"] == "-"
    assert (annotations["type"] == "miRNA_primary_transcript").sum() == 3
    assert (annotations["type"] == "miRNA").sum() == 6
    assert hp.loc["hsa-miR-23a-3p", "parent"] == hp.loc["hsa-mir-23a", "id"] == "MI0000079"
    assert list(annotations.columns[:7]) == ["seqname", "start", "end", "strand", "name",
                                             "type", "id"]


def test_annotation_coordinates_match_the_sequences(chr19, annotations):
    hairpins = read_fasta(HAIRPINS, {"hsa-mir-23a", "hsa-mir-27a", "hsa-mir-24-2"})
    for row in annotations[annotations["type"] == "miRNA_primary_transcript"].itertuples():
        local = chr19[row.start - OFFSET: row.end - OFFSET]
        assert reverse_complement(local) == hairpins[row.name]
    # the mature arm in window coordinates is the known hsa-miR-23a-3p sequence
    end = len(chr19)
    mats = features_in_window(annotations, end - 100 + OFFSET, end + OFFSET, "-")
    window = reverse_complement(chr19[end - 100:end])
    a, b = mats["hsa-miR-23a-3p"]
    assert window[a:b] == "AUCACAUUGCCAGGGAUUUCC"


def test_read_bed_and_filters(tmp_path):
    bed = tmp_path / "x.bed"
    bed.write_text("track name=x\nchr1\t100\t200\tfoo\t0\t+\nchr1\t500\t600\nchr2\t0\t10\tbar\t0\t-\n")
    df = read_annotations(bed)
    assert len(df) == 3 and df.loc[0, "name"] == "foo" and df.loc[1, "strand"] == "."
    assert list(read_annotations(bed, "chr1", 150, 550)["name"]) == ["foo", "chr1:500-600"]
    assert read_annotations(bed, "chr1", 200, 500).empty  # half-open: no overlap
    with pytest.raises(InputError):
        read_annotations(tmp_path / "missing.gff3")


# --------------------------------------------------------------------------- score track


def test_score_track_lanes_labels_and_limits(scan_df, candidates, annotations):
    fig = P.score_track(scan_df, candidates, GFF, offset=OFFSET)
    assert isinstance(fig, plt.Figure)
    labels = [ax.get_label() for ax in fig.axes]
    assert labels == ["score +", "score -", "annotation"]
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((OFFSET, OFFSET + 459))
    ann_ax = fig.axes[-1]
    gids = [p.get_gid() or "" for p in ann_ax.patches]
    assert sum(g.startswith("hairpin:") for g in gids) == 3
    assert sum(g.startswith("mature:") for g in gids) == 6
    texts = [t.get_text() for t in ann_ax.texts]
    for name in ("hsa-mir-23a", "hsa-mir-27a", "hsa-mir-24-2"):
        assert any(name in t for t in texts)
    minus = fig.axes[1]
    assert sum((p.get_gid() or "").startswith("candidate:") for p in minus.patches) == 3
    assert not any((p.get_gid() or "").startswith("candidate:") for p in fig.axes[0].patches)
    assert "chr19" in ann_ax.get_xlabel() and "kb" in ann_ax.get_xlabel()
    assert fig.axes[0].get_ylim() == (0, 1.08)
    # threshold line at 0.5 on both score lanes
    for ax in fig.axes[:2]:
        assert any(np.allclose(ln.get_ydata(), 0.5) for ln in ax.lines if ln.get_linestyle() == "--")


def test_score_track_mirrored_into_given_axes(scan_df, candidates, annotations):
    fig, ax = plt.subplots(figsize=(7, 3))
    out = P.score_track(scan_df, candidates, annotations, offset=OFFSET, layout="mirrored", ax=ax)
    assert out is fig
    assert [a.get_label() for a in fig.axes] == ["score", "annotation"]
    assert fig.axes[0].get_ylim() == (-1.08, 1.08)
    # minus-strand scores are drawn downwards
    lines = {ln.get_gid(): ln for ln in fig.axes[0].lines}
    assert lines["score-"].get_ydata().max() <= 0 < lines["score+"].get_ydata().min()


def test_score_track_without_annotations_and_errors(scan_df):
    fig = P.score_track(scan_df, threshold=None)
    assert len(fig.axes) == 2
    two = pd.concat([scan_df, scan_df.assign(seqname="chr1")])
    with pytest.raises(InputError):
        P.score_track(two)
    assert len(P.score_track(two, seqname="chr1").axes) == 2
    with pytest.raises(InputError):
        P.score_track(scan_df.drop(columns="score"))


def test_score_track_scales_to_megabases_and_keeps_peaks(annotations):
    n = 150_000  # windows per strand: 3 Mb at step 20
    starts = np.arange(n, dtype=np.int64) * 20
    rng = np.random.default_rng(5)
    score = rng.random(n) * 0.3
    score[[1234, 77777, 140001]] = [0.99, 0.95, 0.91]
    df = pd.DataFrame({"seqname": "chr19", "start": np.r_[starts, starts],
                       "end": np.r_[starts, starts] + 100, "strand": ["+"] * n + ["-"] * n,
                       "score": np.r_[score, score[::-1]], "mfe": -20.0})
    off = 12_000_000
    fig = P.score_track(df, annotations=GFF, offset=off, max_points=1500)
    plus = next(ln for ln in fig.axes[0].lines if ln.get_gid() == "score+")
    x, y = plus.get_xdata(), plus.get_ydata()
    assert len(x) <= 1500
    assert y.max() == pytest.approx(0.99)
    assert x[np.argmax(y)] == pytest.approx(off + 1234 * 20 + 50)
    assert np.sum(y > 0.9) == 3
    assert "Mb" in fig.axes[-1].get_xlabel()
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]
    assert labels and all("," not in lab or "." in lab for lab in labels)
    hp = [p for p in fig.axes[-1].patches if (p.get_gid() or "").startswith("hairpin:")]
    assert len(hp) > 3  # the chr19 miRNAs between 12 and 15 Mb
    assert all(p.get_width() >= 3e6 * 0.004 * 0.99 for p in hp)  # visible at this scale


def test_genomic_formatter():
    fmt = P.GenomicFormatter("kb")
    fmt.set_locs([13836200, 13836300, 13836400])
    assert fmt(13836300) == "13,836.3"
    fmt = P.GenomicFormatter("Mb")
    fmt.set_locs([12_000_000, 12_500_000, 13_000_000])
    assert fmt(12_500_000) == "12.5"
    assert P.GenomicFormatter.choose_unit(0, 459) == "bp"
    assert P.GenomicFormatter.choose_unit(13836200, 13836659) == "kb"
    assert P.GenomicFormatter.choose_unit(12e6, 15e6) == "Mb"


# --------------------------------------------------------------------------- profile


def test_profile_comparison(mir23a_window):
    win, ref, _ = mir23a_window
    ax = P.profile_comparison(win, ref)
    expected = np.flatnonzero(F.profile_classes(win.profile) != ref.profile.astype(np.int8))
    assert len(expected) > 0
    spans = [p for p in ax.patches if p.get_gid() == "disagree"]
    assert len(spans) == len(expected)
    np.testing.assert_array_equal(ax._mire2e_disagree, expected)
    assert ax.get_xlim() == (-0.5, 99.5) and ax.get_ylim() == (-1.25, 1.25)
    # letters on the x-axis when they fit, numbers when they do not
    assert "".join(t.get_text() for t in ax.get_xticklabels()) == win.sequence
    fig, small = plt.subplots(figsize=(2.5, 1.5))
    P.profile_comparison(win, ref.structure, ax=small)
    assert "".join(t.get_text() for t in small.get_xticklabels()) != win.sequence
    assert small.get_xlabel() == "position in window (nt)"


def test_profile_comparison_folds_when_not_given():
    seq = "GGGGAAACCCCAUAUGGGAAACCC"
    ax = P.profile_comparison(seq, predicted=F.profile_from_dotbracket(F.fold_one(seq).structure))
    assert len([p for p in ax.patches if p.get_gid() == "disagree"]) == 0
    with pytest.raises(InputError):
        P.profile_comparison(seq, predicted=np.zeros(3))


# --------------------------------------------------------------------------- hairpin


def _letters(ax):
    return [t for t in ax.texts if t.get_gid() == "letter"]


def test_hairpin_draws_every_base_and_restores_the_vienna_global(mir23a_window):
    import RNA

    win, ref, matures = mir23a_window
    RNA.cvar.rna_plot_type = 0
    try:
        ax = P.hairpin(win.sequence, ref.structure, matures=matures, title="RNAfold")
        assert RNA.cvar.rna_plot_type == 0
    finally:
        RNA.cvar.rna_plot_type = 1
    circles = [p for p in ax.patches if (p.get_gid() or "").startswith("nt")]
    assert len(circles) == len(win.sequence)
    assert "".join(t.get_text() for t in _letters(ax)) == win.sequence
    halos = {ln.get_gid() for ln in ax.lines if (ln.get_gid() or "").startswith("mature:")}
    assert halos == {"mature:hsa-miR-23a-5p", "mature:hsa-miR-23a-3p"}
    assert {t.get_text() for t in ax.texts if t.get_gid() == "mature-label"} == set(matures)
    pairs = [c for c in ax.collections if c.get_gid() == "basepairs"]
    assert len(pairs) == 1 and len(pairs[0].get_segments()) == len(ref.pairs)
    ends = {t.get_text() for t in ax.texts if t.get_gid() == "end-label"}
    assert ends == {"5'", "3'"}
    # colours follow the bases
    from mire2e_viz.style import BASE_COLORS

    assert matplotlib.colors.to_hex(circles[0].get_facecolor()) == BASE_COLORS[win.sequence[0]].lower()


@pytest.mark.parametrize(
    "structure",
    ["." * 30, "((((....))))..((((....))))..((((....))))", "(((((..((((....))))..((((....))))..)))))"],
    ids=["no-pairs", "three-hairpins", "multiloop"],
)
def test_hairpin_handles_unusual_structures(structure):
    rng = np.random.default_rng(len(structure))
    seq = "".join(rng.choice(list("ACGU"), len(structure)))
    ax = P.hairpin(seq, structure)
    ax.figure.canvas.draw()
    assert len(_letters(ax)) == len(seq)


def test_hairpin_long_structure_stays_readable():
    seq = read_fasta(HAIRPINS, {"hsa-mir-3648-1"})["hsa-mir-3648-1"]
    assert len(seq) >= 150
    ref = F.fold_one(seq)
    fig, ax = plt.subplots(figsize=(3, 3))
    P.hairpin(seq, ref.structure, ax=ax)
    fig.canvas.draw()
    # letters never outgrow their circles: each is hidden or fits the 13-unit diameter
    ppu = [c for c in ax.get_children() if isinstance(c, P._DataScaler)][0].points_per_unit()
    for t in _letters(ax):
        assert (not t.get_visible()) or t.get_fontsize() <= 13 * ppu
    assert not any(t.get_visible() for t in _letters(ax))  # 3 in is too small for 180 nt
    big, bax = plt.subplots(figsize=(16, 16))
    P.hairpin(seq, ref.structure, ax=bax)
    big.canvas.draw()
    assert all(t.get_visible() for t in _letters(bax))


def test_hairpin_rejects_bad_input():
    with pytest.raises(InputError):
        P.hairpin("ACGUACGU", "((..))")
    with pytest.raises(InputError):
        P.hairpin("ACGUAC", "((..).")


def test_hairpin_comparison_marks_pairs_absent_from_rnafold(mir23a_window):
    win, ref, matures = mir23a_window
    pred = F.dotbracket_from_profile(win.profile, sequence=win.sequence)
    fig = P.hairpin_comparison(win.sequence, ref, pred, matures=matures)
    assert len(fig.axes) == 2
    extra = len(F.base_pairs(pred) - F.base_pairs(ref.structure))
    lc = [c for c in fig.axes[1].collections if c.get_gid() == "basepairs"][0]
    purple = matplotlib.colors.to_rgba(P.COLORS["pair_extra"])
    assert sum(np.allclose(c, purple) for c in lc.get_colors()) == extra
    assert "RNAfold" in fig.axes[0].get_title(loc="center")


# --------------------------------------------------------------------------- MFE scatter


def _mfe_table():
    seqs = read_fasta(HAIRPINS)
    names = sorted(n for n, s in seqs.items() if len(s) <= 100)[:60]
    refs = F.fold([seqs[n] for n in names], processes=1)
    rng = np.random.default_rng(11)
    ref = np.array([r.mfe for r in refs])
    pred = ref * 0.9 + rng.normal(0, 3, ref.size)
    return pred, ref


def test_mfe_scatter_stats_and_identity_line():
    pred, ref = _mfe_table()
    ax = P.mfe_scatter(pred, ref)
    stats = ax._mire2e_stats
    assert stats["n"] == len(ref)
    assert stats["r"] == pytest.approx(np.corrcoef(pred, ref)[0, 1])
    assert stats["mae"] == pytest.approx(np.mean(np.abs(pred - ref)))
    ident = [ln for ln in ax.lines if ln.get_gid() == "identity"][0]
    np.testing.assert_allclose(ident.get_xdata(), ident.get_ydata())
    assert ax.get_xlim() == ax.get_ylim() and ax.get_xlim()[1] >= 0
    box = [t for t in ax.texts if t.get_gid() == "stats"][0].get_text()
    assert f"r = {stats['r']:.2f}" in box and "MAE" in box and "kcal/mol" in box
    df = pd.DataFrame({"mfe_pred": pred, "mfe_rnafold": ref})
    assert P.mfe_scatter(df)._mire2e_stats["mae"] == pytest.approx(stats["mae"])
    with pytest.raises(InputError):
        P.mfe_scatter(pred, ref[:-1])


# --------------------------------------------------------------------------- stage panel


def test_stage_panel_has_every_stage(mir23a_window):
    win, ref, matures = mir23a_window
    fig = P.stage_panel(win, rnafold=ref, matures=matures)
    labels = [a.get_label() for a in fig.axes]
    for lab in ("sequence", "profile", "hairpin rnafold", "hairpin predicted", "mfe", "score"):
        assert lab in labels
    titles = " ".join(a.get_title(loc="left") for a in fig.axes)
    for stage in ("Stage 1", "Stage 2", "Stage 3"):
        assert stage in titles
    seq_ax = fig.axes[labels.index("sequence")]
    assert len([p for p in seq_ax.patches if p.get_gid() == "base"]) == len(win.sequence)
    score_ax = fig.axes[labels.index("score")]
    bar = [p for p in score_ax.patches if p.get_gid() == "score-bar"][0]
    assert bar.get_width() == pytest.approx(0.93)
    assert f"{win.start + 1:,}\u2013{win.end:,} (\u2212)" in seq_ax.get_title(loc="left")


# --------------------------------------------------------------------------- saving


def test_save_figure_formats_sizes_and_editable_text(tmp_path, mir23a_window):
    win, ref, _ = mir23a_window
    ax = P.profile_comparison(win, ref)
    png = P.save_figure(ax, tmp_path / "p.png", dpi=100, size=(120, 60), units="mm")
    from PIL import Image

    with Image.open(png) as im:
        assert abs(im.size[0] - round(120 / 25.4 * 100)) <= 1
        assert abs(im.size[1] - round(60 / 25.4 * 100)) <= 1
    P.save_figure(ax.figure, tmp_path / "t.png", transparent=True, dpi=50)
    with Image.open(tmp_path / "t.png") as im:
        assert im.mode == "RGBA" and np.asarray(im)[..., 3].min() == 0
    svg = P.save_figure(ax.figure, tmp_path / "p.svg").read_text()
    assert "<text" in svg and "RNAfold MFE structure" in svg
    assert "<dc:date>" not in svg
    pdf = P.save_figure(ax.figure, tmp_path / "p.pdf", size=(4, 2), units="in").read_bytes()
    assert b"/FontFile2" in pdf  # TrueType embedded: text stays text
    with pytest.raises(InputError):
        P.save_figure(ax.figure, tmp_path / "p.jpg")


def test_plot_module_does_not_import_torch():
    code = "import sys, mire2e_viz.plot; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_function_calls_show(monkeypatch, scan_df, mir23a_window):
    def boom(*a, **k):
        raise AssertionError("plt.show() called")

    monkeypatch.setattr(plt, "show", boom)
    win, ref, matures = mir23a_window
    P.score_track(scan_df)
    P.profile_comparison(win, ref)
    P.hairpin(win.sequence, ref.structure)
    P.mfe_scatter([-1.0, -2.0, -3.0], [-1.5, -2.5, -2.0])
    P.stage_panel(win, rnafold=ref)


# --------------------------------------------------------------------------- image regression


def test_image_score_track(scan_df, candidates):
    check_image(P.score_track(scan_df, candidates, GFF, offset=OFFSET), "score_track")


def test_image_profile_comparison(mir23a_window):
    win, ref, _ = mir23a_window
    check_image(P.profile_comparison(win, ref).figure, "profile_comparison")


def test_image_hairpin(mir23a_window):
    win, ref, matures = mir23a_window
    check_image(P.hairpin(win.sequence, ref.structure, matures=matures).figure, "hairpin")


def test_image_mfe_scatter():
    pred, ref = _mfe_table()
    check_image(P.mfe_scatter(pred, ref).figure, "mfe_scatter")


def test_image_stage_panel(mir23a_window):
    win, ref, matures = mir23a_window
    check_image(P.stage_panel(win, rnafold=ref, matures=matures), "stage_panel")
