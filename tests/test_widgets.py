"""LocusExplorer and SequencePlayground, driven from Python (no browser)."""

from __future__ import annotations

import gzip
import html

import numpy as np
import pytest

from mire2e_viz import widgets
from mire2e_viz.widgets import LocusExplorer, SequencePlayground

MIR23A = "GGCCGGCUGGGGUUCCUGGGGAUGGGAUUUGCUUCCUGUCACAAAUCACAUUGCCAGGGAUUUCCAACCGACC"


class Counting:
    """Wraps a cascade and records the number of windows of every run_codes call."""

    def __init__(self, cascade):
        self._c = cascade
        self.calls: list[int] = []

    def run_codes(self, codes, lengths=None, **kw):
        self.calls.append(len(codes))
        return self._c.run_codes(codes, lengths, **kw)

    def __getattr__(self, name):
        return getattr(self._c, name)

    def window(self, *a, **kw):  # Cascade.window calls self.run -> self.run_codes on the real object
        self.calls.append(1)
        return self._c.window(*a, **kw)


@pytest.fixture(scope="module")
def explorer(untrained_cascade, demo_record, tmp_path_factory):
    from mire2e_viz import datasets

    return LocusExplorer(demo_record, cascade=Counting(untrained_cascade), annotations=datasets.demo_annotation(),
                         step=10, threshold=0.5, output_dir=tmp_path_factory.mktemp("export"))


def _msg(w) -> str:
    return html.unescape(w.message.value)


def _no_error(w):
    assert "m2v-error" not in w.message.value, w.message.value


def test_explorer_scans_and_shows_a_window(explorer, demo_record):
    _no_error(explorer)
    assert len(explorer.df) == 2 * 37  # 459 nt, step 10: 36 regular windows + the tail, both strands
    assert explorer.progress.value == explorer.progress.max
    assert explorer.track_png[:4] == b"\x89PNG" and explorer.panel.value[:4] == b"\x89PNG"
    assert "<img class='m2v-track'" in explorer.track.value and "onclick=" in explorer.track.value
    w = explorer.window
    assert len(w.sequence) == 100 and w.profile.shape == (100,)
    assert f"{w.start + 1:,}-{w.end:,}" in explorer.window_label.value
    # untrained weights are flagged in the banner, the label and the figures
    assert "UNTRAINED" in explorer.banner.value
    assert "untrained" in explorer.window_label.value


def test_slider_runs_one_window_and_caches(explorer):
    explorer.cascade.calls.clear()
    start = explorer.position.value
    new = start - 20 if start - 20 >= explorer.position.min else start + 20
    explorer.position.value = new
    _no_error(explorer)
    assert explorer.window.start == new
    assert explorer.cascade.calls and max(explorer.cascade.calls) == 1, explorer.cascade.calls
    n = len(explorer.cascade.calls)
    explorer.position.value = start  # back to a window already shown: no cascade run at all
    explorer.position.value = new
    assert len(explorer.cascade.calls) == n
    assert explorer.timings[-1][0] == "cached"


def test_strand_toggle_and_nudge(explorer):
    before = explorer.window.strand
    explorer.strand.value = "-" if before == "+" else "+"
    assert explorer.window.strand != before
    s = explorer.window.start
    if s + explorer.step <= explorer.position.max:
        explorer.next_button.click()
        assert explorer.window.start == s + explorer.step
    _no_error(explorer)


def test_threshold_recalls_candidates_without_rescanning(explorer):
    explorer.cascade.calls.clear()
    explorer.threshold.value = 1.0
    assert explorer.candidates.empty
    assert "m2v-no-candidates" in explorer.candidate_box.children[0]._dom_classes
    lo = float(explorer.df["score"].quantile(0.5))
    explorer.threshold.value = round(lo, 2)
    assert len(explorer.candidates) >= 1
    assert not explorer.cascade.calls  # no re-scan, and the window shown is not recomputed


def test_threshold_redraws_without_cascade_fold_or_new_figures(explorer, monkeypatch):
    from mire2e_viz import fold, plot

    explorer.threshold.value = 0.5
    explorer.position.value = explorer.position.min + 30  # make sure the window is computed
    explorer.cascade.calls.clear()
    tracks, folds = [], []
    real_track, real_fold = plot.score_track, fold.fold_one
    monkeypatch.setattr(plot, "score_track", lambda *a, **k: tracks.append(1) or real_track(*a, **k))
    monkeypatch.setattr(fold, "fold_one", lambda *a, **k: folds.append(1) or real_fold(*a, **k))
    track0, panel0 = explorer.track_png, explorer.panel.value
    explorer.threshold.value = 0.37
    _no_error(explorer)
    assert explorer.cascade.calls == [] and folds == []  # nothing recomputed
    assert tracks == []  # the track figure is kept: only its threshold line and shading move
    assert explorer.track_png != track0 and explorer.panel.value != panel0  # both show the new threshold
    assert explorer.timings[-1][0] == "redrawn"
    assert len(explorer._stage_panels) == 1  # one in-place figure for every 100-nt window


def test_strand_toggle_keeps_the_track_figure(explorer, monkeypatch):
    calls = []
    real = LocusExplorer._track_base
    monkeypatch.setattr(LocusExplorer, "_track_base", lambda self, *a: calls.append(a) or real(self, *a))
    for _ in range(3):
        explorer.strand.value = "-" if explorer.strand.value == "+" else "+"
    _no_error(explorer)
    assert calls == []  # the + and − lanes are one figure; only the window marker moves


def test_in_place_panel_matches_a_full_redraw(explorer):
    """The fast paths (in-place artists, score-bar-only redraw) give the same pixels as a fresh render."""
    import io

    from PIL import Image

    hit = explorer._panels[next(reversed(explorer._panels))]
    w = hit["window"]
    panel = widgets._StagePanel(len(w.sequence), explorer.trained)
    args = (w, hit["db"], hit["mfe"], hit["pred_db"])
    first = panel.png(*args, threshold=0.5, matures=hit["matures"])
    fast = panel.png(*args, threshold=0.2, matures=hit["matures"])  # score bar only
    fresh = widgets._StagePanel(len(w.sequence), explorer.trained).png(*args, threshold=0.2, matures=hit["matures"])
    px = [np.asarray(Image.open(io.BytesIO(b))) for b in (first, fast, fresh)]
    assert px[1].shape == px[2].shape == (416, 800, 3)
    assert np.array_equal(px[1], px[2]) and not np.array_equal(px[0], px[1])


def test_panel_falls_back_to_a_new_figure(explorer, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("no in-place drawing today")

    monkeypatch.setattr(widgets._StagePanel, "png", boom)
    explorer._panels.clear()
    explorer.position.value = explorer.position.min + 40 if explorer.position.value != explorer.position.min + 40 \
        else explorer.position.min + 50
    _no_error(explorer)
    assert explorer.panel.value[:4] == b"\x89PNG" and explorer.timings[-1][0] == "new"


def test_click_on_the_track_picks_a_window(explorer):
    base = explorer._track_fig
    width, height = base["image"].size
    target = explorer.position.min + 150  # a window start; click on the centre of that window
    fx = (base["x0"] + (target + widgets.WINDOW / 2 - base["lo"]) * base["scale"]) / width
    y0, y1 = base["lanes"]["-"]
    # what the <img>'s onclick sends: x and y as fractions of the image, and a timestamp
    explorer.track_click.value = f"{fx:.5f},{(y0 + y1) / 2 / height:.5f},1"
    _no_error(explorer)
    assert abs(explorer.window.start - target) <= 1 and explorer.window.strand == "-"
    assert explorer.position.value == explorer.window.start
    y0, y1 = base["lanes"]["+"]
    assert explorer.click_track(0.999 * base["x0"] / width, (y0 + y1) / 2 / height) is False  # left of the data
    assert explorer.click_track(fx, (y0 + y1) / 2 / height) and explorer.window.strand == "+"
    rec = explorer.records[base["record"]]
    end = (base["x0"] + (rec.offset + len(rec) - 3 - base["lo"]) * base["scale"]) / width
    assert explorer.click_track(end, 0.5)  # near the right end: the window stays inside the locus
    assert explorer.window.start == explorer.position.max


def test_candidate_click_jumps(explorer):
    explorer.threshold.value = round(float(explorer.df["score"].min()), 2)
    buttons = [b for b in explorer.candidate_box.children if "m2v-candidate" in b._dom_classes]
    assert buttons
    cand = explorer.candidates.iloc[-1]
    explorer.position.value = explorer.position.min if cand.best_start != explorer.position.min else explorer.position.max
    buttons[len(explorer.candidates.head(50)) - 1].click()
    _no_error(explorer)
    assert explorer.window.start == cand.best_start and explorer.window.strand == cand.strand


def test_exports(explorer):
    paths = []
    for fmt in ("csv", "bed", "gff3"):
        paths += explorer.export(fmt)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert "download=" in explorer.downloads.value
    figs = explorer.save_figure()
    assert {p.suffix for p in figs} == {".svg", ".png"} and all(p.stat().st_size > 0 for p in figs)


@pytest.mark.parametrize(
    ("source", "expected"),
    [("ACGUXACGU", "invalid character 'X'"), ("", "empty"), ("   ", "empty")],
)
def test_explorer_bad_text_shows_message(untrained_cascade, source, expected):
    ex = LocusExplorer(cascade=untrained_cascade)
    ex.text.value = source
    ex.scan_button.click()  # must not raise
    assert expected in _msg(ex)


def test_explorer_bad_upload_shows_message(untrained_cascade):
    ex = LocusExplorer(cascade=untrained_cascade)
    ex._on_upload({"new": ({"name": "notes.txt", "content": memoryview(b"hello, I am not FASTA\n")},)})
    assert "notes.txt" in _msg(ex) and "not a FASTA file" in _msg(ex)
    ex._on_upload({"new": ({"name": "img.png", "content": memoryview(b"\x89PNG\x00\x00binary")},)})
    assert "not a FASTA file" in _msg(ex)
    ex._on_upload({"new": ({"name": "bad.fa", "content": memoryview(b">x\nACGJ\n")},)})
    assert "invalid character 'J'" in _msg(ex)


def test_explorer_gzipped_upload(untrained_cascade):
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), 150))
    ex = LocusExplorer(cascade=untrained_cascade, step=25)
    ex._on_upload({"new": ({"name": "mine.fa.gz", "content": memoryview(gzip.compress(f">chr7:1001-1150\n{seq}\n".encode()))},)})
    _no_error(ex)
    assert set(ex.df["seqname"]) == {"chr7"} and ex.df["start"].min() == 1000


def test_load_cascade_falls_back_loudly(monkeypatch):
    from mire2e_viz.cascade import Cascade

    def boom(*a, **k):
        raise RuntimeError("no weights here")

    monkeypatch.setattr(Cascade, "pretrained", classmethod(boom))
    cascade, note = widgets.load_cascade()
    assert not cascade.is_trained and "no weights here" in note


# --------------------------------------------------------------------------- playground


@pytest.fixture(scope="module")
def playground(untrained_cascade):
    return SequencePlayground(MIR23A, cascade=Counting(untrained_cascade))


def test_playground_shows_every_stage(playground):
    assert "m2v-error" not in playground.message.value
    assert playground.panel.value[:4] == b"\x89PNG"
    assert "RNAfold" in playground.summary.value and "MFE" in playground.summary.value
    assert "UNTRAINED" in playground.banner.value


def test_playground_saliency_is_one_batch(playground):
    n = len(MIR23A)
    sal = playground.saliency
    assert sal.shape == (4, n)
    assert np.isnan(sal).sum() == n  # the current base of every position
    seq = playground.sequence
    assert all(np.isnan(sal["ACGU".index(b), i]) for i, b in enumerate(seq))
    # the strip came from one batch of 3n variants
    assert 3 * n in playground.cascade.calls


def test_playground_mutation(playground):
    before = playground.window.score
    base = "A" if MIR23A[9] != "A" else "C"
    playground.mutate(10, base)
    assert playground.sequence[9] == base and playground.sequence[:9] == MIR23A[:9]
    assert "Δ vs original" in playground.summary.value
    # the saliency strip predicted this substitution's effect (same batch-independent model)
    assert playground.window.score == pytest.approx(before + playground._saliency_cache[MIR23A]["ACGU".index(base), 9],
                                                    abs=1e-5)
    playground.reset_button.click()
    assert playground.sequence == MIR23A


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ACGUZ", "invalid character 'Z'"), ("", "empty"), ("A" * 250, "at most 200")],
)
def test_playground_bad_input(untrained_cascade, text, expected):
    pg = SequencePlayground(MIR23A, cascade=untrained_cascade, saliency=False)
    pg.text.value = text  # typing into the box: never raises
    assert expected in _msg(pg)
    pg.mutate(999, "A")
    assert "outside the sequence" in _msg(pg)


def test_playground_long_sequence_has_a_window(untrained_cascade):
    seq = (MIR23A * 3)[:180]
    pg = SequencePlayground(seq, cascade=untrained_cascade, saliency=False)
    assert pg.offset.layout.display != "none" and pg.offset.max == 80
    pg.offset.value = 40
    assert pg.window.sequence == seq[40:140]


def test_explorer_reads_a_path_and_several_records(untrained_cascade, tmp_path):
    from mire2e_viz import datasets

    ex = LocusExplorer(str(datasets.demo_locus()), cascade=untrained_cascade, step=50)
    _no_error(ex)
    assert len(ex.records) == 1 and ex.window is not None
    rng = np.random.default_rng(2)
    a, b = ("".join(rng.choice(list("ACGU"), n)) for n in (130, 90))
    ex.text.value = f">first\n{a}\n>second\n{b}\n"
    ex.scan_button.click()
    _no_error(ex)
    assert set(ex.records) == {"first", "second"}
    assert ex.record_select.layout.display != "none"
    ex.record_select.value = "second" if ex.record_select.value == "first" else "first"
    _no_error(ex)
    assert ex.window.name == ex.records[ex.record_select.value].seqname


def test_explorer_refuses_a_huge_locus_politely(untrained_cascade):
    ex = LocusExplorer(cascade=untrained_cascade, max_windows=50)
    ex.text.value = "ACGU" * 500
    ex.scan_button.click()
    assert "more than this widget scans" in _msg(ex)


def test_explorer_threshold_defaults_to_the_models_operating_point(untrained_cascade):
    from mire2e_viz import Cascade

    assert LocusExplorer(cascade=untrained_cascade).threshold.value == 0.5
    hsa = Cascade.pretrained("hsa", device="cpu")
    assert LocusExplorer(cascade=hsa).threshold.value == pytest.approx(hsa.recommended_threshold)
    assert LocusExplorer(cascade=hsa, threshold=0.8).threshold.value == pytest.approx(0.8)
