"""Figures for every stage of the cascade, next to RNAfold (matplotlib).

Every function takes its data and an optional ``ax`` and returns the Axes it
drew on, or the Figure for multi-panel figures. None of them calls
``plt.show()``. All share the colour-blind-safe style of
:mod:`mire2e_viz.style`; colours keep one meaning across figures
(+ strand blue, − strand vermillion, prediction blue, RNAfold black,
disagreements purple, 5p/3p mature arms yellow/sky blue, bases A green,
C blue, G orange, U vermillion).

Coordinates follow the scan tables: 0-based half-open on the + strand. The
``offset`` argument of :func:`score_track` is added to every coordinate (for
a FASTA that starts at 1-based genomic position ``P``, ``offset = P - 1``).

Importing this module loads matplotlib, numpy and pandas only: no torch.
ViennaRNA and forgi load when a function needs them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import Formatter, MaxNLocator

from .annotations import MATURE_TYPES, read_annotations
from .errors import InputError
from .style import BASE_TEXT, COLORS, RC, base_color, style_context

__all__ = [
    "score_track",
    "profile_comparison",
    "hairpin",
    "hairpin_comparison",
    "mfe_scatter",
    "stage_panel",
    "save_figure",
    "GenomicFormatter",
]

_MINUS = "\u2212"  # typographic minus


# =========================================================================== helpers


class GenomicFormatter(Formatter):
    """Tick labels in kb or Mb with just enough decimals to tell ticks apart.

    Parameters
    ----------
    unit
        ``"bp"``, ``"kb"`` or ``"Mb"``.
    """

    SCALE = {"bp": 1.0, "kb": 1e3, "Mb": 1e6}

    def __init__(self, unit: str = "kb") -> None:
        if unit not in self.SCALE:
            raise InputError(f"unit must be one of {sorted(self.SCALE)}, not {unit!r}")
        self.unit = unit
        self._ticks = np.zeros(0)

    def set_locs(self, locs: Sequence[float]) -> None:
        self._ticks = np.asarray(locs, dtype=np.float64)

    def _decimals(self) -> int:
        locs = self._ticks
        if locs.size < 2:
            return 0
        step = float(np.min(np.diff(np.sort(locs)))) / self.SCALE[self.unit]
        if step <= 0:
            return 0
        return int(max(0, -math.floor(math.log10(step) + 1e-9)))

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x / self.SCALE[self.unit]:,.{self._decimals()}f}"

    @staticmethod
    def choose_unit(lo: float, hi: float) -> str:
        """``bp`` for small coordinates, ``Mb`` for spans of 2 Mb and more, else ``kb``."""
        if hi < 1e4:
            return "bp"
        return "Mb" if hi - lo >= 2e6 else "kb"


class _DataScaler(Artist):
    """Re-sizes texts and line widths to data units each time the Axes is drawn.

    Added to an Axes with the lowest z-order, so it runs before the artists it
    sizes. Sizes are given in data units; artists smaller than their minimum
    size in points are hidden (letters that would be unreadable).
    """

    def __init__(self) -> None:
        super().__init__()
        self.set_zorder(-1e9)
        self.items: list[tuple[Artist, str, float, float, float, float]] = []

    def add(self, artist: Artist, kind: str, size: float, min_pt: float = 0.0,
            max_pt: float = np.inf, floor: float = 0.5) -> None:
        """Size ``artist`` (kind ``"text"`` or ``"line"``) to ``size`` data units.

        The size in points is capped at ``max_pt`` and raised to ``floor``;
        a text is hidden when its uncapped size is below ``min_pt``.
        """
        self.items.append((artist, kind, size, min_pt, max_pt, floor))

    def points_per_unit(self) -> float:
        ax = self.axes
        ax.apply_aspect()
        p0, p1 = ax.transData.transform([(0.0, 0.0), (1.0, 0.0)])
        return abs(p1[0] - p0[0]) * 72.0 / ax.figure.dpi

    def draw(self, renderer: Any) -> None:
        ppu = self.points_per_unit()
        for artist, kind, size, min_pt, max_pt, floor in self.items:
            pts = min(size * ppu, max_pt)
            if kind == "text":
                artist.set_fontsize(max(pts, floor))
                artist.set_visible(size * ppu >= min_pt)
            else:
                artist.set_linewidth(max(pts, min_pt))
        self.stale = False

    def get_window_extent(self, renderer: Any = None) -> Any:
        from matplotlib.transforms import Bbox

        return Bbox.null()


def _scaler(ax: Axes) -> _DataScaler:
    for child in ax.get_children():
        if isinstance(child, _DataScaler):
            return child
    sc = _DataScaler()
    ax.add_artist(sc)
    return sc


def _new_figure(figsize: tuple[float, float]) -> Figure:
    with style_context():
        return plt.figure(figsize=figsize, layout="constrained")


def _style_axes(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _col(df: pd.DataFrame, names: Sequence[str], what: str) -> None:
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {', '.join(missing)}; it has {list(df.columns)}")


def _downsample_max(x: np.ndarray, y: np.ndarray, lo: float, hi: float, n_bins: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Keep the highest point of each of ``n_bins`` equal bins over ``[lo, hi]``.

    Peaks survive exactly (their position and value), so thresholds and
    maxima read the same as on the full-resolution track.
    """
    if x.size <= n_bins or hi <= lo:
        return x, y
    b = np.clip(((x - lo) / (hi - lo) * n_bins).astype(np.int64), 0, n_bins - 1)
    order = np.lexsort((-y, b))
    first = np.ones(order.size, dtype=bool)
    first[1:] = b[order][1:] != b[order][:-1]
    keep = np.sort(order[first])
    return x[keep], y[keep]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _rna(seq: str) -> str:
    return str(seq).upper().replace("T", "U")


def _fold_structure(seq: str, rnafold: Any) -> tuple[str, float | None]:
    """RNAfold's structure (and MFE) from a FoldResult, a dot-bracket, or by folding."""
    if rnafold is None:
        from .fold import fold_one

        res = fold_one(seq)
        return res.structure, res.mfe
    if isinstance(rnafold, str):
        if len(rnafold) != len(seq):
            raise InputError(f"RNAfold structure has {len(rnafold)} chars for {len(seq)} nt")
        return rnafold, None
    return str(rnafold.structure), float(rnafold.mfe)


# =========================================================================== score track


def _lane_axes(fig: Figure, ax: Axes | None, ratios: list[float]) -> list[Axes]:
    n = len(ratios)
    if ax is None:
        gs = fig.add_gridspec(n, 1, height_ratios=ratios)
        first = fig.add_subplot(gs[0])
        return [first] + [fig.add_subplot(gs[i], sharex=first) for i in range(1, n)]
    spec = ax.get_subplotspec()
    if spec is not None:
        gs = spec.subgridspec(n, 1, height_ratios=ratios, hspace=0.08)
        ax.remove()
        first = fig.add_subplot(gs[0])
        return [first] + [fig.add_subplot(gs[i], sharex=first) for i in range(1, n)]
    box = ax.get_position()
    ax.remove()
    tot = float(sum(ratios))
    out: list[Axes] = []
    top = box.y1
    for r in ratios:
        h = box.height * r / tot
        out.append(fig.add_axes((box.x0, top - h, box.width, h),
                                sharex=out[0] if out else None))
        top -= h
    return out


def _annotation_table(annotations: Any, seqname: str | None, lo: float, hi: float,
                      offset: int) -> pd.DataFrame:
    if annotations is None:
        return pd.DataFrame(columns=["seqname", "start", "end", "strand", "name", "type", "id",
                                     "parent"])
    if isinstance(annotations, (str, os.PathLike)):
        ann = read_annotations(annotations)
    else:
        ann = annotations.copy()
        _col(ann, ["start", "end"], "annotation table")
        for c, default in (("strand", "."), ("name", ""), ("type", "feature"), ("id", ""),
                           ("parent", ""), ("seqname", "")):
            if c not in ann.columns:
                ann[c] = default
    if seqname is not None and (ann["seqname"] == seqname).any():
        ann = ann[ann["seqname"] == seqname]
    ann = ann[(ann["end"] > lo) & (ann["start"] < hi)]
    return ann.reset_index(drop=True)


def _arm(name: str, row_start: int, row_end: int, hp_start: int, hp_end: int, strand: str) -> str:
    low = name.lower()
    if low.endswith("-5p"):
        return "5p"
    if low.endswith("-3p"):
        return "3p"
    mid = (row_start + row_end) / 2
    first_half = mid < (hp_start + hp_end) / 2
    return "5p" if first_half == (strand != "-") else "3p"


def _draw_annotations(ax: Axes, ann: pd.DataFrame, lo: float, hi: float, offset: int) -> dict:
    """Annotation lane: + strand hairpins above the midline, − strand below."""
    ax.axhline(0, color=COLORS["neutral"], lw=0.8, zorder=0)
    span = hi - lo
    min_w = span * 0.004
    is_mature = ann["type"].isin(MATURE_TYPES)
    hairpins = ann[~is_mature]
    matures = ann[is_mature]
    # label packing: rough text width in data units from the axes width
    fig = ax.figure
    ax_w_pt = max(ax.get_position().width * fig.get_figwidth() * 72, 1.0)
    fs = 6.5
    unit_per_pt = span / ax_w_pt
    rows_end: dict[str, list[float]] = {"+": [], "-": []}
    counts = {"hairpins": 0, "matures": 0, "labels": 0}
    max_rows = 3
    n_rows_used = {"+": 0, "-": 0}
    for hp in hairpins.sort_values("start").itertuples(index=False):
        strand = hp.strand if hp.strand in ("+", "-") else "+"
        sign = 1 if strand == "+" else -1
        x0, x1 = hp.start + offset, hp.end + offset
        if x1 - x0 < min_w:
            c = (x0 + x1) / 2
            x0, x1 = c - min_w / 2, c + min_w / 2
        y0 = 0.15 if sign > 0 else -0.85
        edge = COLORS["plus"] if strand == "+" else COLORS["minus"]
        rect = Rectangle((x0, y0), x1 - x0, 0.7, facecolor="#F2F2F2", edgecolor=edge, lw=1.0,
                         zorder=2, gid=f"hairpin:{hp.name}")
        ax.add_patch(rect)
        counts["hairpins"] += 1
        mat = matures[(matures["parent"] == hp.id) & (matures["parent"] != "")]
        if mat.empty:  # a BED or GFF without Derives_from: matures inside the hairpin
            mat = matures[(matures["start"] >= hp.start) & (matures["end"] <= hp.end)
                          & (matures["strand"] == hp.strand)]
        for m in mat.itertuples(index=False):
            arm = _arm(m.name, m.start, m.end, hp.start, hp.end, strand)
            ax.add_patch(Rectangle((m.start + offset, y0), m.end - m.start, 0.7,
                                   facecolor=COLORS["mature" + arm], edgecolor=edge, lw=0.6,
                                   zorder=3, gid=f"mature:{m.name}"))
            counts["matures"] += 1
        # label, with a 5'→3' arrow, packed into up to three rows per strand
        label = f"{hp.name} \u2192" if strand == "+" else f"\u2190 {hp.name}"
        w = len(label) * fs * 0.55 * unit_per_pt
        cx = (x0 + x1) / 2
        left, right = cx - w / 2, cx + w / 2
        rows = rows_end[strand]
        row = next((i for i, e in enumerate(rows) if left > e), None)
        if row is None and len(rows) < max_rows:
            rows.append(-np.inf)
            row = len(rows) - 1
        if row is None:
            continue
        rows[row] = right + 0.01 * span
        n_rows_used[strand] = max(n_rows_used[strand], row + 1)
        y = (0.95 + 0.55 * row) if sign > 0 else -(0.95 + 0.55 * row)
        ax.text(cx, y, label, ha="center", va="bottom" if sign > 0 else "top", fontsize=fs,
                color=edge, clip_on=True, gid="annotation-label")
        counts["labels"] += 1
    top = 0.95 + 0.55 * max(n_rows_used["+"], 1) + 0.1
    bottom = -(0.95 + 0.55 * max(n_rows_used["-"], 1) + 0.1)
    ax.set_ylim(bottom, top)
    ax.set_yticks([0.5, -0.5], ["+", _MINUS])
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    if counts["matures"]:
        handles = [Patch(facecolor=COLORS["mature5p"], edgecolor="#666666", lw=0.5,
                         label="5p mature"),
                   Patch(facecolor=COLORS["mature3p"], edgecolor="#666666", lw=0.5,
                         label="3p mature")]
        ax.legend(handles=handles, loc="upper right", bbox_to_anchor=(1.0, 1.0), ncol=2,
                  fontsize=6, handlelength=1.2, borderaxespad=0.1, columnspacing=1.0)
    if not len(hairpins):
        ax.text(0.5, 0.5, "no annotated hairpin in view", transform=ax.transAxes,
                ha="center", va="center", fontsize=7, color="#777777")
    return counts


def score_track(
    scan: pd.DataFrame,
    candidates: pd.DataFrame | None = None,
    annotations: str | os.PathLike[str] | pd.DataFrame | None = None,
    *,
    offset: int = 0,
    threshold: float | None = 0.5,
    layout: str = "lanes",
    region: tuple[float, float] | None = None,
    seqname: str | None = None,
    ax: Axes | None = None,
    max_points: int = 2000,
    title: str | None = None,
    annotation_label: str = "miRBase",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Pre-miRNA score along a locus, both strands, with candidates and annotation.

    Parameters
    ----------
    scan
        Window table from :func:`mire2e_viz.scan`: ``seqname, start, end,
        strand, score`` (0-based half-open, + strand coordinates).
    candidates
        Candidate table from :func:`mire2e_viz.scan.call_candidates`; each
        region is shaded on its strand's lane and labelled with its score.
    annotations
        GFF3/BED path or a table from
        :func:`~mire2e_viz.annotations.read_annotations`, in genomic
        coordinates (the scan's plus ``offset``). Hairpins are drawn as boxes
        (+ strand above the line, − strand below), mature arms inside them,
        gene names as labels with a 5'→3' arrow. If the table names the
        scan's ``seqname`` only those rows are used.
    offset
        Added to every scan and candidate coordinate (e.g. ``13836200`` for a
        FASTA that starts at chr19:13,836,201).
    threshold
        Decision threshold drawn as a dashed line (``None`` for none).
    layout
        ``"lanes"``: one score lane per strand; ``"mirrored"``: one lane,
        + strand up and − strand down.
    region
        ``(start, end)`` to show, genomic coordinates; default the scanned span.
    seqname
        Which sequence to plot when the table holds several.
    ax
        Draw into the area of this Axes (it is split into lanes); default a
        new Figure.
    max_points
        Windows per strand above which the track is downsampled for display,
        keeping the highest window of each bin (peaks survive).
    title
        Figure title (default names the locus).
    annotation_label
        Label of the annotation lane.
    figsize
        Size in inches of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; its lanes are ``fig.axes`` (top to bottom), with labels
        ``"score +"``, ``"score -"`` (or ``"score"`` when mirrored) and
        ``"annotation"``.
    """
    _col(scan, ["start", "end", "strand", "score"], "scan table")
    if layout not in ("lanes", "mirrored"):
        raise InputError(f"layout must be 'lanes' or 'mirrored', not {layout!r}")
    df = scan
    if "seqname" in df.columns:
        names = pd.unique(df["seqname"].astype(str))
        if seqname is None:
            if len(names) > 1:
                raise InputError(
                    f"the scan holds {len(names)} sequences ({', '.join(names[:5])}...); "
                    "choose one with seqname="
                )
            seqname = str(names[0]) if len(names) else None
        else:
            df = df[df["seqname"].astype(str) == seqname]
    if df.empty:
        raise InputError("nothing to plot: the scan table has no windows")
    start = df["start"].to_numpy(np.int64) + offset
    end = df["end"].to_numpy(np.int64) + offset
    lo, hi = (float(start.min()), float(end.max())) if region is None else map(float, region)
    strands = [s for s in ("+", "-") if (df["strand"] == s).any()]
    ann = _annotation_table(annotations, seqname, lo, hi, 0) if annotations is not None else None

    with style_context():
        ratios = [1.0] * len(strands) if layout == "lanes" else [2.0]
        if ann is not None:
            ratios.append(0.9)
        if ax is None:
            h = figsize or (7.2, 1.2 + 1.1 * sum(ratios))
            fig = _new_figure(h)
        else:
            fig = ax.figure
        axes = _lane_axes(fig, ax, ratios)
        score_axes = axes[: len(ratios) - (ann is not None)]
        x_all = (start + end) / 2.0
        score = df["score"].to_numpy(np.float64)
        strand_arr = df["strand"].to_numpy()
        for k, s in enumerate(strands):
            lane = score_axes[k] if layout == "lanes" else score_axes[0]
            sign = 1.0 if (s == "+" or layout == "lanes") else -1.0
            m = strand_arr == s
            order = np.argsort(x_all[m], kind="stable")
            x, y = _downsample_max(x_all[m][order], score[m][order], lo, hi, max_points)
            colour = COLORS["plus"] if s == "+" else COLORS["minus"]
            lane.fill_between(x, 0, sign * y, color=colour, alpha=0.3, lw=0, zorder=2)
            lane.plot(x, sign * y, color=colour, lw=1.0, zorder=3, gid=f"score{s}")
            if threshold is not None:
                lane.axhline(sign * threshold, color=COLORS["threshold"], lw=0.8, ls="--",
                             zorder=4)
            if candidates is not None and len(candidates):
                _shade_candidates(lane, candidates, s, seqname, offset, sign, layout)
        for k, lane in enumerate(score_axes):
            _style_axes(lane)
            if layout == "lanes":
                s = strands[k]
                lane.set_ylim(0, 1.08)
                lane.set_yticks([0, 0.5, 1])
                lane.set_ylabel(f"score\n{s if s == '+' else _MINUS} strand")
                lane.set_label(f"score {s}")
                sym, arrow = ("+", "\u2192") if s == "+" else (_MINUS, "\u2190")
                lane.text(0.005, 0.97, f"{sym} strand {arrow}",
                          transform=lane.transAxes, ha="left", va="top", fontsize=7,
                          color=COLORS["plus" if s == "+" else "minus"], fontweight="bold")
            else:
                lane.set_ylim(-1.08, 1.08)
                lane.set_yticks([-1, -0.5, 0, 0.5, 1], ["1", "0.5", "0", "0.5", "1"])
                lane.axhline(0, color="#333333", lw=0.6, zorder=5)
                lane.set_ylabel(f"score\n{_MINUS} strand   + strand")
                lane.set_label("score")
                lane.text(0.005, 0.97, "+ strand \u2192", transform=lane.transAxes, ha="left",
                          va="top", fontsize=7, color=COLORS["plus"], fontweight="bold")
                lane.text(0.005, 0.03, f"\u2190 {_MINUS} strand", transform=lane.transAxes,
                          ha="left", va="bottom", fontsize=7, color=COLORS["minus"],
                          fontweight="bold")
            if threshold is not None:
                lane.text(1.0, threshold if layout == "lanes" else threshold,
                          f" threshold {threshold:g}", transform=lane.get_yaxis_transform(),
                          ha="left", va="center", fontsize=6, color=COLORS["threshold"])
            lane.grid(axis="y", color="#EEEEEE", lw=0.6, zorder=0)
        if ann is not None:
            lane = axes[-1]
            counts = _draw_annotations(lane, ann, lo, hi, 0)
            lane.set_ylabel(annotation_label)
            lane.set_label("annotation")
            lane.spines["top"].set_visible(False)
            lane.spines["right"].set_visible(False)
            fig._mire2e_annotation_counts = counts  # for tests and callers
        bottom = axes[-1]
        for lane in axes[:-1]:
            lane.tick_params(axis="x", labelbottom=False)
        bottom.set_xlim(lo, hi)
        unit = GenomicFormatter.choose_unit(lo, hi)
        bottom.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10]))
        bottom.xaxis.set_major_formatter(GenomicFormatter(unit))
        where = f"{seqname} " if seqname else ""
        bottom.set_xlabel(f"{where}position ({unit})")
        if title is None:
            title = (f"pre-miRNA score along {where}{int(lo) + 1:,}\u2013{int(hi):,} "
                     f"({(hi - lo) / 1e3:,.1f} kb)")
        axes[0].set_title(title, loc="left")
    return fig


def _shade_candidates(ax: Axes, cand: pd.DataFrame, strand: str, seqname: str | None,
                      offset: int, sign: float, layout: str) -> None:
    c = cand[cand["strand"] == strand]
    if seqname is not None and "seqname" in c.columns:
        c = c[c["seqname"].astype(str) == seqname]
    if layout == "mirrored":
        ymin, ymax = (0.5, 1.0) if sign > 0 else (0.0, 0.5)
    else:
        ymin, ymax = 0.0, 1.0
    for k, row in enumerate(c.itertuples(index=False)):
        x0, x1 = row.start + offset, row.end + offset
        ax.axvspan(x0, x1, ymin=ymin, ymax=ymax, color=COLORS["candidate"], alpha=0.8, lw=0,
                   zorder=1, gid=f"candidate:{getattr(row, 'name', k)}")
        if k < 40:
            yt = 1.02 if layout == "lanes" else (1.0 if sign > 0 else -1.0)
            ax.text((x0 + x1) / 2, yt * (1 if layout == "lanes" else 1), f"{row.score:.2f}",
                    ha="center", va="bottom" if sign > 0 else "top", fontsize=6,
                    color="#444444", clip_on=False, zorder=6)


# =========================================================================== profile


def profile_comparison(
    window: Any,
    rnafold: Any = None,
    *,
    predicted: np.ndarray | None = None,
    ax: Axes | None = None,
    letters: bool | None = None,
    threshold: float = 0.5,
    legend: bool = True,
    title: str | None = None,
) -> Axes:
    """One window's predicted pairing profile against RNAfold's.

    Parameters
    ----------
    window
        A window result (``sequence`` and ``profile``) or a sequence string
        (then give ``predicted``).
    rnafold
        RNAfold's structure: a :class:`~mire2e_viz.fold.FoldResult`, a
        dot-bracket string, or ``None`` to fold the sequence now (cached).
    predicted
        Predicted profile, overriding ``window.profile``.
    ax
        Axes to draw on; default a new figure.
    letters
        Write the nucleotides along the x-axis; default when they fit
        (about 5 pt per nucleotide).
    threshold
        A position disagrees when the predicted value, rounded to the
        nearest class (``> threshold`` is ``'('``, ``< -threshold`` is
        ``')'``), differs from RNAfold's; such positions are shaded purple.
    legend, title
        Show a legend; the axes title.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from .fold import profile_classes, profile_from_dotbracket

    seq = _rna(window if isinstance(window, str) else _get(window, "sequence"))
    prof = predicted if predicted is not None else _get(window, "profile")
    if prof is None:
        raise InputError("profile_comparison needs a predicted profile")
    prof = np.asarray(prof, dtype=np.float64).reshape(-1)
    n = len(seq)
    if prof.size < n:
        raise InputError(f"profile has {prof.size} values for a {n}-nt sequence")
    prof = prof[:n]
    structure, _ = _fold_structure(seq, rnafold)
    ref = profile_from_dotbracket(structure)
    disagree = np.flatnonzero(profile_classes(prof, threshold) != ref.astype(np.int8))
    with style_context():
        if ax is None:
            fig = _new_figure((7.2, 2.2))
            ax = fig.add_subplot()
        x = np.arange(n)
        for i in disagree:
            ax.axvspan(i - 0.5, i + 0.5, color=COLORS["disagree"], alpha=0.22, lw=0, zorder=0,
                       gid="disagree")
        ax.bar(x, prof, width=0.8, color=COLORS["predicted"], alpha=0.85, zorder=2,
               label="predicted (stage 1)", gid="predicted")
        ax.step(x, ref, where="mid", color=COLORS["rnafold"], lw=1.3, zorder=3,
                label="RNAfold MFE structure", gid="rnafold")
        ax.axhline(0, color="#999999", lw=0.5, zorder=1)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(-1.25, 1.25)
        ax.set_yticks([-1, 0, 1], [f"')' {_MINUS}1", "'.' 0", "'(' +1"])
        ax.set_ylabel("pairing")
        _style_axes(ax)
        if letters is None:
            fig = ax.figure
            width_pt = ax.get_position().width * fig.get_figwidth() * 72
            letters = width_pt / max(n, 1) >= 4.0
        if letters:
            fig = ax.figure
            width_pt = ax.get_position().width * fig.get_figwidth() * 72
            fs = float(np.clip(width_pt / max(n, 1) * 1.15, 4.0, 8.0))
            ax.set_xticks(x, list(seq), fontsize=fs, fontfamily="monospace")
            ax.tick_params(axis="x", length=0, pad=1.5)
            for lab, b in zip(ax.get_xticklabels(), seq, strict=True):
                lab.set_color(base_color(b))
                lab.set_fontweight("bold")
            top = ax.secondary_xaxis("top")
            top.set_xticks(np.arange(9, n, 10), [str(i + 1) for i in range(9, n, 10)])
            top.tick_params(labelsize=6, length=2)
            top.spines["top"].set_visible(False)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, p: f"{int(v) + 1}"))
            ax.set_xlabel("position in window (nt)")
        if legend:
            handles = [
                Patch(facecolor=COLORS["predicted"], alpha=0.85, label="predicted (stage 1)"),
                Line2D([], [], color=COLORS["rnafold"], lw=1.3, label="RNAfold MFE structure"),
                Patch(facecolor=COLORS["disagree"], alpha=0.3,
                      label=f"disagree ({len(disagree)} of {n} nt)"),
            ]
            ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3,
                      fontsize=6.5, borderaxespad=0.2, handlelength=1.5)
        if title:
            ax.set_title(title, pad=16 if legend else 4)
        ax._mire2e_disagree = disagree  # for tests and callers
    return ax


# =========================================================================== hairpin


def _normalise_matures(matures: Any) -> list[tuple[str, int, int]]:
    if not matures:
        return []
    if isinstance(matures, Mapping):
        items = list(matures.items())
    else:
        items = [(f"arm {k + 1}", v) for k, v in enumerate(matures)]
    out = []
    for name, (a, b) in items:
        out.append((str(name), int(a), int(b)))
    return out


def _orient(coords: np.ndarray) -> np.ndarray:
    """Rotate (and if needed mirror) a layout: ends on the left, 5' arm on top.

    The direction from the midpoint of the two ends to the centroid (for a
    hairpin, along the stem towards the loop) is turned to +x; the drawing is
    then mirrored top-to-bottom if the 5' half of the molecule lies below the
    3' half, which gives the familiar miRBase orientation.
    """
    c = coords - coords.mean(axis=0)
    ends = (c[0] + c[-1]) / 2
    d = -ends
    norm = np.hypot(*d)
    if norm < 1e-6:  # symmetric layout: use the principal axis
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        d = vt[0]
        norm = 1.0
    ang = math.atan2(d[1], d[0])
    rot = np.array([[math.cos(-ang), -math.sin(-ang)], [math.sin(-ang), math.cos(-ang)]])
    out = c @ rot.T
    half = len(out) // 2
    if half and out[:half, 1].mean() < out[-half:, 1].mean():
        out[:, 1] = -out[:, 1]
    return out


def hairpin(
    sequence: str,
    structure: str,
    *,
    ax: Axes | None = None,
    matures: Mapping[str, tuple[int, int]] | Sequence[tuple[int, int]] | None = None,
    reference: str | None = None,
    title: str | None = None,
    numbering: bool = True,
    base_key: bool = True,
    orient: bool = True,
) -> Axes:
    """Draw a secondary structure with forgi, bases coloured.

    The layout comes from forgi's ``plot_rna`` (ViennaRNA's naview layout),
    turned so that the two ends are on the left and the 5' arm on top, as in
    miRBase. The drawing is then restyled: nucleotides coloured by base
    (A green, C blue, G orange, U vermillion), base pairs as grey bars, the
    5' and 3' ends labelled, every 10th nucleotide numbered, and mature arms
    shown as a yellow (5p) or sky-blue (3p) halo with their names. Letters
    and line widths scale with the drawing at every draw; letters are hidden
    below 3 pt, so a 150+ nt structure in a small Axes stays a clean coloured
    backbone instead of overlapping text. ViennaRNA's global
    ``RNA.cvar.rna_plot_type``, which forgi changes, is restored afterwards.

    Parameters
    ----------
    sequence
        Nucleotides (T is drawn as U).
    structure
        Dot-bracket of the same length (no pairs or several branches are fine).
    ax
        Axes to draw on; default a new figure.
    matures
        Mature arms to highlight, ``{name: (start, end)}`` 0-based half-open
        in the sequence's own coordinates (see
        :func:`mire2e_viz.annotations.features_in_window`), or a list of
        ``(start, end)``. An arm is "5p" if its name ends in ``-5p`` or it
        lies in the first half of the sequence.
    reference
        A reference dot-bracket (RNAfold's): pairs absent from it are drawn
        in purple, dashed.
    title
        Axes title.
    numbering
        Number every 10th nucleotide.
    base_key
        Write a small colour key ``A C G U`` in the corner.
    orient
        Turn the drawing to the miRBase orientation (else forgi's as is).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import RNA

    from .fold import base_pairs

    seq = _rna(sequence)
    if len(seq) != len(structure):
        raise InputError(f"sequence has {len(seq)} nt but the structure {len(structure)} chars")
    if len(seq) < 3:
        raise InputError("hairpin() needs at least 3 nt")
    pairs = base_pairs(structure)  # validates balance
    ref_pairs = base_pairs(reference) if reference is not None else None
    import forgi.threedee.model.coarse_grain as ftmc
    import forgi.visual.mplotlib as fvm

    with style_context():
        if ax is None:
            fig = _new_figure((6.0, 3.0))
            ax = fig.add_subplot()
        n_lines, n_patches, n_texts = len(ax.lines), len(ax.patches), len(ax.texts)
        n_coll = len(ax.collections)
        saved = RNA.cvar.rna_plot_type
        try:
            # RNAplot knows only (): other brackets are drawn as ordinary pairs
            plain = "".join("(" if c in "([{<" else ")" if c in ")]}>" else "." for c in structure)
            cg = ftmc.CoarseGrainRNA.from_dotbracket(plain, seq=seq)
            _, coords = fvm.plot_rna(cg, ax=ax, text_kwargs={"fontsize": 5}, color=False,
                                     annotations=None, backbone_kwargs={}, basepair_kwargs={})
        finally:
            RNA.cvar.rna_plot_type = saved
        coords = np.asarray(coords, dtype=np.float64)
        if orient:
            coords = _orient(coords)
        # forgi drew pairs, letters, numbers and circles at fixed sizes: keep its
        # backbone and circles (moved to the oriented layout), redraw the rest so
        # that everything scales with the drawing.
        new_lines = ax.lines[n_lines:]
        for line in new_lines[1:]:
            line.remove()
        for t in list(ax.texts[n_texts:]):
            t.remove()
        for coll in list(ax.collections[n_coll:]):
            coll.remove()
        sc = _scaler(ax)
        if new_lines:
            backbone = new_lines[0]
            backbone.set_data(coords[:, 0], coords[:, 1])
            backbone.set_color(COLORS["backbone"])
            backbone.set_zorder(1)
            backbone.set_gid("backbone")
            sc.add(backbone, "line", 1.5, min_pt=0.3)
        circles = list(ax.patches[n_patches:])
        for i, circ in enumerate(circles[: len(seq)]):
            circ.set_center((coords[i, 0], coords[i, 1]))
            circ.set_radius(6.5)
            circ.set_facecolor(base_color(seq[i]))
            circ.set_edgecolor("white")
            circ.set_zorder(3)
            circ.set_gid(f"nt{i + 1}")
            sc.add(circ, "line", 0.8, min_pt=0.0)
        # base pairs
        segs, colours, styles = [], [], []
        for i, j in sorted(pairs):
            segs.append([coords[i], coords[j]])
            extra = ref_pairs is not None and (i, j) not in ref_pairs
            colours.append(COLORS["pair_extra"] if extra else COLORS["pair"])
            styles.append((0, (2, 1)) if extra else "solid")
        if segs:
            lc = LineCollection(segs, colors=colours, linestyles=styles, zorder=2,
                                gid="basepairs", capstyle="butt")
            ax.add_collection(lc, autolim=False)
            sc.add(lc, "line", 3.0, min_pt=0.4)
        # letters
        for i, b in enumerate(seq):
            t = ax.text(coords[i, 0], coords[i, 1], b, ha="center", va="center_baseline",
                        color=BASE_TEXT.get(b, "black"), fontweight="bold", zorder=4,
                        gid="letter")
            sc.add(t, "text", 9.0, min_pt=3.0)
        extra_pts = [coords.min(axis=0) - 12, coords.max(axis=0) + 12]
        # 5' and 3' ends, then every 10th nucleotide, placed outside the backbone
        labels = [(0, "5'"), (len(seq) - 1, "3'")]
        if numbering:
            labels += [(k, str(k + 1)) for k in range(9, len(seq) - 1, 10)]
        places = []
        for k, _ in labels:
            v = coords[k] - _local_centre(coords, k, pairs)
            norm = np.hypot(*v)
            v = v / norm if norm > 1e-9 else np.array([0.0, 1.0])
            places.append(coords[k] + v * 17.0)
        gap = places[0] - places[1]
        if np.hypot(*gap) < 18.0:  # 5' and 3' labels would collide: push them apart
            sep = coords[0] - coords[-1]
            sep = sep / np.hypot(*sep) if np.hypot(*sep) > 1e-9 else np.array([0.0, 1.0])
            mid = (places[0] + places[1]) / 2
            places[0], places[1] = mid + sep * 10.0, mid - sep * 10.0
        for (k, text), pos in zip(labels, places, strict=True):
            end = k in (0, len(seq) - 1)
            t = ax.text(pos[0], pos[1], text, ha="center", va="center",
                        color="#222222" if end else "#777777", zorder=5,
                        fontweight="bold" if end else "normal",
                        gid="end-label" if end else "number")
            sc.add(t, "text", 9.0 if end else 7.5, min_pt=3.0, max_pt=9.0 if end else 7.0)
            extra_pts.append(pos)
        # mature arms
        centre = coords.mean(axis=0)
        partner = {i: j for i, j in pairs} | {j: i for i, j in pairs}
        for name, a, b in _normalise_matures(matures):
            a, b = max(0, a), min(len(seq), b)
            if b <= a:
                continue
            arm = _arm(name, a, b, 0, len(seq), "+")
            colour = COLORS["mature" + arm]
            pts = coords[a:b]
            (halo,) = ax.plot(pts[:, 0], pts[:, 1], color=colour, alpha=0.9, zorder=0.5,
                              solid_capstyle="round", solid_joinstyle="round",
                              gid=f"mature:{name}")
            sc.add(halo, "line", 20.0, min_pt=3.0)
            mid = pts.mean(axis=0)
            partners = [partner[i] for i in range(a, b) if i in partner]
            away = mid - (coords[partners].mean(axis=0) if partners else centre)
            out = np.array([0.0, 1.0 if away[1] >= 0 else -1.0])  # the arm's outer side
            side = mid + out * 30.0
            t = ax.text(side[0], side[1], name, ha="center", va="center", zorder=6,
                        color="#222222", gid="mature-label",
                        bbox={"boxstyle": "round,pad=0.2", "fc": colour, "ec": "none",
                              "alpha": 0.9})
            sc.add(t, "text", 10.0, min_pt=0.0, max_pt=8.0, floor=5.5)
            extra_pts.append(side + out * 10)
        ax.relim()
        ax.update_datalim(np.asarray(extra_pts))
        ax.set_aspect("equal", adjustable="datalim")
        ax.margins(0.02)
        ax.autoscale_view()
        ax.set_axis_off()
        if base_key:
            for k, b in enumerate("ACGU"):
                ax.text(0.0 + 0.045 * k, 0.0, b, transform=ax.transAxes, ha="left",
                        va="bottom", fontsize=7, fontweight="bold", color=base_color(b),
                        gid="base-key")
        if title:
            ax.set_title(title, fontsize=8, loc="center")
        ax._mire2e_coords = coords
    return ax


def _local_centre(coords: np.ndarray, k: int, pairs: set[tuple[int, int]]) -> np.ndarray:
    partner = {i: j for i, j in pairs} | {j: i for i, j in pairs}
    if k in partner:
        return coords[partner[k]]
    lo, hi = max(0, k - 1), min(len(coords) - 1, k + 1)
    if lo == k or hi == k:  # an end: point away from its neighbour
        other = coords[hi] if lo == k else coords[lo]
        return other
    return (coords[lo] + coords[hi]) / 2


def hairpin_comparison(
    sequence: str,
    rnafold: Any = None,
    predicted: str | None = None,
    *,
    profile: np.ndarray | None = None,
    matures: Mapping[str, tuple[int, int]] | None = None,
    axes: Sequence[Axes] | None = None,
    layout: str = "rows",
    titles: tuple[str, str] | None = None,
    min_loop: int = 3,
) -> Figure:
    """RNAfold's structure and the decoded prediction, side by side.

    Parameters
    ----------
    sequence
        The window's nucleotides.
    rnafold
        A FoldResult, a dot-bracket, or ``None`` to fold now.
    predicted
        The predicted dot-bracket; or give ``profile`` to decode it with
        :func:`mire2e_viz.fold.dotbracket_from_profile` (canonical pairs only).
    profile
        Predicted pairing profile.
    matures
        Mature arms to highlight in both drawings (see :func:`hairpin`).
    axes
        Two Axes to draw on; default a new figure.
    layout
        ``"rows"`` (one above the other; best for elongated hairpins, which
        are drawn horizontally) or ``"columns"`` (side by side).
    titles
        Titles of the two drawings (default: RNAfold with its MFE, and the
        prediction with its base-pair F1).
    min_loop
        Passed to the decoder.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .fold import base_pairs, bp_scores, dotbracket_from_profile

    seq = _rna(sequence)
    ref, mfe = _fold_structure(seq, rnafold)
    if predicted is None:
        if profile is None:
            raise InputError("give the predicted structure or its profile")
        predicted = dotbracket_from_profile(np.asarray(profile)[: len(seq)], min_loop, seq)
    _, _, f1 = bp_scores(predicted, ref)
    if layout not in ("rows", "columns"):
        raise InputError(f"layout must be 'rows' or 'columns', not {layout!r}")
    if titles is None:
        mfe_txt = f", {mfe:.1f} kcal/mol".replace("-", _MINUS) if mfe is not None else ""
        titles = (f"RNAfold MFE structure{mfe_txt}",
                  f"prediction decoded to a structure (base-pair F1 {f1:.2f} vs RNAfold)")
    with style_context():
        if axes is None:
            shape, size = ((2, 1), (7.2, 5.0)) if layout == "rows" else ((1, 2), (7.2, 3.6))
            fig = _new_figure(size)
            axes = list(fig.subplots(*shape).ravel())
        fig = axes[0].figure
        hairpin(seq, ref, ax=axes[0], matures=matures, title=titles[0])
        hairpin(seq, predicted, ax=axes[1], matures=matures, reference=ref, title=titles[1],
                base_key=False)
        if base_pairs(predicted) - base_pairs(ref):
            handle = Line2D([], [], color=COLORS["pair_extra"], ls=(0, (2, 1)), lw=1.5,
                            label="pair not in RNAfold")
            axes[1].legend(handles=[handle], loc="lower left", fontsize=6, handlelength=2,
                           borderaxespad=0.0)
    return fig



# =========================================================================== MFE scatter


def mfe_scatter(
    predicted: pd.DataFrame | Sequence[float] | np.ndarray,
    rnafold: Sequence[float] | np.ndarray | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    color: str | None = None,
    label: str = "predicted MFE, stage 2 (kcal/mol)",
) -> Axes:
    """Predicted MFE against RNAfold's for many windows, with r, MAE and y = x.

    Parameters
    ----------
    predicted
        Predicted MFEs, or a table with ``mfe_pred`` and ``mfe_rnafold``
        columns (the output of :func:`mire2e_viz.fold.compare`).
    rnafold
        RNAfold MFEs (when ``predicted`` is an array).
    ax
        Axes to draw on; default a new figure.
    title
        Axes title.
    color
        Marker colour (default the prediction colour).
    label
        y-axis label.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax._mire2e_stats`` holds ``n``, ``r`` and ``mae``.
    """
    if isinstance(predicted, pd.DataFrame):
        _col(predicted, ["mfe_pred", "mfe_rnafold"], "MFE table")
        pred = predicted["mfe_pred"].to_numpy(np.float64)
        ref = predicted["mfe_rnafold"].to_numpy(np.float64)
    else:
        if rnafold is None:
            raise InputError("mfe_scatter needs the RNAfold MFEs")
        pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
        ref = np.asarray(rnafold, dtype=np.float64).reshape(-1)
    if pred.size != ref.size:
        raise InputError(f"{pred.size} predicted MFEs but {ref.size} RNAfold MFEs")
    ok = np.isfinite(pred) & np.isfinite(ref)
    pred, ref = pred[ok], ref[ok]
    n = pred.size
    if n == 0:
        raise InputError("no finite MFE pairs to plot")
    r = float(np.corrcoef(pred, ref)[0, 1]) if n > 2 and pred.std() > 0 and ref.std() > 0 else np.nan
    mae = float(np.mean(np.abs(pred - ref)))
    with style_context():
        if ax is None:
            fig = _new_figure((3.6, 3.4))
            ax = fig.add_subplot()
        lo = float(min(pred.min(), ref.min(), 0.0))
        hi = 0.0 if max(pred.max(), ref.max()) <= 0 else float(max(pred.max(), ref.max()))
        margin = 0.05 * (hi - lo or 1.0)
        lims = (lo - margin, hi + margin)
        ax.plot(lims, lims, color="#555555", lw=0.9, ls="--", zorder=1, gid="identity")
        at = lims[0] + 0.86 * (lims[1] - lims[0])
        ax.text(at, at, " y = x ", rotation=45, rotation_mode="anchor", fontsize=6.5,
                color="#555555", ha="right", va="bottom", transform_rotates_text=True)
        size = 14 if n < 300 else 6 if n < 3000 else 2
        alpha = 0.8 if n < 300 else 0.5 if n < 3000 else 0.25
        ax.scatter(ref, pred, s=size, color=color or COLORS["predicted"], alpha=alpha, lw=0,
                   zorder=2, rasterized=n > 3000, gid="points")
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_aspect("equal")
        ax.set_xlabel("RNAfold MFE (kcal/mol)")
        ax.set_ylabel(label)
        _style_axes(ax)
        rtxt = "n/a" if np.isnan(r) else f"{r:.2f}"
        ax.text(0.97, 0.04, f"n = {n:,}\nPearson r = {rtxt}\nMAE = {mae:.2f} kcal/mol",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#CCCCCC", "lw": 0.6},
                gid="stats")
        if title:
            ax.set_title(title)
        ax._mire2e_stats = {"n": n, "r": r, "mae": mae}
    return ax


# =========================================================================== stage panel


def _sequence_strip(ax: Axes, seq: str, fits: bool) -> None:
    n = len(seq)
    for i, b in enumerate(seq):
        ax.add_patch(Rectangle((i - 0.5, 0), 1.0, 1.0, facecolor=base_color(b), edgecolor="white",
                               lw=0.3, gid="base"))
    if fits:
        fig = ax.figure
        width_pt = ax.get_position().width * fig.get_figwidth() * 72
        fs = float(np.clip(width_pt / max(n, 1) * 1.1, 3.5, 8.0))
        for i, b in enumerate(seq):
            ax.text(i, 0.5, b, ha="center", va="center_baseline", fontsize=fs,
                    fontfamily="monospace", fontweight="bold", color=BASE_TEXT.get(b, "black"))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(axis="x", length=0, labelbottom=False)


def _bar_value(ax: Axes, value: float, colour: str, y: float, text: str) -> None:
    """A horizontal bar from 0 to a negative value, its value written inside."""
    ax.barh(y, value, height=0.6, color=colour, zorder=2)
    ax.text(value, y, f" {text}", ha="left", va="center", fontsize=7, color="white",
            fontweight="bold", zorder=3)


def stage_panel(
    window: Any,
    *,
    rnafold: Any = None,
    matures: Mapping[str, tuple[int, int]] | None = None,
    threshold: float = 0.5,
    title: str | None = None,
    figsize: tuple[float, float] = (7.2, 9.0),
    min_loop: int = 3,
) -> Figure:
    """The teaching figure: every stage of the cascade for one window.

    Panels, top to bottom: the input sequence; stage 1, the predicted pairing
    profile against RNAfold's; the two structures drawn (RNAfold's MFE
    structure and the decoded prediction); stage 2, the MFE estimate against
    RNAfold's MFE; stage 3, the pre-miRNA score against the threshold.

    Parameters
    ----------
    window
        A window result with ``sequence``, ``profile``, ``mfe``, ``score`` and
        optionally ``name``, ``start``, ``end``, ``strand``.
    rnafold
        A FoldResult for the window, or ``None`` to fold it now (cached).
    matures
        Mature arms to highlight in the drawings (window coordinates; see
        :func:`mire2e_viz.annotations.features_in_window`).
    threshold
        Classifier threshold.
    title
        Figure title (default names the window).
    figsize
        Figure size in inches.
    min_loop
        Minimum hairpin loop for the decoded structure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .fold import FoldResult, dotbracket_from_profile, fold_one

    seq = _rna(_get(window, "sequence"))
    prof = np.asarray(_get(window, "profile"), dtype=np.float64).reshape(-1)[: len(seq)]
    mfe_pred = float(_get(window, "mfe", np.nan))
    score = float(_get(window, "score", np.nan))
    if not isinstance(rnafold, FoldResult):
        if rnafold is None:
            rnafold = fold_one(seq)
        else:
            raise InputError("stage_panel's rnafold must be a FoldResult (or None to fold)")
    decoded = dotbracket_from_profile(prof, min_loop, seq)
    n = len(seq)
    with style_context():
        fig = _new_figure(figsize)
        gs = fig.add_gridspec(5, 2, height_ratios=[0.3, 1.5, 1.45, 1.45, 0.7],
                              width_ratios=[1, 1])
        ax_seq = fig.add_subplot(gs[0, :])
        ax_prof = fig.add_subplot(gs[1, :], sharex=ax_seq)
        ax_h1 = fig.add_subplot(gs[2, :])
        ax_h2 = fig.add_subplot(gs[3, :])
        ax_mfe = fig.add_subplot(gs[4, 0])
        ax_score = fig.add_subplot(gs[4, 1])
        for a, lab in ((ax_seq, "sequence"), (ax_prof, "profile"), (ax_h1, "hairpin rnafold"),
                       (ax_h2, "hairpin predicted"), (ax_mfe, "mfe"), (ax_score, "score")):
            a.set_label(lab)

        where = ""
        start, end, strand = _get(window, "start"), _get(window, "end"), _get(window, "strand")
        name = _get(window, "name") or ""
        if start is not None:
            end = end if end is not None else start + n
            s = _MINUS if strand == "-" else "+"
            where = f" \u00b7 {name + ':' if name else ''}{int(start) + 1:,}\u2013{int(end):,} ({s})"
        ax_seq.set_title(f"Input: {n}-nt window{where}, read 5'\u21923'", loc="left")
        _sequence_strip(ax_seq, seq, fits=True)

        profile_comparison(seq, rnafold, predicted=prof, ax=ax_prof, letters=False,
                           threshold=threshold, legend=True)
        ax_prof.set_title("Stage 1 \u00b7 structure predictor: pairing profile vs RNAfold",
                          loc="left", pad=18)

        from .fold import bp_scores

        f1 = bp_scores(decoded, rnafold.structure)[2]
        mfe_txt = f"{rnafold.mfe:.1f}".replace("-", _MINUS)
        hairpin_comparison(
            seq, rnafold, decoded, matures=matures, axes=[ax_h1, ax_h2], min_loop=min_loop,
            titles=(f"RNAfold MFE structure ({mfe_txt} kcal/mol)",
                    f"Stage 1 prediction, decoded to a structure (base-pair F1 {f1:.2f} "
                    "vs RNAfold)"),
        )

        # stage 2: MFE
        ref_mfe = rnafold.mfe
        lo = min(mfe_pred if np.isfinite(mfe_pred) else 0.0, ref_mfe, -1.0) * 1.15
        ax_mfe.axvline(0, color="#999999", lw=0.6)
        if np.isfinite(mfe_pred):
            _bar_value(ax_mfe, mfe_pred, COLORS["predicted"], 1,
                       f"{mfe_pred:.1f}".replace("-", _MINUS))
        _bar_value(ax_mfe, ref_mfe, COLORS["rnafold"], 0, f"{ref_mfe:.1f}".replace("-", _MINUS))
        ax_mfe.set_yticks([1, 0], ["stage 2 estimate", "RNAfold"])
        ax_mfe.set_ylim(-0.6, 1.6)
        ax_mfe.set_xlim(lo, 0)
        diff = mfe_pred - ref_mfe
        ax_mfe.set_xlabel(
            "minimum free energy (kcal/mol)"
            + (f"\nestimate {abs(diff):.1f} {'below' if diff < 0 else 'above'} RNAfold"
               if np.isfinite(diff) else ""))
        ax_mfe.set_title("Stage 2 \u00b7 MFE estimator", loc="left")
        _style_axes(ax_mfe)

        # stage 3: score gauge
        ax_score.barh(0, 1.0, height=0.55, color="#EEEEEE", zorder=1)
        verdict = "pre-miRNA" if score >= threshold else "not a pre-miRNA"
        colour = COLORS["plus"] if score >= threshold else "#888888"
        ax_score.barh(0, score, height=0.55, color=colour, zorder=2, gid="score-bar")
        ax_score.axvline(threshold, color=COLORS["threshold"], ls="--", lw=1, zorder=3)
        ax_score.text(threshold, 0.42, f"threshold {threshold:g}", ha="center", va="bottom",
                      fontsize=6.5, color=COLORS["threshold"])
        ax_score.set_xlim(0, 1)
        ax_score.set_ylim(-0.5, 0.9)
        ax_score.set_yticks([])
        ax_score.set_xlabel("pre-miRNA probability")
        ax_score.set_title("Stage 3 \u00b7 classifier", loc="left")
        ax_score.text(min(score, 0.98), 0, f" {score:.2f} \u2192 {verdict} ",
                      ha="right" if score > 0.5 else "left", va="center", fontsize=7,
                      fontweight="bold", zorder=4,
                      color="white" if score > 0.5 else "#222222")
        for side in ("top", "right", "left"):
            ax_score.spines[side].set_visible(False)

        if title is None:
            title = "miRe2e cascade, stage by stage" + (f" \u00b7 {name}" if name else "")
        fig.suptitle(title, x=0.01, ha="left", fontsize=10, fontweight="bold")
    return fig


# =========================================================================== saving

_UNITS = {"in": 1.0, "inch": 1.0, "inches": 1.0, "mm": 1 / 25.4, "cm": 1 / 2.54}


def save_figure(
    fig: Figure | Axes,
    path: str | os.PathLike[str],
    *,
    dpi: float = 300,
    size: tuple[float, float] | None = None,
    units: str = "mm",
    transparent: bool = False,
    format: str | None = None,
    **savefig_kwargs: Any,
) -> Path:
    """Save a figure as PNG, SVG or PDF with editable text.

    Text stays text: SVG uses ``svg.fonttype = 'none'`` (fonts referenced,
    not outlined) and PDF/PS use TrueType (type 42) embedding, so labels can
    be edited in Illustrator or Inkscape. Timestamps are left out of SVG and
    PDF so that the files are reproducible.

    Parameters
    ----------
    fig
        A Figure (or an Axes: its figure is saved).
    path
        Output file; the format comes from the extension unless ``format``
        is given.
    dpi
        Resolution for PNG (and for rasterised parts of SVG/PDF).
    size
        ``(width, height)`` in ``units``; the figure is resized and saved at
        exactly that size (no tight cropping). Default: the figure's size,
        cropped tight.
    units
        ``"mm"``, ``"cm"`` or ``"in"``.
    transparent
        Transparent background.
    format
        ``"png"``, ``"svg"`` or ``"pdf"``.
    **savefig_kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig`.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if isinstance(fig, Axes):
        fig = fig.figure
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in ("png", "svg", "pdf"):
        raise InputError(f"save_figure writes png, svg or pdf, not {fmt!r} ({path})")
    if units not in _UNITS:
        raise InputError(f"units must be mm, cm or in, not {units!r}")
    if size is not None:
        w, h = (float(v) * _UNITS[units] for v in size)
        if w <= 0 or h <= 0:
            raise InputError(f"size must be positive, got {size}")
        fig.set_size_inches(w, h)
        savefig_kwargs.setdefault("bbox_inches", None)
    else:
        savefig_kwargs.setdefault("bbox_inches", "tight")
    meta = {"png": {"Software": None}, "svg": {"Date": None},
            "pdf": {"CreationDate": None, "ModDate": None}}[fmt]
    savefig_kwargs.setdefault("metadata", meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    rc = {k: RC[k] for k in ("svg.fonttype", "pdf.fonttype", "ps.fonttype", "svg.hashsalt")}
    with mpl.rc_context(rc):
        fig.savefig(path, dpi=dpi, transparent=transparent, format=fmt, **savefig_kwargs)
    return path
