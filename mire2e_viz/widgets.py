"""Interactive widgets (ipywidgets 8) that let a person look inside the cascade.

* :class:`LocusExplorer` scans a locus once, draws its score track with the
  annotation, and lets you pick any 100-nt window (slider, ◀ ▶ buttons, a
  click on the track, a candidate row) to see every stage of the cascade next
  to RNAfold.
* :class:`SequencePlayground` is in-silico mutagenesis for teaching: edit a
  sequence or mutate one position and watch the profile, the MFE, the score
  and the hairpin change; a saliency strip gives the score change of every
  single-nucleotide substitution, computed in one batch.

Both work in JupyterLab, Notebook 7 and Voila. Figures are rendered with
Matplotlib's Agg backend into :class:`ipywidgets.Image` widgets (PNG bytes),
so nothing depends on an interactive Matplotlib backend. The explorer's track
is a PNG ``<img>`` in an :class:`ipywidgets.HTML` widget: its inline
``onclick`` writes the clicked point into a hidden :class:`ipywidgets.Text`
(class ``m2v-track-click``), which the kernel observes (no extension needed).

Robustness
----------
Every callback is guarded: bad input (a character that is not a nucleotide,
an empty sequence, a file that is not FASTA) is shown as a one-line message
inside the widget; an unexpected error is shown the same way, with its type,
and never as a traceback. The kernel never dies.

Untrained models
----------------
Without a cascade, the widgets load ``Cascade.pretrained()``. When the
shipped weights cannot be loaded they fall back to
``Cascade.untrained_model()`` and say so in a red banner and on every
figure: the numbers of an untrained model are not predictions.

Speed
-----
A scanned locus keeps its window table and its records in memory. Choosing a
window runs the cascade on that one window (one forward pass), folds it with
RNAfold (cached by :mod:`mire2e_viz.fold`) and updates the stage panel in
place: its figure is built once per window length, an update moves the data
of a few artists and draws only them over a cached Agg background
(:class:`_StagePanel`). Stage panels already drawn are cached, so going back
to a window costs a few milliseconds. The track is drawn once per record; the
window marker is pasted on with Pillow, and a new threshold redraws only the
lanes' data layers (:class:`_LiveTrack`); a strand toggle redraws nothing but
the marker. Exports do not use these screen versions: they come from
:mod:`mire2e_viz.plot` at full quality. ``bench/widget_latency.py`` measures
all of this.

Every element carries a stable CSS class (``m2v-*``) for tests and styling.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import html
import io
import logging
import os
import re
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["LocusExplorer", "SequencePlayground", "load_cascade", "MAX_PLAYGROUND_LENGTH"]

log = logging.getLogger(__name__)

WINDOW = 100
#: longest sequence the playground accepts (the cascade reads 100 nt at a time)
MAX_PLAYGROUND_LENGTH = 200
#: scan chunk (windows per strand) between two progress-bar updates
_SCAN_CHUNK = 2000

_PLUS, _MINUS = "#0072B2", "#D55E00"  # Okabe–Ito blue / vermillion (see mire2e_viz.style)
_RNAFOLD, _DISAGREE, _CAND = "#000000", "#CC79A7", "#DADADA"
_CSS = """<style>
.m2v-candidate { justify-content: flex-start !important; text-align: left !important; font-family: monospace;
                 font-size: 12px; height: 26px; margin: 1px 0; }
.m2v-candidate:hover { background: #fff3c4 !important; }
</style>"""
_BASE_COLORS = {"A": "#009E73", "C": "#0072B2", "G": "#E69F00", "U": "#D55E00", "T": "#D55E00"}


# --------------------------------------------------------------------------- helpers


def _widgets():
    import ipywidgets as W

    return W


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, then restore the previous number.

    One 100-nt window is far too small to gain from several threads, and on a
    busy machine (a shared Binder node, a laptop running a training job)
    OpenMP threads that wait on each other can make one forward pass 100×
    slower. The widgets therefore default to one thread.
    """
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    if old == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def load_cascade(cascade=None):
    """The cascade to use: the one given, else the shipped weights, else an untrained one.

    Returns
    -------
    (cascade, note)
        ``note`` is ``None`` for trained weights, otherwise a sentence that
        says why the model is untrained; show it.
    """
    if cascade is not None:
        note = None
        if getattr(cascade, "untrained", ()):
            note = f"model '{cascade.name}' has untrained stages ({', '.join(cascade.untrained)})"
        return cascade, note
    from .cascade import Cascade

    try:
        return Cascade.pretrained(), None
    except Exception as err:  # noqa: BLE001 - any failure to load weights falls back, loudly
        reason = f"{type(err).__name__}: {err}"[:300]
        return Cascade.untrained_model(), f"the shipped weights could not be loaded ({reason})"


def _untrained_banner(note: str | None):
    W = _widgets()
    box = W.HTML()
    box.add_class("m2v-model-banner")
    if note:
        box.value = (
            "<div style='background:#fde8e4;border:2px solid #b2182b;color:#67001f;padding:6px 10px;"
            "border-radius:4px;font-weight:600'>⚠ UNTRAINED MODEL — random weights. The profiles, MFEs and "
            "scores below show how the cascade works, but they are <u>not predictions</u>. "
            f"<span style='font-weight:400'>({html.escape(note)})</span></div>"
        )
        box.add_class("m2v-untrained")
    else:
        box.layout.display = "none"
    return box


def _message_box():
    W = _widgets()
    box = W.HTML(value="")
    box.add_class("m2v-message")
    return box


def _show_message(box, text: str, kind: str = "error") -> None:
    colors = {"error": ("#fff4e5", "#b35806", "⚠ "), "info": ("#eef5fb", "#2166ac", "")}
    bg, fg, icon = colors.get(kind, colors["info"])
    box.value = (
        f"<div class='m2v-{kind}' style='background:{bg};border-left:4px solid {fg};color:#222;"
        f"padding:4px 8px;margin:2px 0'>{icon}{html.escape(text)}</div>"
    )


def _guard(method: Callable) -> Callable:
    """Decorate a widget callback: errors become a message in the widget, never a traceback."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except InputError as err:
            self._error(str(err))
        except Exception as err:  # noqa: BLE001 - the kernel must survive anything a user does
            log.debug("widget callback failed", exc_info=True)
            self._error(f"unexpected error ({type(err).__name__}): {err}")
        return None

    return wrapper


def _png(fig, dpi: int = 80) -> bytes:
    """Render a Figure to PNG bytes: Agg, then a fast zlib level (about 3x faster than savefig's)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _new_figure(width: float, height: float):
    import matplotlib as mpl
    from matplotlib.figure import Figure

    from .style import RC

    with mpl.rc_context(RC):
        fig = Figure(figsize=(width, height), layout=None)
    return fig


def _rc():
    import matplotlib as mpl

    from .style import RC

    return mpl.rc_context(RC)


def _download_link(data: bytes, filename: str, mime: str, label: str | None = None) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    label = label or filename
    return (f"<a class='m2v-download' download='{html.escape(filename)}' "
            f"href='data:{mime};base64,{b64}' style='margin-right:12px'>⬇ {html.escape(label)}</a>")


def _fold(seq: str):
    """RNAfold of one sequence (cached by mire2e_viz.fold): (structure, mfe)."""
    from . import fold

    r = fold.fold_one(seq)
    return r.structure, r.mfe


def _decode(profile: np.ndarray, seq: str) -> str:
    from . import fold

    return fold.dotbracket_from_profile(profile, sequence=seq)


def _profile_from_db(db: str) -> np.ndarray:
    from . import fold

    return fold.profile_from_dotbracket(db)


def _set_range(slider, lo: int, hi: int, value: int) -> None:
    """Set an int slider's bounds and value in an order that never makes min > max."""
    with slider.hold_trait_notifications():
        if lo > slider.max:
            slider.max = hi
            slider.min = lo
        else:
            slider.min = lo
            slider.max = hi
        slider.value = value


def _fmt_pos(v: int) -> str:
    return f"{int(v):,}"


# --------------------------------------------------------------------------- drawing


#: ViennaRNA layouts of recently drawn structures (dot-bracket -> (n, 2) coordinates)
_LAYOUTS: OrderedDict[str, np.ndarray] = OrderedDict()
_LAYOUT_CACHE = 1024


def hairpin_layout(db: str) -> np.ndarray:
    """ViennaRNA's layout (naview, else simple) of a structure, cached by dot-bracket.

    Parameters
    ----------
    db
        Dot-bracket structure.

    Returns
    -------
    numpy.ndarray
        ``(len(db), 2)`` coordinates; a straight line when the layout fails.
        The array is shared with the cache: do not modify it.
    """
    xy = _LAYOUTS.get(db)
    if xy is not None:
        _LAYOUTS.move_to_end(db)
        return xy
    import RNA

    n = len(db)
    try:
        coords = RNA.naview_xy_coordinates(db) if "(" in db else RNA.simple_xy_coordinates(db)
        xy = np.array([(c.X, c.Y) for c in coords][:n], dtype=float)
    except Exception:  # noqa: BLE001 - layout failure: draw a straight line instead
        xy = np.column_stack([np.arange(n), np.zeros(n)])
    if not np.isfinite(xy).all() or len(xy) != n:
        xy = np.column_stack([np.arange(n), np.zeros(n)]).astype(float)
    xy.setflags(write=False)
    _LAYOUTS[db] = xy
    while len(_LAYOUTS) > _LAYOUT_CACHE:
        _LAYOUTS.popitem(last=False)
    return xy


def _mature_colours(matures: dict | None, n: int) -> tuple[np.ndarray, list[str]]:
    """Positions of the mature arms in a window and their colours (5p yellow, 3p sky blue, mire2e_viz.style)."""
    idx, cols = [], []
    for k, (name, (a, b)) in enumerate((matures or {}).items()):
        arm = "5p" if "5p" in name else "3p" if "3p" in name else ("5p" if k % 2 == 0 else "3p")
        c = "#F0E442" if arm == "5p" else "#56B4E9"
        rng = range(max(int(a), 0), min(int(b), n))
        idx.extend(rng)
        cols.extend([c] * len(rng))
    return np.asarray(idx, dtype=int), cols


def _pairs_of(db: str) -> list[tuple[int, int]]:
    """Base pairs of a dot-bracket, sorted (:func:`mire2e_viz.fold.base_pairs`)."""
    from . import fold

    return sorted(fold.base_pairs(db))


def draw_hairpin(ax, seq: str, db: str, title: str = "", matures: dict | None = None, color: str = _PLUS) -> None:
    """Draw a secondary structure (ViennaRNA's layout) on ``ax``: backbone, pairs, coloured bases."""
    n = len(db)
    xy = hairpin_layout(db)
    ax.plot(xy[:, 0], xy[:, 1], color="#999999", lw=0.8, zorder=1)
    for i, j in _pairs_of(db):
        ax.plot(xy[[i, j], 0], xy[[i, j], 1], color="#444444", lw=0.7, zorder=1)
    if matures:
        idx, mcols = _mature_colours(matures, n)
        if len(idx):
            ax.scatter(xy[idx, 0], xy[idx, 1], s=42, c=mcols, zorder=2, lw=0)
    cols = [_BASE_COLORS.get(b, "#BBBBBB") for b in seq.upper()[:n]]
    ax.scatter(xy[:, 0], xy[:, 1], s=16, c=cols, zorder=3, lw=0)
    ax.annotate("5′", xy[0], xytext=(-8, -8), textcoords="offset points", fontsize=7, color="#333333")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8, loc="left", color=color)


def stage_figure(window, rnafold_db: str, rnafold_mfe: float, predicted_db: str | None = None,
                 trained: bool = True, threshold: float | None = None, matures: dict | None = None,
                 width: float = 10.0, height: float = 5.2):
    """Every stage of one window next to RNAfold, as a Matplotlib Figure (no pyplot).

    Top: the stage-1 pairing profile against RNAfold's (disagreements marked);
    bottom: the hairpin decoded from the profile, RNAfold's hairpin, and the
    stage-2 MFE and stage-3 score.
    """
    from matplotlib.ticker import MaxNLocator

    seq = window.sequence
    n = len(seq)
    prof = np.asarray(window.profile, dtype=float)[:n]
    ref = _profile_from_db(rnafold_db)
    pred_db = predicted_db if predicted_db is not None else _decode(prof, seq)
    cls = np.where(prof > 0.5, 1, np.where(prof < -0.5, -1, 0))
    agree = float(np.mean(cls == ref)) if n else 0.0
    with _rc():
        fig = _new_figure(width, height)
        gs = fig.add_gridspec(2, 3, height_ratios=[1.0, 1.55], width_ratios=[1, 1, 0.8],
                              left=0.06, right=0.985, top=0.87, bottom=0.05, hspace=0.38, wspace=0.12)
        ax = fig.add_subplot(gs[0, :])
        x = np.arange(1, n + 1)
        ax.axhline(0, color="#cccccc", lw=0.6)
        ax.step(x, ref, where="mid", color=_RNAFOLD, lw=1.0, label="RNAfold (MFE structure)")
        ax.plot(x, prof, color=_PLUS, lw=1.4, label="stage 1: predicted profile")
        bad = np.flatnonzero(cls != ref)
        if len(bad):
            ax.scatter(bad + 1, np.full(len(bad), -1.32), marker="|", color=_DISAGREE, s=30,
                       label="disagree", clip_on=False)
        ax.set_xlim(0.5, max(n, 1) + 0.5)
        ax.set_ylim(-1.4, 1.2)
        ax.set_yticks([-1, 0, 1], ["')'", "'.'", "'('"])
        ax.set_xlabel("position in window (5′→3′)", labelpad=1)
        ax.set_title(f"Stage 1 · pairing profile vs RNAfold ({agree:.0%} of positions agree)", loc="left")
        ax.legend(loc="lower right", ncol=3, fontsize=7, bbox_to_anchor=(1, 1.0), borderaxespad=0.2)
        draw_hairpin(fig.add_subplot(gs[1, 0]), seq, pred_db,
                     f"decoded from stage 1 ({pred_db.count('(')} pairs)", matures, color=_PLUS)
        draw_hairpin(fig.add_subplot(gs[1, 1]), seq, rnafold_db,
                     f"RNAfold ({rnafold_db.count('(')} pairs)", matures, color=_RNAFOLD)
        # stages 2 and 3
        sub = gs[1, 2].subgridspec(2, 1, hspace=0.9)
        a2 = fig.add_subplot(sub[0])
        vals = [window.mfe, rnafold_mfe]
        a2.barh([1, 0], vals, color=[_PLUS, _RNAFOLD], height=0.6)
        lo = min(min(vals) * 1.4, -8)
        a2.set_xlim(lo, 0)
        a2.xaxis.set_major_locator(MaxNLocator(3))
        a2.set_yticks([1, 0], ["stage 2", "RNAfold"])
        for yy, v in zip([1, 0], vals, strict=True):
            a2.text(v, yy, f"{v:.1f} ", va="center", ha="right", fontsize=7)
        a2.set_title("Stage 2 · MFE (kcal/mol)", loc="left")
        a3 = fig.add_subplot(sub[1])
        a3.barh([0], [window.score], color=_MINUS if trained else "#999999", height=0.6)
        a3.set_xlim(0, 1)
        a3.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        a3.set_yticks([0], ["score"])
        if threshold is not None:
            a3.axvline(threshold, color="#555555", ls="--", lw=0.9)
        a3.text(min(window.score, 0.6), 0, f" {window.score:.3f}" + ("" if trained else " (untrained)"),
                va="center", fontsize=8)
        a3.set_title("Stage 3 · pre-miRNA score", loc="left")
        where = ""
        if window.start is not None:
            where = f"{window.name}:{_fmt_pos(window.start + 1)}-{_fmt_pos(window.end)} ({window.strand})   "
        fig.suptitle(f"{where}{n} nt", x=0.06, y=0.99, ha="left", va="top", fontsize=9, fontweight="bold")
        if not trained:
            fig.text(0.985, 0.99, "UNTRAINED MODEL — not a prediction", ha="right", va="top", color="#b2182b",
                     fontsize=9, fontweight="bold")
    return fig


def _hairpin_segments(xy: np.ndarray, db: str) -> tuple[np.ndarray, int]:
    """Backbone and base-pair segments of a layout, as one (m, 2, 2) array, and the backbone's count."""
    backbone = np.stack([xy[:-1], xy[1:]], axis=1) if len(xy) > 1 else np.empty((0, 2, 2))
    pairs = _pairs_of(db)
    if pairs:
        ij = np.asarray(pairs, dtype=int)
        bonds = np.stack([xy[ij[:, 0]], xy[ij[:, 1]]], axis=1)
        return np.concatenate([backbone, bonds]), len(backbone)
    return backbone, len(backbone)


class _StagePanel:
    """The on-screen stage panel, built once per window length and updated in place.

    Shows what :func:`stage_figure` shows (stage-1 profile vs RNAfold with the
    disagreements, both hairpins with the mature arms, the stage-2 MFE bars and
    the stage-3 score), but the figure, its axes, ticks and legend are built and
    drawn once: an update moves the data of a few artists (``set_data``,
    ``set_offsets``, ``set_segments``, ``set_text``), restores the static
    background (Agg ``restore_region``) and draws only those artists, then
    encodes the PNG with Pillow at a fast zlib level. Each hairpin is one
    :class:`~matplotlib.collections.LineCollection` (backbone and pairs) and two
    scatters (mature arms, bases), with coordinates cached by
    :func:`hairpin_layout`.

    Exports do not use this class: they go through ``plot.stage_panel`` at full
    quality.

    Parameters
    ----------
    n
        Window length (the profile's x axis is fixed to it).
    trained
        Whether the model is trained (else the figure says so and the score bar is grey).
    width, height, dpi
        Figure size in inches and the on-screen resolution.
    """

    def __init__(self, n: int, trained: bool = True, width: float = 10.0, height: float = 5.2, dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.ticker import MaxNLocator

        self.n, self.trained = int(n), bool(trained)
        self._background = None
        self._shown = None  # what the canvas holds now, but for the threshold
        with _rc():
            fig = _new_figure(width, height)
            fig.set_dpi(dpi)
            gs = fig.add_gridspec(2, 3, height_ratios=[1.0, 1.55], width_ratios=[1, 1, 0.8],
                                  left=0.06, right=0.985, top=0.87, bottom=0.05, hspace=0.38, wspace=0.12)
            ax = fig.add_subplot(gs[0, :])
            x = np.arange(1, n + 1)
            zeros = np.zeros(n)
            ax.axhline(0, color="#cccccc", lw=0.6)
            (self.ref_line,) = ax.step(x, zeros, where="mid", color=_RNAFOLD, lw=1.0, label="RNAfold (MFE structure)")
            (self.prof_line,) = ax.plot(x, zeros, color=_PLUS, lw=1.4, label="stage 1: predicted profile")
            self.bad = ax.scatter([1], [-1.32], marker="|", color=_DISAGREE, s=30, label="disagree", clip_on=False)
            ax.set_xlim(0.5, max(n, 1) + 0.5)
            ax.set_ylim(-1.4, 1.2)
            ax.set_yticks([-1, 0, 1], ["')'", "'.'", "'('"])
            ax.set_xlabel("position in window (5′→3′)", labelpad=1)
            self.title1 = ax.set_title("Stage 1 · pairing profile vs RNAfold", loc="left")
            ax.legend(loc="lower right", ncol=3, fontsize=7, bbox_to_anchor=(1, 1.0), borderaxespad=0.2)
            self.hairpins = []
            for col, colour in ((0, _PLUS), (1, _RNAFOLD)):
                ah = fig.add_subplot(gs[1, col])
                lc = LineCollection([], colors="#999999", linewidths=0.8, zorder=1)
                ah.add_collection(lc)
                mat = ah.scatter([], [], s=42, zorder=2, lw=0)
                bases = ah.scatter([], [], s=16, zorder=3, lw=0)
                five = ah.annotate("5′", (0, 0), xytext=(-8, -8), textcoords="offset points", fontsize=7,
                                   color="#333333")
                ah.set_axis_off()  # equal aspect: see _equal_limits
                title = ah.set_title(" ", fontsize=8, loc="left", color=colour)
                ah.set_animated(True)
                self.hairpins.append((ah, lc, mat, bases, five, title))
            sub = gs[1, 2].subgridspec(2, 1, hspace=0.9)
            a2 = fig.add_subplot(sub[0])
            self.mfe_bars = list(a2.barh([1, 0], [-1, -1], color=[_PLUS, _RNAFOLD], height=0.6))
            a2.xaxis.set_major_locator(MaxNLocator(3))
            a2.set_yticks([1, 0], ["stage 2", "RNAfold"])
            self.mfe_text = [a2.text(0, yy, "", va="center", ha="right", fontsize=7) for yy in (1, 0)]
            a2.set_title("Stage 2 · MFE (kcal/mol)", loc="left")
            a2.set_animated(True)  # its x range follows the MFEs: drawn whole at each update (small)
            self.mfe_ax = a2
            a3 = fig.add_subplot(sub[1])
            (self.score_bar,) = a3.barh([0], [0], color=_MINUS if trained else "#999999", height=0.6)
            a3.set_xlim(0, 1)
            a3.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
            a3.set_yticks([0], ["score"])
            self.thr_line = a3.axvline(0.5, color="#555555", ls="--", lw=0.9)
            self.score_text = a3.text(0, 0, "", va="center", fontsize=8)
            a3.set_title("Stage 3 · pre-miRNA score", loc="left")
            self.suptitle = fig.suptitle(" ", x=0.06, y=0.99, ha="left", va="top", fontsize=9, fontweight="bold")
            if not trained:
                fig.text(0.985, 0.99, "UNTRAINED MODEL — not a prediction", ha="right", va="top", color="#b2182b",
                         fontsize=9, fontweight="bold")
        # drawn at each update, in this order, over the background drawn once
        self._dynamic = [self.ref_line, self.prof_line, self.bad, self.title1,
                         *(h[0] for h in self.hairpins), a2,
                         self.score_bar, self.thr_line, self.score_text, self.suptitle]
        for a in self._dynamic:
            a.set_animated(True)
        self.fig = fig
        self.canvas = FigureCanvasAgg(fig)

    def update(self, window, rnafold_db: str, rnafold_mfe: float, predicted_db: str | None = None,
               threshold: float | None = None, matures: dict | None = None) -> None:
        """Move the artists to ``window`` (no drawing)."""
        seq = window.sequence
        n = self.n
        prof = np.asarray(window.profile, dtype=float)[:n]
        ref = _profile_from_db(rnafold_db)
        pred_db = predicted_db if predicted_db is not None else _decode(prof, seq)
        cls = np.where(prof > 0.5, 1, np.where(prof < -0.5, -1, 0))
        agree = float(np.mean(cls == ref)) if n else 0.0
        self.ref_line.set_ydata(ref)
        self.prof_line.set_ydata(prof)
        bad = np.flatnonzero(cls != ref)
        self.bad.set_offsets(np.column_stack([bad + 1, np.full(len(bad), -1.32)]))
        self.title1.set_text(f"Stage 1 · pairing profile vs RNAfold ({agree:.0%} of positions agree)")
        base_cols = [_BASE_COLORS.get(b, "#BBBBBB") for b in seq.upper()[:n]]
        midx, mcols = _mature_colours(matures, n)
        for (ah, lc, mat, bases, five, htitle), db, title in zip(
                self.hairpins, (pred_db, rnafold_db),
                (f"decoded from stage 1 ({pred_db.count('(')} pairs)", f"RNAfold ({rnafold_db.count('(')} pairs)"),
                strict=True):
            xy = hairpin_layout(db)
            segs, nb = _hairpin_segments(xy, db)
            lc.set_segments(segs)
            lc.set_color(["#999999"] * nb + ["#444444"] * (len(segs) - nb))
            lc.set_linewidth([0.8] * nb + [0.7] * (len(segs) - nb))
            mat.set_offsets(xy[midx] if len(midx) else np.empty((0, 2)))
            mat.set_facecolor(mcols if len(midx) else "none")
            bases.set_offsets(xy)
            bases.set_facecolor(base_cols)
            five.xy = tuple(xy[0]) if len(xy) else (0.0, 0.0)
            htitle.set_text(title)
            if len(xy):
                xlim, ylim = self._equal_limits(ah, xy)
                ah.set_xlim(*xlim)
                ah.set_ylim(*ylim)
        vals = [float(window.mfe), float(rnafold_mfe)]
        for bar, txt, v, yy in zip(self.mfe_bars, self.mfe_text, vals, (1, 0), strict=True):
            bar.set_width(v)
            txt.set_position((v, yy))
            txt.set_text(f"{v:.1f} ")
        lo = min(min(vals) * 1.4, -8)
        self.mfe_ax.set_xlim(lo if np.isfinite(lo) else -8, 0)
        score = float(window.score)
        self.score_bar.set_width(score)
        self._set_threshold(threshold)
        self.score_text.set_position((min(score, 0.6), 0))
        self.score_text.set_text(f" {score:.3f}" + ("" if self.trained else " (untrained)"))
        where = ""
        if window.start is not None:
            where = f"{window.name}:{_fmt_pos(window.start + 1)}-{_fmt_pos(window.end)} ({window.strand})   "
        self.suptitle.set_text(f"{where}{n} nt")

    def _set_threshold(self, threshold: float | None) -> None:
        self.thr_line.set_visible(threshold is not None)
        if threshold is not None:
            self.thr_line.set_xdata([threshold, threshold])

    def _equal_limits(self, ax, xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
        """Limits that show ``xy`` whole, centred, with one unit the same length on both axes."""
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        w, h = max(x1 - x0, 1.0) * 1.08, max(y1 - y0, 1.0) * 1.08
        box = ax.get_position()
        fw, fh = self.fig.get_size_inches()
        aspect = (box.height * fh) / max(box.width * fw, 1e-9)  # height / width of the axes, in inches
        if h / w > aspect:
            w = h / aspect
        else:
            h = w * aspect
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return (cx - w / 2, cx + w / 2), (cy - h / 2, cy + h / 2)

    def render(self) -> bytes:
        """Draw the moved artists over the cached background; PNG bytes."""
        if self._background is None:
            from matplotlib.transforms import Bbox

            self.canvas.draw()  # everything that is not animated, once
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
            x0, y0, _, y1 = self.score_bar.axes.bbox.extents  # the score bar's area, to the right edge
            self._score_background = self.canvas.copy_from_bbox(
                Bbox([[x0 - 2, y0 - 2], [self.fig.bbox.x1, y1 + 2]]))
        else:
            self.canvas.restore_region(self._background)
        self._shown = None
        for a in self._dynamic:
            self.fig.draw_artist(a)
        return self._encode()

    def _encode(self) -> bytes:
        from PIL import Image

        img = Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba(), "raw", "RGBA",
                               0, 1)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def png(self, window, rnafold_db: str, rnafold_mfe: float, predicted_db: str | None = None,
            threshold: float | None = None, matures: dict | None = None) -> bytes:
        """:meth:`update` then :meth:`render`; when only the threshold changed, redraw the score bar only."""
        shown = (window.name, window.start, window.strand, float(window.score), float(window.mfe), rnafold_db,
                 predicted_db, float(rnafold_mfe), repr(matures))
        if shown == self._shown and self._background is not None:
            self._set_threshold(threshold)
            self.canvas.restore_region(self._score_background)
            for a in (self.score_bar, self.thr_line, self.score_text):
                self.fig.draw_artist(a)
            return self._encode()
        self.update(window, rnafold_db, rnafold_mfe, predicted_db, threshold, matures)
        png = self.render()
        self._shown = shown
        return png


class _LiveTrack:
    """A score track from ``plot.score_track``, laid out and drawn once; a new threshold redraws its data only.

    The first threshold's figure is drawn (its constrained layout runs then, with
    room kept for the threshold label and the candidate labels) and frozen. The
    lanes' data layers (score fill and line, threshold line and label,
    candidate shading and labels) are then marked animated and the rest (axes,
    ticks, grid, titles, annotation lane) is kept as an Agg background. A new
    threshold replaces the threshold and candidate artists (drawn as
    ``plot.score_track`` draws them), restores the background and draws the
    data layers in z-order, so the shading stays under the score curves.

    Parameters
    ----------
    fig
        The figure ``plot.score_track`` returned (lanes layout).
    threshold
        The threshold it was drawn with.
    seqname
        The record's sequence name (candidates are filtered on it).
    dpi
        On-screen resolution.

    Raises
    ------
    ValueError
        When the figure does not look like a lanes score track (the caller then
        redraws the whole track for each threshold).
    """

    _SCORE = re.compile(r"\d\.\d\d")

    def __init__(self, fig, threshold: float | None, seqname: str, dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.text import Text

        self.fig, self.seqname = fig, seqname
        self.lanes = {str(ax.get_label())[-1]: ax for ax in fig.axes if str(ax.get_label()) in ("score +", "score -")}
        if not self.lanes:
            raise ValueError("no score lanes in the track")
        self.moving = [a for lane in self.lanes.values() for a in lane.get_children() if self._is_moving(a)]
        if threshold is not None and sum(isinstance(a, _line2d()) for a in self.moving) != len(self.lanes):
            raise ValueError("the threshold lines of the track were not found")
        # lay out once, with room for the widest threshold label and for candidate labels on every lane
        from .style import style_context

        labels = [a for a in self.moving if isinstance(a, Text) and a.get_text().startswith(" threshold")]
        texts = [a.get_text() for a in labels]
        for a in labels:
            a.set_text(" threshold 0.88")
        with style_context():
            spacers = [lane.text(0.5, 1.02, "0.88", transform=lane.get_yaxis_transform(), ha="center",
                                 va="bottom", fontsize=6, alpha=0.0, clip_on=False) for lane in self.lanes.values()]
        fig.set_dpi(dpi)
        self.canvas = FigureCanvasAgg(fig)
        self.canvas.draw()
        fig.set_layout_engine("none")
        for a, t in zip(labels, texts, strict=True):
            a.set_text(t)
        for a in spacers:
            a.remove()
        for lane in self.lanes.values():
            for a in lane.get_children():
                if self._is_layer(a, lane):
                    a.set_animated(True)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(fig.bbox)
        self.threshold = threshold

    @classmethod
    def _is_moving(cls, a) -> bool:
        from matplotlib.text import Text

        if str(a.get_gid() or "").startswith("candidate:"):
            return True
        if isinstance(a, Text):
            t = a.get_text()
            return t.startswith(" threshold ") or bool(cls._SCORE.fullmatch(t))
        if isinstance(a, _line2d()) and a.get_gid() is None and a.get_linestyle() == "--":
            y = np.asarray(a.get_ydata(), dtype=float)
            return len(y) == 2 and y[0] == y[1]
        return False

    @staticmethod
    def _is_layer(a, lane) -> bool:
        from matplotlib.collections import Collection
        from matplotlib.patches import Patch
        from matplotlib.spines import Spine
        from matplotlib.text import Text

        titles = {id(t) for t in (lane.title, getattr(lane, "_left_title", None), getattr(lane, "_right_title", None))}
        return (isinstance(a, (_line2d(), Collection, Patch, Text)) and a is not lane.patch
                and not isinstance(a, Spine) and id(a) not in titles)

    def set_threshold(self, threshold: float | None, candidates) -> None:
        """Replace the threshold lines and the candidate shading (no drawing)."""
        from . import plot
        from .style import COLORS, style_context

        for a in self.moving:
            a.remove()
        self.moving = []
        with style_context():
            for strand, lane in self.lanes.items():
                before = {id(a) for a in lane.get_children()}
                if threshold is not None:
                    lane.axhline(threshold, color=COLORS["threshold"], lw=0.8, ls="--", zorder=4)
                    lane.text(1.0, threshold, f" threshold {threshold:g}", transform=lane.get_yaxis_transform(),
                              ha="left", va="center", fontsize=6, color=COLORS["threshold"])
                if candidates is not None and len(candidates):
                    plot._shade_candidates(lane, candidates, strand, self.seqname, 0, 1.0, "lanes")
                new = [a for a in lane.get_children() if id(a) not in before]
                for a in new:
                    a.set_animated(True)
                self.moving += new
        self.threshold = threshold

    def image(self):
        """The track as an RGBA :class:`PIL.Image.Image`: the background plus the lanes' data layers."""
        from PIL import Image

        self.canvas.restore_region(self.background)
        renderer = self.canvas.get_renderer()
        for lane in self.lanes.values():
            layers = [a for a in lane.get_children() if a.get_animated() and a.get_visible()]
            for a in sorted(layers, key=lambda a: a.get_zorder()):
                a.draw(renderer)
        return Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba(), "raw", "RGBA",
                                0, 1).copy()


def _line2d():
    from matplotlib.lines import Line2D

    return Line2D


# --------------------------------------------------------------------------- locus explorer


def _records_from(source) -> list:
    from .sequences import Record, read_records

    if isinstance(source, Record):
        return [source]
    if isinstance(source, (list, tuple)) and source and all(isinstance(r, Record) for r in source):
        return list(source)
    if isinstance(source, str) and not source.strip():
        raise InputError("the sequence is empty: paste a sequence, give a FASTA path or upload a FASTA file")
    return list(read_records(source))


def records_from_upload(name: str, content: bytes) -> list:
    """Records of an uploaded FASTA file (plain or gzipped); a clear InputError otherwise."""
    from .sequences import iter_fasta

    if not content:
        raise InputError(f"{name}: the file is empty")
    raw = bytes(content)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except Exception as err:  # noqa: BLE001
            raise InputError(f"{name}: not a readable gzip file ({err})") from None
    if b"\x00" in raw[:4096]:
        raise InputError(f"{name}: not a FASTA file (it looks like a binary file)")
    with tempfile.TemporaryDirectory(prefix="m2v-upload-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(raw)
        try:
            recs = list(iter_fasta(path))
        except InputError as err:
            raise InputError(str(err).replace(str(path), name)) from None
    for r in recs:
        r.source = name
    return recs


class _WidgetApp:
    """What both widgets share: display through their root box and a message line."""

    widget: object
    message: object

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _error(self, text: str) -> None:
        _show_message(self.message, text, "error")

    def _info(self, text: str) -> None:
        _show_message(self.message, text, "info")


class LocusExplorer(_WidgetApp):
    """Explore a scanned locus window by window.

    Parameters
    ----------
    source
        The locus: a FASTA path, a sequence or FASTA string, a
        :class:`~mire2e_viz.sequences.Record` (e.g. ``datasets.demo_record()``)
        or ``None`` to start from the upload / paste box.
    cascade
        A :class:`~mire2e_viz.Cascade`; default the shipped weights, else an
        explicitly flagged untrained model.
    annotations
        A GFF3/BED path or a table from :func:`mire2e_viz.annotations.read_annotations`,
        drawn under the track and on the hairpins.
    step
        Scan step (nt).
    threshold
        Initial candidate threshold. Default: the cascade's
        :attr:`~mire2e_viz.cascade.Cascade.recommended_threshold` (the
        weights' 90 %-recall operating point; 0.5 without a record).
    threads
        torch threads while the widget computes (1 is fastest for single windows).
    output_dir
        Where the export buttons write files (they also offer a download link).
    panel_cache
        Stage panels kept in memory (a revisited window is shown without any computation).
    max_windows
        Refuse loci that need more windows than this (scan those with the CLI and explore a
        region here): one window costs tens of milliseconds on a laptop CPU.

    Examples
    --------
    >>> from mire2e_viz import datasets
    >>> from mire2e_viz.widgets import LocusExplorer
    >>> LocusExplorer(datasets.demo_record(), annotations=datasets.demo_annotation())  # doctest: +SKIP
    """

    def __init__(self, source=None, cascade=None, annotations=None, step: int = 10, threshold: float | None = None,
                 threads: int | None = 1, output_dir: str | os.PathLike = "mire2e-viz-export",
                 panel_cache: int = 256, max_windows: int = 20_000):
        W = _widgets()
        self.cascade, self.model_note = load_cascade(cascade)
        self.trained = self.cascade.is_trained
        if threshold is None:  # the weights' measured operating point (0.5 without a record)
            threshold = self.cascade.recommended_threshold
        self.step = int(step)
        if self.step <= 0:
            raise InputError(f"step must be a positive number of nucleotides, not {step}")
        self.max_windows = int(max_windows)
        self.threads = threads
        self.output_dir = Path(output_dir)
        self.records: dict[str, Any] = {}
        self.df: pd.DataFrame | None = None
        self.candidates: pd.DataFrame | None = None
        self.window = None  # current Window
        self.timings: list[tuple[str, float]] = []  # (kind, seconds) of each window update
        # (record, start, strand) -> the window, its fold, its label, and its PNG at one threshold
        self._panels: OrderedDict[tuple, dict] = OrderedDict()
        self._panel_cache = int(panel_cache)
        self._stage_panels: dict[tuple, _StagePanel] = {}  # one in-place figure per window length
        self._busy = False
        self._track_fig = None
        # drawn tracks without the window marker, by (record, strand or None, threshold)
        self._track_bases: OrderedDict[tuple, dict] = OrderedDict()
        self._live_tracks: dict[str, _LiveTrack] = {}
        self._annotation_df = None
        self._annotation_src = annotations

        # ---- input row
        self.upload = W.FileUpload(accept=".fa,.fasta,.fna,.fas,.txt,.gz", multiple=False,
                                   description="Upload FASTA")
        self.upload.add_class("m2v-upload")
        self.text = W.Textarea(placeholder="…or paste a sequence / FASTA text, or a FASTA path", rows=2,
                               layout=W.Layout(width="420px"))
        self.text.add_class("m2v-text")
        self.scan_button = W.Button(description="Scan", button_style="primary", icon="search")
        self.scan_button.add_class("m2v-scan")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="scan", bar_style="info",
                                      layout=W.Layout(width="300px"))
        self.progress.add_class("m2v-progress")
        self.status = W.HTML()
        self.status.add_class("m2v-status")
        self.message = _message_box()
        self.banner = _untrained_banner(self.model_note)

        # ---- track + controls
        self.record_select = W.Dropdown(description="record", layout=W.Layout(width="360px", display="none"))
        self.record_select.add_class("m2v-record")
        # the track is an <img> inside an HTML widget, so that a click on it can pick a window: its inline
        # handler writes where it was clicked into the hidden text box below (see _TRACK_ONCLICK)
        self.track = W.HTML(layout=W.Layout(width="100%", max_width="1000px"))
        self.track.add_class("m2v-track-box")
        self.track_png = b""  # the track's PNG bytes, as shown
        self.track_click = W.Text(value="", layout=W.Layout(display="none"), continuous_update=False)
        self.track_click.add_class("m2v-track-click")
        self.position = W.IntSlider(value=0, min=0, max=0, step=1, description="window start",
                                    continuous_update=False, layout=W.Layout(width="640px"),
                                    style={"description_width": "90px"})
        self.position.add_class("m2v-position")
        self.prev_button = W.Button(description="", icon="chevron-left", tooltip="previous window (−step)",
                                    layout=W.Layout(width="36px"))
        self.prev_button.add_class("m2v-prev")
        self.next_button = W.Button(description="", icon="chevron-right", tooltip="next window (+step)",
                                    layout=W.Layout(width="36px"))
        self.next_button.add_class("m2v-next")
        self.strand = W.ToggleButtons(options=[("+ strand", "+"), ("− strand", "-")], value="+",
                                      tooltips=["forward strand", "reverse strand (reverse complement)"],
                                      style={"button_width": "80px"})
        self.strand.add_class("m2v-strand")
        self.threshold = W.FloatSlider(value=float(threshold), min=0.0, max=1.0, step=0.01,
                                       description="threshold", continuous_update=False, readout_format=".2f",
                                       layout=W.Layout(width="360px"))
        self.threshold.add_class("m2v-threshold")

        # ---- window view
        self.window_label = W.HTML()
        self.window_label.add_class("m2v-window-label")
        self.panel = W.Image(format="png", layout=W.Layout(width="100%", max_width="1000px"))
        self.panel.add_class("m2v-stage-panel")

        # ---- candidates + export
        self.candidate_box = W.VBox()
        self.candidate_box.add_class("m2v-candidates")
        self.export_buttons = {}
        for fmt, icon in (("csv", "table"), ("bed", "bars"), ("gff3", "file-text")):
            b = W.Button(description=f"{fmt.upper()}", icon=icon, tooltip=f"export candidates and windows as {fmt}",
                         layout=W.Layout(width="90px"))
            b.add_class(f"m2v-export-{fmt}")
            b.on_click(lambda _b, f=fmt: self.export(f))
            self.export_buttons[fmt] = b
        self.figure_button = W.Button(description="Figure (SVG+PNG)", icon="image", layout=W.Layout(width="160px"))
        self.figure_button.add_class("m2v-export-figure")
        self.figure_button.on_click(lambda _b: self.save_figure())
        self.downloads = W.HTML()
        self.downloads.add_class("m2v-downloads")

        # ---- wiring
        self.scan_button.on_click(lambda _b: self._scan_from_inputs())
        self.upload.observe(self._on_upload, names="value")
        self.position.observe(self._on_position, names="value")
        self.strand.observe(self._on_strand, names="value")
        self.threshold.observe(self._on_threshold, names="value")
        self.record_select.observe(self._on_record, names="value")
        self.track_click.observe(self._on_track_click, names="value")
        self.prev_button.on_click(lambda _b: self._nudge(-1))
        self.next_button.on_click(lambda _b: self._nudge(+1))

        head = W.HTML(
            _CSS + "<h3 style='margin:4px 0'>miRe2e locus explorer</h3>"
            "<div style='color:#555'>Scores every 100-nt window on both strands; pick a window to see what each "
            "stage of the cascade makes of it, next to RNAfold. Coordinates are 0-based half-open on the + "
            "strand (labels show 1-based).</div>"
        )
        inputs = W.HBox([self.upload, self.text, self.scan_button], layout=W.Layout(align_items="center"))
        controls = W.HBox([self.prev_button, self.position, self.next_button, self.strand],
                          layout=W.Layout(align_items="center", flex_flow="row wrap"))
        export_row = W.HBox([W.HTML("<b>Export</b>&nbsp;"), *self.export_buttons.values(), self.figure_button],
                            layout=W.Layout(align_items="center"))
        cand_head = W.HTML("<b>Candidate regions</b> <span style='color:#666'>(overlapping windows scoring ≥ "
                           "the threshold, merged; click a row to jump to its best window)</span>")
        self.candidate_box.layout = W.Layout(max_height="150px", overflow="auto", width="100%")
        self.widget = W.VBox([
            head, self.banner, inputs, W.HBox([self.progress, self.status]), self.message, self.record_select,
            self.track, self.track_click, controls, W.HBox([self.threshold, cand_head], layout=W.Layout(align_items="center")),
            self.candidate_box, self.window_label, self.panel, export_row, self.downloads,
        ])
        self.widget.add_class("m2v-locus-explorer")
        self._set_controls_enabled(False)
        if source is not None:
            self.load(source)

    # ------------------------------------------------------------------ display

    def _set_controls_enabled(self, on: bool) -> None:
        for w in (self.position, self.prev_button, self.next_button, self.strand, self.threshold,
                  self.figure_button, *self.export_buttons.values()):
            w.disabled = not on

    # ------------------------------------------------------------------ loading and scanning
    @_guard
    def _scan_from_inputs(self) -> None:
        text = self.text.value.strip()
        if not text:
            raise InputError("the sequence box is empty: paste a sequence or FASTA text, give a FASTA path, "
                             "or upload a FASTA file")
        self.load(text)

    @_guard
    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files or self._busy:
            return
        f = files[0]
        try:
            recs = records_from_upload(f["name"], bytes(f["content"]))
        finally:
            self.upload.value = ()  # so that the same file can be uploaded again
        self.load(recs)

    @_guard
    def load(self, source) -> None:
        """Read a locus (path, string, Record(s)) and scan it."""
        self.message.value = ""
        recs = _records_from(source)
        if not recs:
            raise InputError("no sequence found")
        self.scan_records(recs)

    def scan_records(self, recs: list) -> None:
        """Scan records on both strands with a progress bar; keeps everything in memory."""
        from . import encoding
        from .scan import scan as run_scan
        from .scan import window_starts
        from .sequences import Record

        self._set_controls_enabled(False)
        jobs = []
        for rec in recs:
            starts = window_starts(len(rec), self.step)
            for k in range(0, len(starts), _SCAN_CHUNK):
                a = int(starts[k])
                last = k + _SCAN_CHUNK >= len(starts)
                b = len(rec) if last else int(starts[k + _SCAN_CHUNK - 1]) + encoding.WINDOW
                sub = rec if (a == 0 and last) else Record(
                    name=rec.name, codes=rec.codes[a:b], seqname=rec.seqname, offset=rec.offset + a,
                    source=rec.source)
                jobs.append((sub, min(_SCAN_CHUNK, len(starts) - k)))
        total = 2 * sum(n for _, n in jobs)
        if total > self.max_windows:
            nt = sum(len(r) for r in recs)
            raise InputError(
                f"{nt:,} nt at step {self.step} is {total:,} windows, more than this widget scans "
                f"interactively ({self.max_windows:,}); scan it with `mire2e-viz scan` or mire2e_viz.scan() "
                "and explore a smaller region here, or use a larger step"
            )
        self.progress.max, self.progress.value, self.progress.bar_style = max(total, 1), 0, "info"
        names = ", ".join(r.name for r in recs[:3]) + (" …" if len(recs) > 3 else "")
        self.status.value = f"&nbsp;scanning {html.escape(names)} ({sum(len(r) for r in recs):,} nt, {total:,} windows)…"
        parts = []
        t0 = time.perf_counter()
        with warnings.catch_warnings(), _torch_threads(self.threads):
            warnings.simplefilter("ignore", UserWarning)
            for sub, n in jobs:
                for strand in ("+", "-"):
                    parts.append(run_scan(sub, cascade=self.cascade, step=self.step, strands=strand,
                                          progress=False))
                    self.progress.value += n
        df = pd.concat(parts, ignore_index=True)
        df = df.drop_duplicates(["record", "strand", "start"])
        df = df.sort_values(["seqname", "strand", "start"], kind="stable").reset_index(drop=True)
        df.attrs.update(parts[0].attrs)
        self.df = df
        self.records = {r.name: r for r in recs}
        self.progress.bar_style = "success"
        self.status.value = (f"&nbsp;{len(df):,} windows scanned in {time.perf_counter() - t0:.1f} s "
                             f"with '{html.escape(self.cascade.name)}'")
        self._panels.clear()
        self._track_fig = None
        self._track_bases.clear()
        self._live_tracks = {}
        self._load_annotations()
        self._set_controls_enabled(True)
        self.record_select.unobserve(self._on_record, names="value")
        self.record_select.options = list(self.records)
        best = df.loc[df["score"].idxmax()]
        self.record_select.value = best["record"]
        self.record_select.layout.display = "" if len(self.records) > 1 else "none"
        self.record_select.observe(self._on_record, names="value")
        self._recall_candidates()
        self.select(best["record"], int(best["start"]), best["strand"])

    def _load_annotations(self) -> None:
        src = self._annotation_src
        self._annotation_df = None
        if src is None:
            return
        try:
            if isinstance(src, pd.DataFrame):
                ann = src
            else:
                from .annotations import read_annotations

                ann = read_annotations(src)
            keep = np.zeros(len(ann), bool)
            for rec in self.records.values():
                keep |= ((ann["seqname"] == rec.seqname) & (ann["end"] > rec.offset)
                         & (ann["start"] < rec.offset + len(rec))).to_numpy()
            self._annotation_df = ann[keep].reset_index(drop=True)
        except Exception as err:  # noqa: BLE001 - annotation is a bonus: say so, keep going
            self._error(f"annotations not shown: {err}")

    # ------------------------------------------------------------------ candidates
    def _recall_candidates(self) -> None:
        from .scan import call_candidates

        self.candidates = call_candidates(self.df, float(self.threshold.value))
        self._fill_candidate_table()
        self._track_fig = None

    def _fill_candidate_table(self) -> None:
        W = _widgets()
        c = self.candidates
        if c is None or c.empty:
            msg = W.HTML(f"<i>No candidate window scores ≥ {self.threshold.value:.2f}. "
                         "Lower the threshold to see the best regions.</i>")
            msg.add_class("m2v-no-candidates")
            self.candidate_box.children = [msg]
            return
        rows = []
        shown = c.head(50)
        for r in shown.itertuples(index=False):
            text = (f"{r.name}  {r.seqname}:{_fmt_pos(r.start + 1)}-{_fmt_pos(r.end)} ({r.strand})  "
                    f"score {r.score:.3f}  best window {_fmt_pos(r.best_start + 1)}-{_fmt_pos(r.best_end)}  "
                    f"MFE {r.best_mfe:.1f}  ({r.n_windows} windows)"
                    + (f"  strand margin {r.strand_margin:+.2f}" if np.isfinite(r.strand_margin) else ""))
            b = W.Button(description=text, tooltip=f"jump to {r.name}'s best window",
                         layout=W.Layout(width="auto", justify_content="flex-start"))
            b.add_class("m2v-candidate")
            b.add_class(f"m2v-candidate-{r.name}")
            b.on_click(lambda _b, row=r: self._jump(row))
            rows.append(b)
        if len(c) > len(shown):
            rows.append(W.HTML(f"<i>… and {len(c) - len(shown)} more (export to see all)</i>"))
        self.candidate_box.children = rows

    @_guard
    def _jump(self, row) -> None:
        rec = self._record_of(row.seqname, row.best_start)
        self.select(rec.name, int(row.best_start), row.strand)

    def _record_of(self, seqname: str, start: int):
        for rec in self.records.values():
            if rec.seqname == seqname and rec.offset <= start < rec.offset + max(len(rec), 1):
                return rec
        raise InputError(f"no scanned record holds {seqname}:{start}")

    # ------------------------------------------------------------------ selection
    def select(self, record: str, start: int, strand: str) -> None:
        """Show the window starting at ``start`` (output coordinates) on ``strand``."""
        self._busy = True
        try:
            rec = self.records[record]
            if self.record_select.value != record:
                self.record_select.value = record
            lo, hi = rec.offset, rec.offset + max(len(rec) - WINDOW, 0)
            _set_range(self.position, lo, hi, int(min(max(start, lo), hi)))
            self.strand.value = strand
        finally:
            self._busy = False
        self._update_window()

    @_guard
    def _on_position(self, change) -> None:
        if not self._busy:
            self._update_window()

    @_guard
    def _on_strand(self, change) -> None:
        if not self._busy:  # the track is redrawn only if it shows one strand (see _track_png)
            self._update_window()

    @_guard
    def _on_threshold(self, change) -> None:
        if self.df is None:
            return
        self._recall_candidates()
        self._update_window()

    @_guard
    def _on_record(self, change) -> None:
        if self._busy or self.df is None or not change["new"]:
            return
        rec = self.records[change["new"]]
        self.select(rec.name, rec.offset, self.strand.value)

    @_guard
    def _nudge(self, direction: int) -> None:
        self.position.value = int(np.clip(self.position.value + direction * self.step, self.position.min,
                                          self.position.max))

    @_guard
    def _on_track_click(self, change) -> None:
        parts = str(change["new"] or "").split(",")
        if self._busy or self.df is None or len(parts) < 2:
            return
        self.click_track(float(parts[0]), float(parts[1]))

    def click_track(self, fx: float, fy: float) -> bool:
        """Pick the window under a point of the track image (what a click on the track does).

        Parameters
        ----------
        fx, fy
            The point as fractions of the image's width and height (0 = left / top).

        Returns
        -------
        bool
            Whether the point was on the track's data area (else nothing changes).
            The window is centred on the point, within the locus; a point on a
            strand's lane also selects that strand.
        """
        base = self._track_fig
        if base is None or self.df is None or not (np.isfinite(fx) and np.isfinite(fy)):
            return False
        width, height = base["image"].size
        px, py = fx * width, fy * height
        x = base["lo"] + (px - base["x0"]) / base["scale"]
        rec = self.records[base["record"]]
        if not rec.offset <= x <= rec.offset + len(rec):
            return False
        start = int(round(x - min(WINDOW, len(rec)) / 2))
        strand = self.strand.value
        for s, (y0, y1) in base["lanes"].items():
            if y0 <= py <= y1:
                strand = s
        self.select(rec.name, start, strand)
        return True

    @_guard
    def _update_window(self) -> None:
        if self.df is None:
            return
        t0 = time.perf_counter()
        rec = self.records[self.record_select.value or next(iter(self.records))]
        start, strand = int(self.position.value), self.strand.value
        thr = round(float(self.threshold.value), 4)
        key = (rec.name, start, strand)
        hit = self._panels.get(key)
        kind = "cached"
        if hit is None:
            kind = "new"
            hit = self._panels[key] = self._compute_panel(rec, start, strand)
            while len(self._panels) > self._panel_cache:
                self._panels.popitem(last=False)
        else:
            self._panels.move_to_end(key)
        if hit["threshold"] != thr:  # only the score bar's threshold line moves: no cascade, no fold
            kind = "redrawn" if kind == "cached" else kind
            hit["png"], hit["threshold"] = self._render_panel(hit, thr), thr
        self.window = hit["window"]
        # the label goes last: when it changes, the track and the panel are already on their way
        track = self._track_png(rec, start, strand)
        if track != self.track_png:
            self.track_png = track
            self.track.value = _track_html(track)
        if hit["png"] != self.panel.value:
            self.panel.value = hit["png"]
        self.window_label.value = hit["summary"]
        self.timings.append((kind, time.perf_counter() - t0))

    def _compute_panel(self, rec, start: int, strand: str):
        from .scan import window_sequence

        seq = window_sequence(rec, start, strand)
        with _torch_threads(self.threads):
            w = self.cascade.window(seq, name=rec.seqname, start=start, strand=strand)
        db, mfe = _fold(w.sequence)
        pred_db = _decode(w.profile, w.sequence)
        matures = self._matures(rec, w)
        hit = {"window": w, "db": db, "mfe": mfe, "pred_db": pred_db, "matures": matures}
        thr = round(float(self.threshold.value), 4)
        hit["png"], hit["threshold"] = self._render_panel(hit, thr), thr
        label = "score" if self.trained else "score <b style='color:#b2182b'>(untrained)</b>"
        extra = ""
        if matures:
            extra = " · miRBase matures: " + ", ".join(html.escape(k) for k in matures)
        summary = (
            f"<div style='font-size:14px'><b class='m2v-window-coords'>{html.escape(rec.seqname)}:"
            f"{_fmt_pos(start + 1)}-{_fmt_pos(w.end)} ({strand})</b> · {label} <b>{w.score:.3f}</b> · "
            f"MFE stage 2 <b>{w.mfe:.1f}</b> kcal/mol (RNAfold {mfe:.1f}){extra}</div>"
            f"<div style='font-family:monospace;font-size:11px;color:#333;white-space:pre'>"
            f"{html.escape(w.sequence)}\n{html.escape(db)}  RNAfold\n{html.escape(pred_db)}  stage 1</div>"
        )
        hit["summary"] = summary
        return hit

    def _render_panel(self, hit: dict, threshold: float) -> bytes:
        """PNG of the stage panel of a computed window: the in-place figure, else a new figure."""
        w = hit["window"]
        try:
            key = (len(w.sequence), self.trained)
            panel = self._stage_panels.get(key)
            if panel is None:
                panel = self._stage_panels[key] = _StagePanel(len(w.sequence), self.trained)
            return panel.png(w, hit["db"], hit["mfe"], hit["pred_db"], threshold=threshold, matures=hit["matures"])
        except Exception:  # noqa: BLE001 - never lose the panel for a speed-up: draw it the slow way
            log.debug("in-place stage panel failed; drawing a new figure", exc_info=True)
            self._stage_panels.pop((len(w.sequence), self.trained), None)
            fig = stage_figure(w, hit["db"], hit["mfe"], hit["pred_db"], trained=self.trained, threshold=threshold,
                               matures=hit["matures"])
            return _png(fig, dpi=80)

    def _matures(self, rec, w) -> dict | None:
        ann = self._annotation_df
        if ann is None or ann.empty or w.start is None:
            return None
        try:
            from .annotations import features_in_window

            return features_in_window(ann, w.start, w.end, w.strand, seqname=rec.seqname) or None
        except Exception:  # noqa: BLE001
            return None

    # ------------------------------------------------------------------ the track
    def _track_png(self, rec, start: int, strand: str) -> bytes:
        """The track with the current window marked: the plot is drawn once, the marker is pasted on."""
        base = self._track_fig
        if base is None or base["record"] != rec.name or (base["per_strand"] and base["strand"] != strand):
            thr = round(float(self.threshold.value), 4)
            base = self._track_bases.get((rec.name, strand, thr)) or self._track_bases.get((rec.name, None, thr))
            if base is None:
                base = self._track_base(rec, strand)
                self._track_bases[(rec.name, strand if base["per_strand"] else None, thr)] = base
                while len(self._track_bases) > 16:
                    self._track_bases.popitem(last=False)
            self._track_fig = base
        from PIL import Image, ImageDraw

        img = base["image"].copy()
        x0 = base["x0"] + (start - base["lo"]) * base["scale"]
        x1 = x0 + min(WINDOW, len(rec)) * base["scale"]
        y0, y1 = base["lanes"].get(strand, base["full"])
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        edge = (0, 114, 178, 255) if strand == "+" else (213, 94, 0, 255)
        draw.rectangle([x0, y0, x1, y1], fill=(255, 215, 0, 70), outline=edge, width=2)
        fy0, fy1 = base["full"]
        draw.rectangle([x0, fy0, x1, fy1], outline=edge[:3] + (110,), width=1)
        img = Image.alpha_composite(img, overlay)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def _track_base(self, rec, strand: str) -> dict:
        """The track without the window marker, as an RGBA image and its pixel geometry.

        The figure is ``mire2e_viz.plot.score_track`` (else a local fallback). It is drawn once per
        record: a new threshold redraws only its threshold lines and candidate shading
        (:class:`_LiveTrack`).
        """
        thr = float(self.threshold.value)
        cands = self.candidates
        if cands is not None:
            cands = cands[cands["seqname"] == rec.seqname]
        live = self._live_tracks.get(rec.name)
        if live is not None:
            try:
                if live.threshold != thr:
                    live.set_threshold(thr, cands)
                return {**live.geometry, "record": rec.name, "strand": strand, "per_strand": False,
                        "image": live.image()}
            except Exception:  # noqa: BLE001 - draw the whole track instead
                log.debug("live track update failed; redrawing the track", exc_info=True)
                self._live_tracks.pop(rec.name, None)
        fig, per_strand = self._track_figure(rec, strand, thr, cands)
        if not per_strand:
            try:
                live = _LiveTrack(fig, thr, rec.seqname)
                img = live.image()
                live.geometry = self._track_geometry(fig, img.size[1])
                self._live_tracks = {rec.name: live}  # one record's figure at a time
                return {**live.geometry, "record": rec.name, "strand": strand, "per_strand": False, "image": img}
            except Exception:  # noqa: BLE001 - a plain drawing of a fresh figure
                log.debug("live track failed; drawing the track once per threshold", exc_info=True)
                fig, per_strand = self._track_figure(rec, strand, thr, cands)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from PIL import Image

        fig.set_dpi(80)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        img = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).copy()
        return {**self._track_geometry(fig, img.size[1]), "record": rec.name, "strand": strand,
                "per_strand": per_strand, "image": img}

    def _track_figure(self, rec, strand: str, thr: float, cands) -> tuple[Any, bool]:
        """A new track figure: (figure, whether it shows one strand only)."""
        df = self.df[self.df["record"] == rec.name]
        per_strand = False
        try:
            from . import plot

            title = f"{rec.seqname}:{_fmt_pos(rec.offset + 1)}-{_fmt_pos(rec.offset + len(rec))}"
            fig = plot.score_track(df, cands, self._annotation_df, threshold=thr, seqname=rec.seqname,
                                   figsize=(10, 3.6 if self._annotation_df is not None else 2.8),
                                   title=f"pre-miRNA score along {title}")
            fig = getattr(fig, "figure", fig)
            import matplotlib.pyplot as plt

            plt.close(fig)  # drawn here, never shown by pyplot
        except Exception as err:  # noqa: BLE001 - fall back to the widget's own track
            log.debug("plot.score_track failed (%s); using the fallback track", err)
            fig, marker, _ = self._build_track(rec, strand)
            marker.set_visible(False)
            per_strand = True
        if not self.trained:
            fig.text(0.99, 0.995, "UNTRAINED MODEL: not a prediction", ha="right", va="top", color="#b2182b",
                     fontsize=9, fontweight="bold")
        return fig, per_strand

    @staticmethod
    def _track_geometry(fig, height: int) -> dict:
        """Pixel geometry of a drawn track: x of the data range, and the y span of each strand's lane."""
        axes = [a for a in fig.axes if a.get_visible()]
        ref = axes[0]
        lo, hi = ref.get_xlim()
        (px0, _), (px1, _) = ref.transData.transform([(lo, 0), (hi, 0)])

        def yspan(a):
            b = a.get_window_extent()
            return (height - b.y1, height - b.y0)

        lanes = {}
        for a in axes:
            label = a.get_ylabel().replace("\u2212", "-")
            if "strand" in label and "+ strand" in label and "- strand" not in label:
                lanes["+"] = yspan(a)
            elif "strand" in label and "- strand" in label and "+ strand" not in label:
                lanes["-"] = yspan(a)
        spans = [yspan(a) for a in axes]
        full = (min(s[0] for s in spans), max(s[1] for s in spans))
        return {"lo": lo, "x0": px0, "scale": (px1 - px0) / (hi - lo), "lanes": lanes, "full": full}

    def _build_track(self, rec, strand: str):
        df = self.df[self.df["record"] == rec.name]
        has_ann = self._annotation_df is not None and not self._annotation_df.empty
        with _rc():
            fig = _new_figure(10, 2.9 if has_ann else 2.2)
            if has_ann:
                gs = fig.add_gridspec(2, 1, height_ratios=[3, 1.1], hspace=0.08, left=0.085, right=0.985,
                                      top=0.86, bottom=0.16)
                ax = fig.add_subplot(gs[0])
                axa = fig.add_subplot(gs[1], sharex=ax)
            else:
                ax = fig.add_axes((0.085, 0.2, 0.9, 0.64))
                axa = None
            half = min(WINDOW, len(rec)) / 2
            for s, col, lab in (("+", _PLUS, "+ strand"), ("-", _MINUS, "− strand")):
                d = df[df["strand"] == s]
                ax.plot(d["start"] + half, d["score"], color=col, lw=1.8 if s == strand else 0.9,
                        alpha=1.0 if s == strand else 0.45, label=lab, marker="o" if len(d) < 80 else None,
                        ms=2.5)
            thr = float(self.threshold.value)
            ax.axhline(thr, color="#555555", ls="--", lw=0.9, label=f"threshold {thr:.2f}")
            c = self.candidates
            if c is not None and not c.empty:
                for r in c[c["seqname"] == rec.seqname].head(200).itertuples(index=False):
                    ax.axvspan(r.start, r.end, color=_CAND, alpha=0.55, lw=0, zorder=0)
            import matplotlib.patches as mpatches

            marker = mpatches.Rectangle((rec.offset, -0.04), min(WINDOW, len(rec)), 1.08, fill=True,
                                        facecolor="#FFD70033", edgecolor=_PLUS, lw=1.5, zorder=4)
            ax.add_patch(marker)
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlim(rec.offset, rec.offset + len(rec))
            ax.set_ylabel("score" if self.trained else "score\n(UNTRAINED)", color="black" if self.trained
                          else "#b2182b")
            ax.legend(loc="lower left", ncol=3, fontsize=7, bbox_to_anchor=(0, 1.0))
            title = f"{rec.seqname}:{_fmt_pos(rec.offset + 1)}-{_fmt_pos(rec.offset + len(rec))}"
            ax.set_title(title, loc="right", fontsize=8)
            if not self.trained:
                ax.text(0.5, 0.5, "UNTRAINED MODEL — scores are not predictions", transform=ax.transAxes,
                        ha="center", va="center", color="#b2182b", alpha=0.35, fontsize=13, fontweight="bold")
            if axa is not None:
                self._draw_annotation(axa, rec)
                ax.tick_params(labelbottom=False)
                axa.set_xlabel(f"{rec.seqname} position (window centre for scores)")
            else:
                ax.set_xlabel(f"{rec.seqname} position (window centre)")
            ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        return fig, marker, ax

    def _draw_annotation(self, axa, rec) -> None:
        ann = self._annotation_df
        ann = ann[ann["seqname"] == rec.seqname]
        hp = ann[~ann["type"].isin({"miRNA", "mature", "mature_miRNA"})]
        mat = ann[ann["type"].isin({"miRNA", "mature", "mature_miRNA"})]
        for r in hp.itertuples(index=False):
            y = 0.62 if r.strand == "+" else 0.22
            col = _PLUS if r.strand == "+" else _MINUS
            axa.plot([r.start, r.end], [y, y], color=col, lw=6, solid_capstyle="butt", alpha=0.6)
            arrow = "→" if r.strand == "+" else "←"
            axa.text((r.start + r.end) / 2, y + 0.2, f"{arrow} {r.name}", ha="center", va="bottom", fontsize=7,
                     color=col, clip_on=True)
        for r in mat.itertuples(index=False):
            y = 0.62 if r.strand == "+" else 0.22
            axa.plot([r.start, r.end], [y, y], color="#222222", lw=6, solid_capstyle="butt", alpha=0.8)
        axa.set_ylim(0, 1.05)
        axa.set_yticks([0.22, 0.62], ["−", "+"])
        axa.set_ylabel("miRBase", fontsize=7)
        axa.spines["left"].set_visible(False)

    # ------------------------------------------------------------------ export
    @_guard
    def export(self, fmt: str) -> list[Path]:
        """Write the candidates and all windows as ``fmt`` (csv, bed, gff3); also offer downloads."""
        from .scan import export as write

        if self.df is None:
            raise InputError("scan a locus first")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stem = _safe_stem(next(iter(self.records)))
        mime = {"csv": "text/csv", "bed": "text/plain", "gff3": "text/plain"}[fmt]
        paths, links = [], []
        for what, table in (("candidates", self.candidates), ("windows", self.df)):
            path = write(table, self.output_dir / f"{stem}_{what}.{fmt}")
            paths.append(path)
            links.append(_download_link(path.read_bytes(), path.name, mime))
        note = "" if self.trained else " <b style='color:#b2182b'>(untrained model: not predictions)</b>"
        self.downloads.value = (f"<div>Wrote {', '.join(html.escape(str(p)) for p in paths)}{note}</div>"
                                + "<div>" + "".join(links) + "</div>")
        return paths

    @_guard
    def save_figure(self) -> list[Path]:
        """Save the current stage panel and the locus track as SVG and PNG (300 dpi); also offer downloads.

        The figures are the publication versions from :mod:`mire2e_viz.plot` (``stage_panel`` and
        ``score_track``); an untrained model is named in their titles.
        """
        if self.window is None:
            raise InputError("pick a window first")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        w = self.window
        rec = self.records[self.record_select.value]
        matures = self._matures(rec, w)
        thr = float(self.threshold.value)
        try:
            from . import fold, plot

            fig = plot.stage_panel(w, rnafold=fold.fold_one(w.sequence), matures=matures, threshold=thr)
            df = self.df[self.df["record"] == rec.name]
            cands = self.candidates[self.candidates["seqname"] == rec.seqname] if self.candidates is not None else None
            track = plot.score_track(df, cands, self._annotation_df, threshold=thr, seqname=rec.seqname)
            track = getattr(track, "figure", track)
            save = plot.save_figure
        except ImportError:  # pragma: no cover - plot is part of the package; keep a fallback anyway
            db, mfe = _fold(w.sequence)
            fig = stage_figure(w, db, mfe, trained=self.trained, threshold=thr, matures=matures)
            track = self._build_track(rec, w.strand)[0]
            self._track_fig = None

            def save(f, path, format=None, dpi=300):
                f.savefig(path, format=format, dpi=dpi, bbox_inches="tight")
        if not self.trained:
            for f in (fig, track):
                f.text(0.99, 0.999, "UNTRAINED MODEL: not a prediction", ha="right", va="top", color="#b2182b",
                       fontsize=8, fontweight="bold")
        stem = f"{_safe_stem(w.name)}_{w.start}_{w.end}_{'plus' if w.strand == '+' else 'minus'}"
        paths, links = [], []
        for name, f in (("stage_panel", fig), ("track", track)):
            for fmt, mime in (("svg", "image/svg+xml"), ("png", "image/png")):
                path = self.output_dir / f"{stem}_{name}.{fmt}"
                save(f, path, format=fmt, dpi=300)
                paths.append(path)
                links.append(_download_link(path.read_bytes(), path.name, mime))
        self.downloads.value = ("<div>Wrote " + ", ".join(html.escape(str(p)) for p in paths) + "</div><div>"
                                + "".join(links) + "</div>")
        return paths


_TRACK_ONCLICK = (
    "var r=this.getBoundingClientRect(),b=this.closest('.m2v-locus-explorer'),"
    "i=b&&b.querySelector('.m2v-track-click input');if(!i||!r.width)return;"
    "i.value=((event.clientX-r.left)/r.width).toFixed(5)+','+((event.clientY-r.top)/r.height).toFixed(5)"
    "+','+Date.now();i.dispatchEvent(new Event('change',{bubbles:true}));"
)


def _track_html(png: bytes) -> str:
    """The track as an <img> whose click sends its position (fractions of the image) to the kernel."""
    b64 = base64.b64encode(png).decode("ascii")
    return (f"<img class='m2v-track' src='data:image/png;base64,{b64}' alt='score track: click to pick a window' "
            f"title='click to show the window here' style='width:100%;max-width:1000px;cursor:crosshair;"
            f"display:block' onclick=\"{_TRACK_ONCLICK}\">")


def _safe_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))[:80] or "locus"


# --------------------------------------------------------------------------- playground


class SequencePlayground(_WidgetApp):
    """In-silico mutagenesis of one sequence (up to about 200 nt).

    Edit the sequence, or pick a position and a base and press *Mutate*:
    the stage-1 profile, the stage-2 MFE, the stage-3 score and the decoded
    hairpin update next to RNAfold's. The saliency strip shows, for every
    position and every other base, how much the score would change with that
    single substitution (all of them scored in one batch).

    The cascade reads 100 nt at a time: for a longer sequence a *window*
    slider picks which 100 nt are analysed.

    Parameters
    ----------
    sequence
        The starting sequence (RNA or DNA letters).
    cascade
        A :class:`~mire2e_viz.Cascade`; default the shipped weights, else a
        flagged untrained model.
    threads
        torch threads while computing.
    saliency
        Compute the saliency strip after each change (3 × length windows in
        one batch: a few seconds on a laptop CPU). The window itself is shown
        first, so the profile, MFE and score update at once.
    """

    def __init__(self, sequence: str = "", cascade=None, threads: int | None = 1, saliency: bool = True):
        W = _widgets()
        self.cascade, self.model_note = load_cascade(cascade)
        self.trained = self.cascade.is_trained
        self.threads = threads
        self.original = ""
        self._seq = ""
        self.saliency: np.ndarray | None = None
        self._saliency_cache: dict[str, np.ndarray] = {}
        self.window = None
        self.timings: list[tuple[str, float]] = []
        self._busy = False

        self.banner = _untrained_banner(self.model_note)
        self.message = _message_box()
        self.text = W.Textarea(value=str(sequence or ""), rows=3, layout=W.Layout(width="100%"),
                               description="sequence", continuous_update=False)
        self.text.add_class("m2v-seq-input")
        self.apply_button = W.Button(description="Analyse", button_style="primary", icon="play")
        self.apply_button.add_class("m2v-analyse")
        self.reset_button = W.Button(description="Back to original", icon="undo")
        self.reset_button.add_class("m2v-reset")
        self.offset = W.IntSlider(value=0, min=0, max=0, description="window", continuous_update=False,
                                  layout=W.Layout(width="420px", display="none"))
        self.offset.add_class("m2v-play-window")
        self.mut_pos = W.IntSlider(value=1, min=1, max=1, description="position", continuous_update=False,
                                   layout=W.Layout(width="420px"))
        self.mut_pos.add_class("m2v-mut-pos")
        self.mut_base = W.ToggleButtons(options=["A", "C", "G", "U"], value="A", style={"button_width": "36px"})
        self.mut_base.add_class("m2v-mut-base")
        self.mutate_button = W.Button(description="Mutate", icon="random", button_style="warning")
        self.mutate_button.add_class("m2v-mutate")
        self.saliency_toggle = W.Checkbox(value=bool(saliency), description="saliency strip (scores every "
                                          "single substitution in one batch; a few seconds)", indent=False,
                                          layout=W.Layout(width="auto"))
        self.saliency_toggle.add_class("m2v-saliency-toggle")
        self.saliency_toggle.observe(lambda ch: None if self._busy or not self._seq else self._guarded_refresh(),
                                     names="value")
        self.summary = W.HTML()
        self.summary.add_class("m2v-play-summary")
        self.panel = W.Image(format="png", layout=W.Layout(width="100%", max_width="1000px"))
        self.panel.add_class("m2v-play-panel")

        self.apply_button.on_click(lambda _b: self.set_sequence(self.text.value, keep_original=True))
        self.text.observe(lambda ch: self.set_sequence(ch["new"], keep_original=True), names="value")
        self.reset_button.on_click(lambda _b: self.set_sequence(self.original, keep_original=True))
        self.mutate_button.on_click(lambda _b: self.mutate(self.mut_pos.value, self.mut_base.value))
        self.offset.observe(lambda ch: None if self._busy else self._guarded_refresh(), names="value")

        head = W.HTML(
            "<h3 style='margin:4px 0'>Sequence playground: in-silico mutagenesis</h3>"
            f"<div style='color:#555'>Edit the sequence (up to {MAX_PLAYGROUND_LENGTH} nt) or mutate one "
            "position, and watch each stage of the cascade change next to RNAfold.</div>"
        )
        self.widget = W.VBox([
            head, self.banner, self.text, W.HBox([self.apply_button, self.reset_button]), self.message,
            self.offset, W.HBox([self.mut_pos, self.mut_base, self.mutate_button],
                                layout=W.Layout(align_items="center", flex_flow="row wrap")),
            self.saliency_toggle, self.summary, self.panel,
        ])
        self.widget.add_class("m2v-sequence-playground")
        if sequence:
            self.set_sequence(sequence)
        else:
            self._info("type or paste a sequence above")


    @_guard
    def _guarded_refresh(self) -> None:
        self._refresh()

    @property
    def sequence(self) -> str:
        """The current (possibly mutated) sequence."""
        return self._seq

    @staticmethod
    def clean(text: str) -> str:
        """Validate and normalise a typed sequence (FASTA header allowed); raise InputError."""
        from .encoding import codes_to_str, to_codes

        text = str(text or "").strip()
        if text.startswith(">"):
            text = "\n".join(text.splitlines()[1:])
        seq = "".join(text.split())
        if not seq:
            raise InputError("the sequence is empty: type or paste at least one nucleotide")
        if len(seq) > MAX_PLAYGROUND_LENGTH:
            raise InputError(f"the sequence has {len(seq)} nt; the playground takes at most "
                             f"{MAX_PLAYGROUND_LENGTH} (use LocusExplorer for longer loci)")
        codes = to_codes(seq, record="sequence")
        out = codes_to_str(codes)
        # keep the user's letters where they are plain nucleotides (codes_to_str shows IUPAC as N)
        return out

    @_guard
    def set_sequence(self, text: str, keep_original: bool = False) -> None:
        """Analyse ``text`` (replaces the original unless ``keep_original``)."""
        if self._busy:
            return
        seq = self.clean(text)
        self.message.value = ""
        self._seq = seq
        if not keep_original or not self.original:
            self.original = seq
        self._busy = True
        try:
            if self.text.value.strip() != seq:
                self.text.value = seq
            n = len(seq)
            self.mut_pos.max = n
            self.mut_pos.value = min(self.mut_pos.value, n)
            if n > WINDOW:
                self.offset.max = n - WINDOW
                self.offset.layout.display = ""
                self.offset.description = "window"
            else:
                self.offset.value, self.offset.max = 0, 0
                self.offset.layout.display = "none"
        finally:
            self._busy = False
        self._refresh()

    @_guard
    def mutate(self, position: int, base: str) -> None:
        """Substitute ``base`` at 1-based ``position`` of the current sequence."""
        seq = self._seq
        if not 1 <= int(position) <= len(seq):
            raise InputError(f"position {position} is outside the sequence (1–{len(seq)})")
        base = str(base).upper().replace("T", "U")
        if base not in "ACGU" or len(base) != 1:
            raise InputError(f"{base!r} is not a nucleotide (A, C, G or U)")
        i = int(position) - 1
        self.set_sequence(seq[:i] + base + seq[i + 1:], keep_original=True)

    def _windows(self, seq: str) -> tuple[str, int]:
        a = int(self.offset.value) if len(seq) > WINDOW else 0
        return seq[a:a + WINDOW], a

    def _refresh(self) -> None:
        """Score the current window at once; then, if asked, the saliency strip (one batch)."""
        t0 = time.perf_counter()
        seq = self._seq
        win, a = self._windows(seq)
        orig_win = self.original[a:a + WINDOW] if len(self.original) == len(seq) else None
        batch = [win] + ([orig_win] if orig_win and orig_win != win else [])
        out = self._run(batch)
        n = len(win)
        from .cascade import Window

        w = Window(sequence=win, profile=out["profile"][0, :n].copy(), mfe=float(out["mfe"][0]),
                   mfe_raw=float(out["mfe_raw"][0]), score=float(out["score"][0]), name="playground",
                   start=a, end=a + n)
        self.window = w
        orig_score = float(out["score"][-1]) if orig_win else None
        orig_profile = out["profile"][-1, :n] if orig_win else None
        db, mfe = _fold(win)
        pred_db = _decode(w.profile, win)
        changed = [i for i in range(min(len(win), len(orig_win or ""))) if orig_win and win[i] != orig_win[i]]
        sal = self._saliency_cache.get(win)
        want = bool(self.saliency_toggle.value)
        self.saliency = sal

        def draw(sal_now, note):
            fig = playground_figure(w, db, mfe, pred_db, sal_now, orig_profile, changed, self.trained, note)
            self.panel.value = _png(fig, dpi=80)

        draw(sal, None if sal is not None or not want else "computing the saliency strip…")
        lab = "score" if self.trained else "score <b style='color:#b2182b'>(untrained)</b>"
        delta = ""
        if orig_score is not None and changed:
            delta = (f" · Δ vs original <b>{w.score - orig_score:+.3f}</b> "
                     f"({len(changed)} substitution{'s' if len(changed) > 1 else ''}: "
                     + ", ".join(f"{orig_win[i]}{a + i + 1}{win[i]}" for i in changed[:8])
                     + (" …" if len(changed) > 8 else "") + ")")
        where = f" (window {a + 1}-{a + n} of {len(seq)} nt)" if len(seq) > WINDOW else ""
        self.summary.value = (
            f"<div style='font-size:14px'>{n} nt{where} · {lab} <b>{w.score:.3f}</b> · MFE stage 2 "
            f"<b>{w.mfe:.1f}</b> kcal/mol · RNAfold <b>{mfe:.1f}</b> kcal/mol{delta}</div>"
            f"<div style='font-family:monospace;font-size:11px;white-space:pre'>{html.escape(win)}\n"
            f"{html.escape(db)}  RNAfold\n{html.escape(pred_db)}  stage 1</div>"
        )
        self.timings.append(("window", time.perf_counter() - t0))
        if sal is None and want:
            t1 = time.perf_counter()
            sal = self.compute_saliency(win, w.score)
            self.saliency = sal
            draw(sal, None)
            self.timings.append(("saliency", time.perf_counter() - t1))

    def _run(self, seqs: list[str]) -> dict[str, np.ndarray]:
        from . import encoding

        codes, lengths = encoding.pad_codes(seqs)
        with _torch_threads(self.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.cascade.run_codes(codes, lengths, batch_size=64)

    def compute_saliency(self, win: str, score: float | None = None) -> np.ndarray:
        """Score change of every single substitution of ``win``, shape (4, n), rows A, C, G, U.

        All 3n variants are scored in one batch; the current base's cell is NaN.
        """
        variants, index = saliency_variants(win)
        out = self._run(([win] if score is None else []) + variants)
        base = float(out["score"][0]) if score is None else float(score)
        sc = out["score"][(1 if score is None else 0):]
        sal = np.full((4, len(win)), np.nan)
        for (pos, b), v in zip(index, sc, strict=True):
            sal[b, pos] = float(v) - base
        self._saliency_cache[win] = sal
        while len(self._saliency_cache) > 64:
            self._saliency_cache.pop(next(iter(self._saliency_cache)))
        return sal


def saliency_variants(seq: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Every single-nucleotide substitution of ``seq``: (variants, [(position, base index in ACGU)])."""
    seq = seq.upper().replace("T", "U")
    variants, index = [], []
    for i, ch in enumerate(seq):
        for b, nb in enumerate("ACGU"):
            if nb != ch:
                variants.append(seq[:i] + nb + seq[i + 1:])
                index.append((i, b))
    return variants, index


def playground_figure(w, rnafold_db: str, rnafold_mfe: float, pred_db: str, saliency: np.ndarray | None,
                      orig_profile: np.ndarray | None = None, changed: list[int] | None = None,
                      trained: bool = True, note: str | None = None):
    """Profile, hairpins, and the saliency strip of the playground, as a Figure."""
    seq = w.sequence
    n = len(seq)
    with _rc():
        fig = _new_figure(10, 5.6)
        gs = fig.add_gridspec(3, 2, height_ratios=[1.0, 0.7, 1.7], left=0.06, right=0.97, top=0.9, bottom=0.03,
                              hspace=0.45, wspace=0.08)
        ax = fig.add_subplot(gs[0, :])
        x = np.arange(1, n + 1)
        ref = _profile_from_db(rnafold_db)
        ax.axhline(0, color="#cccccc", lw=0.6)
        ax.step(x, ref, where="mid", color=_RNAFOLD, lw=1.0, label="RNAfold")
        if orig_profile is not None and changed:
            ax.plot(x, orig_profile, color="#999999", lw=1.0, ls="--", label="original sequence")
        ax.plot(x, w.profile, color=_PLUS, lw=1.4, label="stage 1: predicted profile")
        for i in changed or []:
            ax.axvline(i + 1, color=_DISAGREE, lw=1.2, alpha=0.8)
        ax.set_xlim(0.5, n + 0.5)
        ax.set_ylim(-1.2, 1.2)
        ax.set_yticks([-1, 0, 1], ["')'", "'.'", "'('"])
        ax.set_title(f"Stage 1 · profile   |   stage 2 MFE {w.mfe:.1f} (RNAfold {rnafold_mfe:.1f}) kcal/mol   |   "
                     f"stage 3 score {w.score:.3f}" + ("" if trained else " (UNTRAINED)"), loc="left")
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper left", ncol=3, fontsize=7, bbox_to_anchor=(0.06, 1.0), frameon=False)
        # saliency strip
        a2 = fig.add_subplot(gs[1, :], sharex=ax)
        if saliency is None:
            saliency = np.full((4, n), np.nan)
            a2.text(0.5, 0.5, note or "saliency strip off", transform=a2.transAxes, ha="center", va="center",
                    color="#666666", fontsize=9, style="italic")
        lim = max(float(np.nanmax(np.abs(saliency))) if np.isfinite(saliency).any() else 0.0, 1e-3)
        import matplotlib as mpl

        cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="#f4f4f4")
        im = a2.imshow(saliency, aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest",
                       extent=(0.5, n + 0.5, 3.5, -0.5))
        for i in changed or []:
            a2.axvline(i + 1, color=_DISAGREE, lw=1.2, alpha=0.8)
        a2.set_yticks(range(4), list("ACGU"))
        a2.set_title("Saliency: score change for each single substitution (row = new base; blank = current base)",
                     loc="left")
        cb = fig.colorbar(im, ax=a2, fraction=0.02, pad=0.005)
        cb.ax.tick_params(labelsize=6)
        cb.set_label("Δ score", fontsize=6)
        draw_hairpin(fig.add_subplot(gs[2, 0]), seq, pred_db, f"decoded from stage 1 ({pred_db.count('(')} pairs)")
        draw_hairpin(fig.add_subplot(gs[2, 1]), seq, rnafold_db, f"RNAfold ({rnafold_db.count('(')} pairs)",
                     color=_RNAFOLD)
        if not trained:
            fig.text(0.99, 0.995, "UNTRAINED MODEL — not a prediction", ha="right", va="top", color="#b2182b",
                     fontsize=9, fontweight="bold")
    return fig
