"""RNAfold comparison: fold windows with ViennaRNA and score the cascade against it.

The cascade's first stage predicts a *pairing profile*, one value per
nucleotide in ``[-1, 1]`` with the encoding ``'(' = 1``, ``'.' = 0`` and
``')' = -1``. This module produces the same encoding from ViennaRNA's
minimum-free-energy structure, decodes a predicted profile back into a valid
dot-bracket, and tabulates how the two agree.

Folding
-------
:func:`fold` folds with ViennaRNA's default energy model (Turner 2004, 37 °C),
exactly like ``RNAfold`` with no options. ``T`` is folded as ``U`` and the
sequence is upper-cased first. Results are cached per sequence in a
process-wide LRU cache, so re-plotting never re-folds; large batches fan out
over worker processes.

Decoding a profile
------------------
:func:`dotbracket_from_profile` finds the nested structure whose profile is
closest to the predicted one in L1 distance:

.. math::

    \\hat s = \\arg\\min_{s} \\sum_i |p_i - t_i(s)|,
    \\quad t_i(s) \\in \\{1, 0, -1\\} \\text{ for } (, ., )

over all balanced dot-brackets ``s`` in which every pair ``(i, j)`` encloses at
least ``min_loop`` unpaired positions (``j - i > min_loop``) and, when a
sequence is given, is a canonical pair (AU, GC or GU). Writing the cost as
"all positions unpaired" plus a gain ``w(i, j) = (|p_i| - |p_i - 1|) +
(|p_j| - |p_j + 1|)`` for each pair turns this into Nussinov's maximum-weight
nesting problem, solved exactly by the dynamic programme

.. math::

    N(i, j) = \\max\\Big(N(i, j - 1),\\;
        \\max_{i \\le k < j - \\text{min\\_loop}} N(i, k - 1) + w(k, j) + N(k + 1, j - 1)\\Big)

in :math:`O(n^3)` time; the inner maximum is vectorised over a whole diagonal
of the table at a time. Ties go to the structure with fewer pairs. Because
the dot-bracket string is fixed by which positions open and close, a profile
made from a valid dot-bracket has that dot-bracket as its unique optimum
(distance 0), so it decodes back exactly.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = [
    "FoldResult",
    "fold",
    "fold_one",
    "clear_cache",
    "cache_info",
    "profile_from_dotbracket",
    "dotbracket_from_profile",
    "base_pairs",
    "bp_scores",
    "profile_classes",
    "compare",
]

#: bracket characters accepted by :func:`base_pairs` (RNAfold writes only ``()``)
_OPEN = "([{<"
_CLOSE = ")]}>"
_MATCH = dict(zip(_CLOSE, _OPEN, strict=True))

#: batches with more uncached sequences than this fan out over processes
PARALLEL_THRESHOLD = 64
#: batches with more uncached sequences than this show a progress bar
PROGRESS_THRESHOLD = 2000
#: number of sequences the fold cache keeps
CACHE_SIZE = 65536

_CANONICAL = {("A", "U"), ("U", "A"), ("G", "C"), ("C", "G"), ("G", "U"), ("U", "G")}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class FoldResult:
    """ViennaRNA's fold of one sequence.

    Attributes
    ----------
    sequence
        The folded sequence: upper case, RNA alphabet (``T`` became ``U``).
    structure
        Minimum-free-energy structure in dot-bracket notation.
    mfe
        Minimum free energy in kcal/mol (``<= 0``).
    bpp
        Base-pair probability matrix, shape ``(n, n)``, symmetric, or ``None``
        when folding was asked for without it.
    """

    sequence: str
    structure: str
    mfe: float
    bpp: np.ndarray | None = field(default=None, repr=False)

    @property
    def profile(self) -> np.ndarray:
        """The MFE structure in the cascade's encoding, ``'(' = 1, '.' = 0, ')' = -1``."""
        return profile_from_dotbracket(self.structure)

    @property
    def pairs(self) -> set[tuple[int, int]]:
        """Base pairs ``(i, j)`` of the MFE structure, 0-based with ``i < j``."""
        return base_pairs(self.structure)

    @property
    def expected_profile(self) -> np.ndarray:
        """Ensemble average of the profile: ``P(i pairs downstream) - P(i pairs upstream)``.

        Needs ``bpp``; the result lies in ``[-1, 1]`` like the predicted profile.
        """
        if self.bpp is None:
            raise InputError("expected_profile needs base-pair probabilities: fold(..., bpp=True)")
        upper = np.triu(self.bpp, 1)
        return upper.sum(axis=1) - upper.sum(axis=0)

    def __len__(self) -> int:
        return len(self.sequence)


# --------------------------------------------------------------------------- folding

_cache: OrderedDict[str, FoldResult] = OrderedDict()
_cache_lock = Lock()
_stats = {"hits": 0, "misses": 0}


def _normalise(seq: str) -> str:
    if not isinstance(seq, str):
        raise InputError(f"expected a sequence string, got {type(seq).__name__}")
    if not seq:
        raise InputError("cannot fold an empty sequence")
    return seq.upper().replace("T", "U")


def _fold_worker(args: tuple[str, bool]) -> tuple[str, float, np.ndarray | None]:
    """Fold one sequence (top level so that worker processes can pickle it)."""
    import RNA

    seq, with_bpp = args
    fc = RNA.fold_compound(seq)
    structure, mfe = fc.mfe()
    bpp = None
    if with_bpp:
        fc.exp_params_rescale(mfe)
        fc.pf()
        raw = np.asarray(fc.bpp(), dtype=np.float64)[1:, 1:]  # 1-based, upper triangle
        bpp = (raw + raw.T).astype(np.float32)
    return structure, round(float(mfe), 2), bpp


def _cache_get(seq: str, with_bpp: bool) -> FoldResult | None:
    with _cache_lock:
        hit = _cache.get(seq)
        if hit is not None and (hit.bpp is not None or not with_bpp):
            _cache.move_to_end(seq)
            _stats["hits"] += 1
            return hit
        _stats["misses"] += 1
        return None


def _cache_put(result: FoldResult) -> None:
    with _cache_lock:
        _cache[result.sequence] = result
        _cache.move_to_end(result.sequence)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached fold."""
    with _cache_lock:
        _cache.clear()
        _stats.update(hits=0, misses=0)


def cache_info() -> dict[str, int]:
    """Cache statistics: ``hits``, ``misses``, ``size`` and ``maxsize``."""
    with _cache_lock:
        return {**_stats, "size": len(_cache), "maxsize": CACHE_SIZE}


def _default_processes() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def fold(
    seqs: str | Iterable[str],
    *,
    bpp: bool = False,
    processes: int | None = None,
    progress: bool | None = None,
) -> list[FoldResult]:
    """Fold sequences with ViennaRNA (``RNA.fold_compound``, default parameters).

    Parameters
    ----------
    seqs
        Sequences, DNA or RNA alphabet, any case. A single string is folded as
        one sequence (use :func:`fold_one` to get the result itself).
    bpp
        Also compute the base-pair probability matrix (partition function;
        several times slower than the MFE alone).
    processes
        Worker processes for batches of more than ``PARALLEL_THRESHOLD``
        uncached sequences. ``None`` uses the available cores (at most 8),
        ``1`` folds in this process.
    progress
        Show a ``tqdm`` progress bar. ``None`` shows one for batches of more
        than ``PROGRESS_THRESHOLD`` uncached sequences.

    Returns
    -------
    list of FoldResult
        One result per input sequence, in input order. Results come from the
        cache when the same sequence was folded before.

    Examples
    --------
    >>> r = fold_one("UGGGAUGAGGUAGUAGGUUGUAUAGUUUUAGGGUCACACCCACCACUGGGAGAUAACUAUACAAUCUACUGUCUUUCCUA")
    >>> r.mfe
    -34.2
    """
    if isinstance(seqs, str):
        seqs = [seqs]
    norm = [_normalise(s) for s in seqs]
    found: dict[str, FoldResult] = {}
    todo: list[str] = []
    for s in dict.fromkeys(norm):  # unique, in order
        hit = _cache_get(s, bpp)
        if hit is None:
            todo.append(s)
        else:
            found[s] = hit
    if todo:
        n_proc = _default_processes() if processes is None else max(1, int(processes))
        args = [(s, bpp) for s in todo]
        show = len(todo) > PROGRESS_THRESHOLD if progress is None else progress
        if n_proc > 1 and len(todo) > PARALLEL_THRESHOLD:
            chunk = max(1, len(todo) // (n_proc * 8))
            with ProcessPoolExecutor(max_workers=n_proc) as pool:
                it = pool.map(_fold_worker, args, chunksize=chunk)
                outs = list(_progress(it, len(todo), show))
        else:
            outs = list(_progress(map(_fold_worker, args), len(todo), show))
        for s, (structure, mfe, mat) in zip(todo, outs, strict=True):
            res = FoldResult(s, structure, mfe, mat)
            _cache_put(res)
            found[s] = res
    return [found[s] for s in norm]


def _progress(it: Iterable[Any], total: int, show: bool) -> Iterable[Any]:
    if not show:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc="RNAfold", unit="seq")


def fold_one(seq: str, *, bpp: bool = False) -> FoldResult:
    """Fold one sequence; see :func:`fold`."""
    return fold([seq], bpp=bpp, processes=1)[0]


# --------------------------------------------------------------------------- encodings


def base_pairs(db: str) -> set[tuple[int, int]]:
    """Base pairs of a dot-bracket string.

    Parameters
    ----------
    db
        Dot-bracket; ``()``, ``[]``, ``{}`` and ``<>`` are each matched
        separately (so simple pseudoknots are accepted); every other character
        is unpaired.

    Returns
    -------
    set of tuple of int
        Pairs ``(i, j)``, 0-based, ``i < j``.

    Raises
    ------
    InputError
        If the brackets are unbalanced.
    """
    stacks: dict[str, list[int]] = {c: [] for c in _OPEN}
    pairs: set[tuple[int, int]] = set()
    for j, ch in enumerate(db):
        if ch in stacks:
            stacks[ch].append(j)
        elif ch in _MATCH:
            st = stacks[_MATCH[ch]]
            if not st:
                raise InputError(f"unbalanced dot-bracket: unmatched {ch!r} at position {j + 1}")
            pairs.add((st.pop(), j))
    for ch, st in stacks.items():
        if st:
            raise InputError(f"unbalanced dot-bracket: unmatched {ch!r} at position {st[-1] + 1}")
    return pairs


def profile_from_dotbracket(db: str) -> np.ndarray:
    """Encode a dot-bracket as a pairing profile: ``'(' = 1, '.' = 0, ')' = -1``.

    Parameters
    ----------
    db
        Dot-bracket string; any opening bracket counts as ``'('`` and any
        closing bracket as ``')'``.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of length ``len(db)``.
    """
    raw = np.frombuffer(db.encode("ascii"), dtype=np.uint8)
    table = np.zeros(256, dtype=np.float32)
    table[[ord(c) for c in _OPEN]] = 1.0
    table[[ord(c) for c in _CLOSE]] = -1.0
    return table[raw]


def profile_classes(profile: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Round a continuous profile to the three classes ``1, 0, -1``.

    A value becomes ``1`` above ``threshold``, ``-1`` below ``-threshold`` and
    ``0`` in between (nearest class for the default 0.5).
    """
    p = np.asarray(profile, dtype=np.float64)
    out = np.zeros(p.shape, dtype=np.int8)
    out[p > threshold] = 1
    out[p < -threshold] = -1
    return out


def dotbracket_from_profile(
    profile: np.ndarray | Sequence[float],
    min_loop: int = 3,
    sequence: str | None = None,
) -> str:
    """Decode a pairing profile into the closest balanced dot-bracket.

    Solves ``argmin_s sum_i |p_i - t_i(s)|`` over nested structures by dynamic
    programming (see the module docstring for the recursion). The result is
    always balanced, never pairs ``i`` with ``j`` when ``j - i <= min_loop``,
    and, when ``sequence`` is given, pairs only AU, GC and GU. A profile built
    by :func:`profile_from_dotbracket` from a structure that satisfies those
    constraints decodes back to that exact structure.

    Parameters
    ----------
    profile
        Predicted pairing values, nominally in ``[-1, 1]`` (values outside are
        allowed). NaN counts as unpaired.
    min_loop
        Minimum number of unpaired nucleotides enclosed by a pair (3 for
        RNAfold's hairpins).
    sequence
        Optional sequence of the same length; restricts pairs to canonical ones.

    Returns
    -------
    str
        Dot-bracket of length ``len(profile)`` using ``(``, ``)`` and ``.``.

    Notes
    -----
    ``O(n^3)`` time and ``O(n^2)`` memory; about 10 ms for 100 nt.
    """
    p = np.nan_to_num(np.asarray(profile, dtype=np.float64).reshape(-1), nan=0.0)
    n = p.size
    if min_loop < 0:
        raise InputError(f"min_loop must be >= 0, got {min_loop}")
    # gain over 'unpaired' of opening at i / closing at j
    g_open = np.abs(p) - np.abs(p - 1.0)
    g_close = np.abs(p) - np.abs(p + 1.0)
    w = g_open[:, None] + g_close[None, :]
    allowed = np.triu(np.ones((n, n), dtype=bool), min_loop + 1)
    if sequence is not None:
        if len(sequence) != n:
            raise InputError(f"sequence has {len(sequence)} nt but the profile has {n} values")
        s = sequence.upper().replace("T", "U")
        codes = np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8).astype(np.intp)
        canon = np.zeros((256, 256), dtype=bool)
        for a, b in _CANONICAL:
            canon[ord(a), ord(b)] = True
        allowed &= canon[codes[:, None], codes[None, :]]
    w = np.where(allowed & (w > 0), w, -np.inf)  # a pair that does not help is never taken

    # N[i + 1, j + 1] holds the best gain on the closed interval [i, j]; row/col 0
    # and cells with i > j are empty intervals (gain 0).
    big = np.zeros((n + 2, n + 2))
    best_k = np.full((n + 1, n + 1), -1, dtype=np.int64)
    for d in range(min_loop + 1, n):
        i = np.arange(0, n - d)
        j = i + d
        m = d - min_loop  # candidate partners k = i .. j - min_loop - 1
        t = np.arange(m)
        k = i[:, None] + t[None, :]  # (cells, m)
        left = big[i[:, None] + 1, k]  # N(i, k - 1)
        inner = big[k + 2, j[:, None]]  # N(k + 1, j - 1)
        cand = left + w[k, j[:, None]] + inner
        arg = np.argmax(cand, axis=1)
        top = cand[np.arange(i.size), arg]
        skip = big[i + 1, j]  # N(i, j - 1)
        take = top > skip + 1e-12
        big[i + 1, j + 1] = np.where(take, top, skip)
        best_k[i, j] = np.where(take, k[np.arange(i.size), arg], -1)
    # ``big`` cells with span <= min_loop stay 0: nothing can pair there.

    out = ["."] * n
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        while j - i > min_loop:
            k = int(best_k[i, j])
            if k < 0:
                j -= 1
                continue
            out[k] = "("
            out[j] = ")"
            stack.append((k + 1, j - 1))
            j = k - 1
    return "".join(out)


def bp_scores(pred_db: str, true_db: str) -> tuple[float, float, float]:
    """Base-pair precision, recall and F1 of a predicted structure.

    Parameters
    ----------
    pred_db, true_db
        Dot-brackets of the same length.

    Returns
    -------
    precision, recall, f1 : float
        Exact pair matches only. When both structures have no pairs all three
        are 1; when only one of them is empty the undefined ratio is 0
        (scikit-learn's ``zero_division=0``).
    """
    if len(pred_db) != len(true_db):
        raise InputError(f"structures differ in length: {len(pred_db)} vs {len(true_db)}")
    pred, true = base_pairs(pred_db), base_pairs(true_db)
    if not pred and not true:
        return 1.0, 1.0, 1.0
    tp = len(pred & true)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# --------------------------------------------------------------------------- comparison


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default)


def compare(
    windows: Sequence[Any] | Sequence[str],
    profiles: Sequence[np.ndarray] | np.ndarray | None = None,
    mfes: Sequence[float] | np.ndarray | None = None,
    *,
    names: Sequence[str] | None = None,
    min_loop: int = 3,
    canonical: bool = True,
    processes: int | None = None,
) -> pd.DataFrame:
    """Compare the cascade's predictions with RNAfold, one row per window.

    Parameters
    ----------
    windows
        Either window results (objects with ``sequence``, ``profile`` and
        ``mfe``, and optionally ``score`` and ``name``), or plain sequences, in
        which case ``profiles`` and ``mfes`` must be given.
    profiles
        Predicted pairing profiles, one per window; they override the
        windows' own. A profile longer than its sequence (a zero-padded
        window) is cut to the sequence length.
    mfes
        Predicted MFEs in kcal/mol; they override the windows' own.
    names
        Window names (default: the windows' ``name``, else ``"window i"``).
    min_loop, canonical
        Passed to :func:`dotbracket_from_profile` (``canonical`` restricts
        the decoded pairs to AU, GC and GU of the window's sequence).
    processes
        Passed to :func:`fold`.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``name, length, sequence, structure_pred``
        (decoded), ``structure_rnafold, profile_accuracy`` (3-class accuracy
        of the predicted profile, rounded by :func:`profile_classes`, against
        RNAfold's), ``decoded_accuracy`` (the same for the decoded
        structure), ``bp_precision, bp_recall, bp_f1, n_pairs_pred,
        n_pairs_rnafold, mfe_pred, mfe_rnafold, mfe_error`` (``pred -
        rnafold``) and ``score`` (NaN when the windows carry none).
    """
    windows = list(windows)
    n = len(windows)
    if n and all(isinstance(w, str) for w in windows):
        if profiles is None or mfes is None:
            raise InputError("compare() with plain sequences needs profiles= and mfes=")
        seqs = list(windows)
        objs: list[Any] = [None] * n
    else:
        objs = windows
        seqs = [str(_get(w, "sequence")) for w in windows]
    prof_list = list(profiles) if profiles is not None else [_get(w, "profile") for w in objs]
    mfe_list = list(np.asarray(mfes, dtype=float)) if mfes is not None else [
        _get(w, "mfe") for w in objs
    ]
    if len(prof_list) != n or len(mfe_list) != n:
        raise InputError(
            f"compare() got {n} windows, {len(prof_list)} profiles and {len(mfe_list)} MFEs"
        )
    if names is None:
        names = [_get(w, "name") or f"window {i + 1}" for i, w in enumerate(objs)]
    folds = fold(seqs, processes=processes)
    rows = []
    for i in range(n):
        seq = folds[i].sequence
        prof = _fit_profile(prof_list[i], len(seq), names[i])
        ref = folds[i]
        pred_db = dotbracket_from_profile(prof, min_loop, seq if canonical else None)
        prec, rec, f1 = bp_scores(pred_db, ref.structure)
        ref_cls = ref.profile.astype(np.int8)
        mfe_pred = float(mfe_list[i]) if mfe_list[i] is not None else np.nan
        rows.append(
            {
                "name": names[i],
                "length": len(seq),
                "sequence": seq,
                "structure_pred": pred_db,
                "structure_rnafold": ref.structure,
                "profile_accuracy": float(np.mean(profile_classes(prof) == ref_cls)),
                "decoded_accuracy": float(
                    np.mean(profile_from_dotbracket(pred_db).astype(np.int8) == ref_cls)
                ),
                "bp_precision": prec,
                "bp_recall": rec,
                "bp_f1": f1,
                "n_pairs_pred": pred_db.count("("),
                "n_pairs_rnafold": ref.structure.count("("),
                "mfe_pred": mfe_pred,
                "mfe_rnafold": ref.mfe,
                "mfe_error": mfe_pred - ref.mfe,
                "score": float(_get(objs[i], "score", np.nan) if objs[i] is not None else np.nan),
            }
        )
    columns = [
        "name", "length", "sequence", "structure_pred", "structure_rnafold",
        "profile_accuracy", "decoded_accuracy", "bp_precision", "bp_recall", "bp_f1",
        "n_pairs_pred", "n_pairs_rnafold", "mfe_pred", "mfe_rnafold", "mfe_error", "score",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _fit_profile(profile: Any, length: int, name: str) -> np.ndarray:
    if profile is None:
        raise InputError(f"window '{name}' has no predicted profile")
    p = np.asarray(profile, dtype=np.float64).reshape(-1)
    if p.size < length:
        raise InputError(f"window '{name}': profile has {p.size} values for {length} nt")
    return p[:length]
