"""The one colour-blind-safe style shared by every mire2e-viz figure.

Colours come from the Okabe–Ito palette (Okabe & Ito 2008), which stays
distinguishable under the common colour-vision deficiencies. Each colour has a
single meaning across all figures:

=================  ==========================================================
role               colour
=================  ==========================================================
``plus``           + strand: scores, hairpins (blue)
``minus``          − strand: scores, hairpins (vermillion)
``predicted``      the cascade's prediction (blue)
``rnafold``        ViennaRNA RNAfold's reference (black)
``disagree``       positions where the two disagree (reddish purple)
``threshold``      the decision threshold (grey, dashed)
``candidate``      shaded candidate regions (light grey)
``mature5p/3p``    mature miRNA arms: yellow (5p) and sky blue (3p)
=================  ==========================================================

Nucleotides: A green, C blue, G orange/yellow, U vermillion.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl

__all__ = ["OKABE_ITO", "COLORS", "BASE_COLORS", "RC", "style_context", "use_style"]

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "skyblue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#7F7F7F",
}

COLORS = {
    "plus": OKABE_ITO["blue"],
    "minus": OKABE_ITO["vermillion"],
    "predicted": OKABE_ITO["blue"],
    "rnafold": OKABE_ITO["black"],
    "disagree": OKABE_ITO["purple"],
    "threshold": "#555555",
    "candidate": "#DADADA",
    "mature5p": OKABE_ITO["yellow"],
    "mature3p": OKABE_ITO["skyblue"],
    "pair": "#444444",
    "pair_extra": OKABE_ITO["purple"],
    "backbone": "#888888",
    "neutral": "#BBBBBB",
}

#: nucleotide colours (T is drawn like U); N and others are grey
BASE_COLORS = {
    "A": OKABE_ITO["green"],
    "C": OKABE_ITO["blue"],
    "G": OKABE_ITO["orange"],
    "U": OKABE_ITO["vermillion"],
    "T": OKABE_ITO["vermillion"],
    "N": "#BBBBBB",
}

#: letter colour that reads on each base colour
BASE_TEXT = {"A": "white", "C": "white", "G": "black", "U": "white", "T": "white", "N": "black"}

RC: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.2,
    "axes.prop_cycle": mpl.cycler(
        color=[OKABE_ITO[k] for k in ("blue", "vermillion", "green", "orange", "purple", "skyblue")]
    ),
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "image.cmap": "cividis",
    "svg.hashsalt": "mire2e-viz",
}


@contextmanager
def style_context() -> Iterator[None]:
    """Temporarily apply the mire2e-viz style (``with style_context(): ...``)."""
    with mpl.rc_context(RC):
        yield


def use_style() -> None:
    """Apply the mire2e-viz style globally (``matplotlib.rcParams``)."""
    mpl.rcParams.update(RC)


def base_color(base: str) -> str:
    """Colour of one nucleotide letter."""
    return BASE_COLORS.get(base.upper(), BASE_COLORS["N"])
