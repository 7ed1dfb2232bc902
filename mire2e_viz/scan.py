"""Scanning loci in 100-nt windows on both strands, candidate calling and export.

``from mire2e_viz import scan`` gives this module, and the module is
callable: ``scan(source, ...)`` runs :func:`scan`, while ``scan.call_candidates``,
``scan.export`` and friends stay reachable as attributes.

Coordinates
-----------
Every table uses **0-based half-open** coordinates on the **+ strand**, as in
BED: a window ``start=120, end=220, strand='-'`` is the reverse complement of
``seq[120:220]``. When a FASTA id is a region such as ``chr1:65068434-65079508``
(samtools style, 1-based inclusive), ``seqname`` is the chromosome and
coordinates are genomic. GFF3 export converts to 1-based inclusive.

Window placement
----------------
Windows start every ``step`` nt from 0. If the last regular window does not
reach the end, one more window is added that ends exactly at the sequence
end, so the 3' tail is always covered (the reference leaves up to
``step - 1`` nt unscanned). A sequence shorter than 100 nt is one zero-padded
window.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from . import encoding
from .errors import InputError
from .sequences import Record, read_records

WINDOW_COLUMNS = ["seqname", "start", "end", "strand", "score", "mfe"]
CANDIDATE_COLUMNS = ["seqname", "start", "end", "strand", "score", "best_start", "best_end", "best_mfe", "n_windows",
                     "opposite_score", "strand_margin", "name"]


def window_starts(length: int, step: int, window: int = encoding.WINDOW) -> np.ndarray:
    """0-based starts of the windows that cover a sequence of ``length`` nt, tail included."""
    if step <= 0:
        raise InputError(f"step must be a positive number of nucleotides, not {step}")
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, step, dtype=np.int64)
    if starts[-1] != length - window:
        starts = np.append(starts, length - window)
    return starts


def _check_strands(strands: str) -> tuple[str, ...]:
    table = {"both": ("+", "-"), "+": ("+",), "-": ("-",), "plus": ("+",), "minus": ("-",)}
    if strands not in table:
        raise InputError(f"strands must be 'both', '+' or '-', not {strands!r}")
    return table[strands]


def window_codes(record: Record, starts: np.ndarray, strand: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, 100) and real lengths of the windows at ``starts`` on ``strand``."""
    n = len(record)
    if n < encoding.WINDOW:
        codes = np.zeros((len(starts), encoding.WINDOW), np.uint8)
        codes[:, :n] = record.codes if strand == "+" else encoding.reverse_complement_codes(record.codes)
        return codes, np.full(len(starts), n, np.int64)
    view = np.lib.stride_tricks.sliding_window_view(record.codes, encoding.WINDOW)
    codes = view[starts]
    if strand == "-":
        codes = encoding.reverse_complement_codes(codes)
    return np.ascontiguousarray(codes), np.full(len(starts), encoding.WINDOW, np.int64)


def _chunks(records: Iterator[Record], step: int, strands: tuple[str, ...], chunk: int):
    for rec in records:
        starts = window_starts(len(rec), step)
        for s in range(0, len(starts), chunk):
            st = starts[s : s + chunk]
            for strand in strands:
                yield rec, st, strand


def _is_file(source) -> bool:
    if isinstance(source, os.PathLike):
        return True
    if isinstance(source, str) and len(source) < 4096 and not source.lstrip().startswith(">"):
        try:
            return Path(source).is_file() or os.sep in source
        except (OSError, ValueError):
            return False
    return False


def _default_cascade():
    from .cascade import Cascade

    try:
        return Cascade.pretrained()
    except Exception as err:  # noqa: BLE001
        raise InputError(
            "no cascade given and the shipped pretrained weights could not be loaded "
            f"({err}); pass cascade=Cascade.untrained_model() to run without weights"
        ) from None


def scan(
    source,
    cascade=None,
    step: int = 20,
    strands: str = "both",
    chunk_windows: int = 4096,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Scan sequences in 100-nt windows on one or both strands.

    Parameters
    ----------
    source
        A FASTA path (multi-record, optionally gzipped), a nucleotide
        string, a FASTA-formatted string, Biopython records, or
        :class:`~mire2e_viz.sequences.Record` objects.
    cascade
        A :class:`~mire2e_viz.Cascade`; default ``Cascade.pretrained()``.
    step
        Distance between window starts (nt), > 0.
    strands
        ``"both"``, ``"+"`` or ``"-"``.
    chunk_windows
        Windows encoded and scored at a time: memory stays bounded whatever
        the sequence length.
    progress
        Show a ``tqdm.auto`` progress bar (default: when there are more than
        5,000 windows).

    Returns
    -------
    pandas.DataFrame
        One row per window and strand, sorted by seqname, strand, start:
        ``seqname, start, end, strand, score, mfe`` (mfe in kcal/mol), plus
        ``record`` (the FASTA id) and ``length`` (real window length). ``df.attrs``
        records the step, the model name and whether it is trained. Fetch a
        window's profile back with :func:`window_result`.
    """
    if not isinstance(step, (int, np.integer)) or step <= 0:
        raise InputError(f"step must be a positive whole number of nucleotides, not {step!r}")
    strand_list = _check_strands(strands)
    if cascade is None:
        cascade = _default_cascade()
    if _is_file(source):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        records_iter = read_records(path)  # streamed record by record
        total_nt = path.stat().st_size
    else:
        records = list(read_records(source))
        records_iter = iter(records)
        total_nt = sum(len(r) for r in records)
    est_windows = None if total_nt is None else max(1, total_nt // step) * len(strand_list)
    show = progress if progress is not None else (est_windows or 0) > 5000
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=est_windows, desc="scanning", unit="win", unit_scale=True)
    if cascade.untrained:
        warnings.warn(
            f"scanning with '{cascade.name}', which has untrained stages: scores are not predictions",
            UserWarning, stacklevel=2,
        )
    parts: list[pd.DataFrame] = []
    try:
        for rec, starts, strand in _chunks(records_iter, step, strand_list, chunk_windows):
            codes, lengths = window_codes(rec, starts, strand)
            out = cascade.run_codes(codes, lengths)
            n = len(starts)
            parts.append(
                pd.DataFrame(
                    {
                        "seqname": pd.Categorical([rec.seqname] * n),
                        "start": starts + rec.offset,
                        "end": starts + rec.offset + np.minimum(len(rec), encoding.WINDOW),
                        "strand": strand,
                        "score": out["score"],
                        "mfe": out["mfe"],
                        "record": rec.name,
                        "length": lengths,
                    }
                )
            )
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=WINDOW_COLUMNS)
    for col in ("seqname", "record"):
        df[col] = df[col].astype(str)
    df["strand"] = df["strand"].astype(str)
    df = df.sort_values(["seqname", "strand", "start"], kind="stable").reset_index(drop=True)
    df.attrs.update(
        {"step": int(step), "window": encoding.WINDOW, "model": cascade.name,
         "trained": cascade.is_trained, "coordinates": "0-based half-open, + strand"}
    )
    return df


def window_sequence(record: Record, start: int, strand: str) -> str:
    """The window's sequence (5'→3' on its strand) given output coordinates."""
    s = int(start) - record.offset
    if s < 0 or s >= max(1, len(record) - encoding.WINDOW + 1) and len(record) > encoding.WINDOW:
        raise InputError(f"record '{record.name}': no window starts at {start}")
    codes = record.codes[s : s + encoding.WINDOW]
    if strand == "-":
        codes = encoding.reverse_complement_codes(codes)
    return encoding.codes_to_str(codes)


def window_result(source, row, cascade=None):
    """Recompute every stage's output (profile included) for one scanned window.

    With the default batch-independent classifier this reproduces exactly
    the score that :func:`scan` reported.

    Parameters
    ----------
    source
        The source that was scanned, or a dict ``{record_name: Record}``.
    row
        A row of the scan table (needs ``record`` or ``seqname``, ``start``, ``strand``).
    cascade
        The cascade used for the scan.

    Returns
    -------
    mire2e_viz.cascade.Window
    """
    cascade = cascade or _default_cascade()
    recs = source if isinstance(source, dict) else {r.name: r for r in read_records(source)}
    key = row.get("record", row["seqname"])
    rec = recs.get(key) or next((r for r in recs.values() if r.seqname == row["seqname"]), None)
    if rec is None:
        raise InputError(f"no record named '{key}' in the source")
    seq = window_sequence(rec, int(row["start"]), row["strand"])
    return cascade.window(seq, name=rec.seqname, start=int(row["start"]), strand=row["strand"])


def call_candidates(windows: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Merge overlapping windows scoring ≥ ``threshold`` into candidate regions.

    Windows are merged per seqname and strand when they overlap (or touch).
    Each region keeps its best window and maximum score.

    The reverse complement of a pre-miRNA folds into a hairpin too, so a
    region usually has a shadow on the other strand. ``opposite_score`` is
    the best score of the other strand's windows that overlap the region's
    best window (NaN when none does, as in a scan of one strand), and
    ``strand_margin = score - opposite_score`` says how clearly the cascade
    prefers this strand. With the shipped ``hsa`` weights, on the 486
    DeepMirCut pre-miRNAs with real flanks, the best window lay on the
    annotated strand for 93 % of the loci whose margin was at least 0.15
    (37 % of loci) and for 76 % of all loci (``bench/evaluate.py``, section
    classifier, ``deepmircut.strand_margin``; the model card lists more
    margins). Treat a small margin as "strand unresolved".

    Returns
    -------
    pandas.DataFrame
        ``seqname, start, end, strand, score, best_start, best_end, best_mfe,
        n_windows, opposite_score, strand_margin, name``, sorted by score
        (best first).
    """
    hits = windows[windows["score"] >= threshold]
    by_strand = {key: (g["start"].to_numpy(), g["end"].to_numpy(), g["score"].to_numpy())
                 for key, g in windows.sort_values("start", kind="stable").groupby(["seqname", "strand"], sort=False)}
    longest = int((windows["end"] - windows["start"]).max()) if len(windows) else 0
    rows = []
    for (seqname, strand), g in hits.groupby(["seqname", "strand"], sort=True):
        g = g.sort_values("start")
        st, en, sc, mf = (g[c].to_numpy() for c in ("start", "end", "score", "mfe"))
        # a new region starts where a window begins after the running end
        run_end = np.maximum.accumulate(en)
        new = np.ones(len(st), bool)
        new[1:] = st[1:] > run_end[:-1]
        ids = np.cumsum(new) - 1
        other = by_strand.get((seqname, "-" if strand == "+" else "+"))
        for k in range(ids[-1] + 1):
            idx = np.flatnonzero(ids == k)
            best = idx[np.argmax(sc[idx])]
            opposite = np.nan
            if other is not None:  # other-strand windows overlapping the best window
                o_st, o_en, o_sc = other
                lo, hi = np.searchsorted(o_st, [st[best] - longest + 1, en[best]])
                sel = o_en[lo:hi] > st[best]
                if sel.any():
                    opposite = float(o_sc[lo:hi][sel].max())
            rows.append((seqname, int(st[idx].min()), int(en[idx].max()), strand, float(sc[best]),
                         int(st[best]), int(en[best]), float(mf[best]), len(idx), opposite,
                         float(sc[best]) - opposite))
    out = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS[:-1])
    out = out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    out["name"] = [f"cand{i + 1}" for i in range(len(out))]
    out.attrs.update(windows.attrs)
    out.attrs["threshold"] = float(threshold)
    return out


def _bed_score(s: pd.Series) -> pd.Series:
    return (s.clip(0, 1) * 1000).round().astype(int)


def to_bed(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write windows or candidates as BED6 (0-based half-open); score scaled to 0–1000."""
    name = df["name"] if "name" in df else [f"w{i}" for i in range(len(df))]
    out = pd.DataFrame({"chrom": df["seqname"], "start": df["start"], "end": df["end"],
                        "name": name, "score": _bed_score(df["score"]), "strand": df["strand"]})
    path = Path(path)
    with open(path, "w") as fh:
        fh.write(f'track name=mire2e-viz description="miRe2e pre-miRNA {_what(df)}" useScore=1\n')
        out.to_csv(fh, sep="\t", header=False, index=False)
    return path


def _what(df: pd.DataFrame) -> str:
    return "candidates" if "n_windows" in df else "windows"


def to_gff3(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write windows or candidates as GFF3 (1-based inclusive), type ``pre_miRNA`` (SO:0001244)."""
    path = Path(path)
    ftype = "pre_miRNA" if "n_windows" in df else "region"
    with open(path, "w") as fh:
        fh.write("##gff-version 3\n")
        for i, r in enumerate(df.itertuples(index=False)):
            name = getattr(r, "name", f"w{i}")
            attrs = [f"ID={name}", f"Name={name}", f"mfe={r.mfe if hasattr(r, 'mfe') else r.best_mfe:.2f}"]
            if ftype == "pre_miRNA":
                attrs += [f"best_window={r.best_start + 1}-{r.best_end}", f"n_windows={r.n_windows}"]
                if getattr(r, "strand_margin", None) is not None and np.isfinite(r.strand_margin):
                    attrs.append(f"strand_margin={r.strand_margin:.3f}")
            fh.write("\t".join([str(r.seqname), "mire2e-viz", ftype, str(int(r.start) + 1), str(int(r.end)),
                                f"{r.score:.4f}", r.strand, ".", ";".join(attrs)]) + "\n")
    return path


def export(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a window or candidate table; the format follows the suffix (.csv, .tsv, .bed, .gff3/.gff)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".bed":
        to_bed(df, path)
    elif suffix in (".gff3", ".gff"):
        to_gff3(df, path)
    else:
        raise InputError(f"{path}: unknown output format '{suffix}' (use .csv, .tsv, .bed or .gff3)")
    return path


class _CallableModule(types.ModuleType):
    """Lets ``mire2e_viz.scan`` be both this module and the :func:`scan` function."""

    def __call__(self, *args, **kwargs) -> pd.DataFrame:
        return scan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(scan)
