"""Read genome annotations (miRBase GFF3 or BED) for the plots.

Every table this module returns uses the same columns and 0-based, half-open
coordinates (BED-like), whatever the file used:

``seqname, start, end, strand, name, type, id, parent``

* GFF3 (1-based, inclusive) becomes ``start = gff_start - 1``, ``end = gff_end``.
* ``name`` is the ``Name`` attribute (falling back to ``ID``), ``id`` the ``ID``,
  and ``parent`` the ``Derives_from`` or ``Parent`` attribute (miRBase links a
  mature ``miRNA`` row to its ``miRNA_primary_transcript`` hairpin with
  ``Derives_from``).
* BED rows get ``type = "feature"`` and no parent; a missing name becomes
  ``"seqname:start-end"`` and a missing strand ``"."``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["read_annotations", "features_in_window", "COLUMNS", "HAIRPIN_TYPES", "MATURE_TYPES"]

COLUMNS = ["seqname", "start", "end", "strand", "name", "type", "id", "parent"]

#: feature types drawn as hairpins (anything not listed as mature is drawn like one)
HAIRPIN_TYPES = {"miRNA_primary_transcript", "pre_miRNA", "pre-miRNA", "hairpin", "feature"}
#: feature types drawn as mature arms inside their parent hairpin
MATURE_TYPES = {"miRNA", "mature", "mature_miRNA"}


def _attributes(text: str) -> dict[str, str]:
    out = {}
    for item in str(text).strip().strip(";").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _read_gff3(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(
        path, sep="\t", comment="#", header=None, dtype=str, usecols=range(9),
        names=["seqname", "source", "type", "start", "end", "score", "strand", "phase", "attr"],
    )  # fmt: skip
    if raw.empty:
        return pd.DataFrame(columns=COLUMNS)
    attrs = [_attributes(a) for a in raw["attr"]]
    df = pd.DataFrame(
        {
            "seqname": raw["seqname"],
            "start": raw["start"].astype(np.int64) - 1,
            "end": raw["end"].astype(np.int64),
            "strand": raw["strand"].fillna("."),
            "name": [a.get("Name", a.get("ID", "")) for a in attrs],
            "type": raw["type"],
            "id": [a.get("ID", "") for a in attrs],
            "parent": [a.get("Derives_from", a.get("Parent", "")) for a in attrs],
        }
    )
    return df


def _read_bed(path: Path) -> pd.DataFrame:
    rows = []
    opener = gzip.open if path.suffix.lower() in {".gz", ".bgz"} else open
    with opener(path, "rt") as fh:
        for line in fh:
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            rows.append(line.rstrip("\n").split("\t"))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    width = max(len(r) for r in rows)
    if width < 3:
        raise InputError(f"{path}: BED needs at least 3 tab-separated columns")
    rows = [r + [""] * (width - len(r)) for r in rows]
    seqname = [r[0] for r in rows]
    start = np.array([int(r[1]) for r in rows], dtype=np.int64)
    end = np.array([int(r[2]) for r in rows], dtype=np.int64)
    names = [
        (r[3] if width > 3 and r[3] else f"{r[0]}:{r[1]}-{r[2]}") for r in rows
    ]
    strand = [(r[5] if width > 5 and r[5] in "+-." and r[5] else ".") for r in rows]
    return pd.DataFrame(
        {
            "seqname": seqname, "start": start, "end": end, "strand": strand,
            "name": names, "type": "feature", "id": names, "parent": "",
        }
    )  # fmt: skip


def read_annotations(
    path: str | os.PathLike[str],
    seqname: str | None = None,
    start: int | None = None,
    end: int | None = None,
    types: set[str] | None = None,
) -> pd.DataFrame:
    """Read a GFF3 or BED file into a tidy, 0-based half-open table.

    Parameters
    ----------
    path
        ``.gff3``/``.gff`` or ``.bed`` file, optionally gzipped. The format is
        taken from the extension (``.gff*`` is GFF3, anything else BED).
    seqname
        Keep only this sequence (chromosome).
    start, end
        Keep only features overlapping ``[start, end)`` (0-based, half-open).
    types
        Keep only these feature types (for example ``{"miRNA_primary_transcript"}``).

    Returns
    -------
    pandas.DataFrame
        Columns ``seqname, start, end, strand, name, type, id, parent``,
        sorted by ``seqname`` and ``start``.

    Raises
    ------
    InputError
        If the file does not exist or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"annotation file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in {".gz", ".bgz"}]
    is_gff = bool(suffixes) and suffixes[-1].startswith(".gff")
    try:
        df = _read_gff3(path) if is_gff else _read_bed(path)
    except (ValueError, IndexError) as err:
        raise InputError(f"{path}: cannot parse as {'GFF3' if is_gff else 'BED'}: {err}") from err
    keep = np.ones(len(df), dtype=bool)
    if seqname is not None:
        keep &= (df["seqname"] == seqname).to_numpy()
    if start is not None:
        keep &= (df["end"] > start).to_numpy()
    if end is not None:
        keep &= (df["start"] < end).to_numpy()
    if types is not None:
        keep &= df["type"].isin(types).to_numpy()
    df = df.loc[keep, COLUMNS].sort_values(["seqname", "start", "end"], kind="stable")
    return df.reset_index(drop=True)


def features_in_window(
    annotations: pd.DataFrame,
    start: int,
    end: int,
    strand: str = "+",
    types: set[str] | None = None,
    seqname: str | None = None,
) -> dict[str, tuple[int, int]]:
    """Features of one strand inside a window, in the window's own coordinates.

    Window coordinates run 5'→3' along the window's strand, so on the − strand
    position 0 is genomic position ``end - 1``. This is what
    :func:`mire2e_viz.plot.hairpin` expects for its ``matures`` argument.

    Parameters
    ----------
    annotations
        Table from :func:`read_annotations` (same coordinate system as
        ``start``/``end``).
    start, end
        The window, 0-based half-open on the + strand.
    strand
        The window's strand; features on the other strand are ignored.
    types
        Feature types to keep (default: mature miRNAs, :data:`MATURE_TYPES`).
    seqname
        Keep only features on this sequence.

    Returns
    -------
    dict
        ``{name: (first, last_plus_one)}`` clipped to the window, in window order.
    """
    types = MATURE_TYPES if types is None else types
    df = annotations
    keep = df["type"].isin(types) & (df["strand"] == strand)
    keep &= (df["end"] > start) & (df["start"] < end)
    if seqname is not None:
        keep &= df["seqname"] == seqname
    out: dict[str, tuple[int, int]] = {}
    length = end - start
    for row in df[keep].itertuples(index=False):
        if strand == "-":
            a, b = end - int(row.end), end - int(row.start)
        else:
            a, b = int(row.start) - start, int(row.end) - start
        a, b = max(0, a), min(length, b)
        if b > a:
            out[str(row.name)] = (a, b)
    return dict(sorted(out.items(), key=lambda kv: kv[1]))
