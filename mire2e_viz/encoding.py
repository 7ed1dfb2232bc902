"""Nucleotide encoding, reverse complements and positional features.

Everything here is vectorised numpy: a batch of windows is encoded with one
table look-up, never with a per-window Python loop.

Encoding
--------
Each nucleotide becomes a 4-vector in the order A, C, G, U:

* ``A``, ``C``, ``G``, ``U`` and ``T`` (either case, so soft-masked lowercase
  is accepted) are one-hot;
* ``N`` and the IUPAC ambiguity codes ``R Y S W K M B D H V`` (either case)
  encode as the **zero vector**: the networks see "no information" there,
  exactly as the reference miRe2e treats ``N``;
* any other character is an error that names the record and the position.

Internally a sequence is first turned into *codes*, ``uint8`` values 0..4
(0 = zero vector, 1 = A, 2 = C, 3 = G, 4 = U); one-hot is ``EYE[codes]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError, SequenceError

WINDOW = 100
"""Window length of the miRe2e networks (nt)."""

ALPHABET = "ACGU"

_CODE = np.full(256, 255, dtype=np.uint8)
for _i, _chars in enumerate(["NRYSWKMBDHV", "A", "C", "G", "UT"]):
    for _c in _chars:
        _CODE[ord(_c)] = _i
        _CODE[ord(_c.lower())] = _i
del _i, _chars, _c

#: complement in code space: A<->U, C<->G, zero stays zero
COMPLEMENT_CODE = np.array([0, 4, 3, 2, 1], dtype=np.uint8)

#: one-hot table, row 0 is the zero vector
EYE = np.vstack([np.zeros((1, 4), np.float32), np.eye(4, dtype=np.float32)])

_COMP_TABLE = str.maketrans("ACGTUNacgtunRYSWKMBDHVrymkbdhvsw", "UGCAANugcaanYRSWMKVHDByrkmvhdbsw")


def to_codes(seq: str | bytes, record: str = "sequence", source: str | None = None) -> np.ndarray:
    """Turn a nucleotide string into an array of codes 0..4.

    Parameters
    ----------
    seq
        Nucleotides (RNA or DNA alphabet, any case).
    record, source
        Names used in the error message if ``seq`` holds a bad character.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the same length as ``seq``.

    Raises
    ------
    SequenceError
        If a character is neither a nucleotide nor an IUPAC code.
    """
    if isinstance(seq, str):
        try:
            raw = seq.encode("ascii")
        except UnicodeEncodeError:
            pos = next(i for i, ch in enumerate(seq) if ord(ch) > 127)
            raise SequenceError(record, pos + 1, seq[pos], source) from None
    else:
        raw = bytes(seq)
    codes = _CODE[np.frombuffer(raw, dtype=np.uint8)]
    bad = np.flatnonzero(codes == 255)
    if bad.size:
        pos = int(bad[0])
        raise SequenceError(record, pos + 1, chr(raw[pos]), source)
    return codes


def codes_to_str(codes: np.ndarray) -> str:
    """Inverse of :func:`to_codes` (zero vectors come back as ``N``)."""
    return "".join(np.array(list("NACGU"))[np.asarray(codes)])


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """Reverse complement along the last axis, in code space."""
    return COMPLEMENT_CODE[np.asarray(codes)[..., ::-1]]


def reverse_complement(seq: str) -> str:
    """Reverse complement of an RNA/DNA string (T becomes A, A becomes U)."""
    return seq.translate(_COMP_TABLE)[::-1]


def one_hot(codes: np.ndarray) -> np.ndarray:
    """One-hot encode codes of any shape; adds a trailing axis of size 4."""
    return EYE[np.asarray(codes)]


def pad_codes(
    sequences: Sequence[str], length: int = WINDOW, names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Encode sequences of at most ``length`` nt into a zero-padded code matrix.

    Parameters
    ----------
    sequences
        Strings of at most ``length`` nucleotides each.
    length
        Window length.
    names
        Record names for error messages (default ``"sequence i"``, 1-based).

    Returns
    -------
    codes : numpy.ndarray
        ``uint8`` array, shape ``(N, length)``; padding is code 0.
    lengths : numpy.ndarray
        ``int64`` array, shape ``(N,)``, the real length of each sequence.
    """
    if isinstance(sequences, str):
        sequences = [sequences]
    n = len(sequences)
    names = list(names) if names is not None else [f"sequence {i + 1}" for i in range(n)]
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
    for i in np.flatnonzero((lengths == 0) | (lengths > length)):
        if lengths[i] == 0:
            raise InputError(f"record '{names[i]}' is empty")
        raise InputError(
            f"record '{names[i]}' is {lengths[i]} nt long; the cascade scores windows of at "
            f"most {length} nt. Use mire2e_viz.scan() for longer sequences."
        )
    # one joined look-up for the whole batch, then scatter into the padded matrix
    joined = "".join(sequences)
    try:
        flat = to_codes(joined)
    except SequenceError as err:
        starts = np.concatenate([[0], np.cumsum(lengths)])
        rec = int(np.searchsorted(starts, err.position - 1, side="right") - 1)
        raise SequenceError(names[rec], err.position - int(starts[rec]), err.char) from None
    codes = np.zeros((n, length), dtype=np.uint8)
    mask = np.arange(length)[None, :] < lengths[:, None]
    codes[mask] = flat
    return codes, lengths


def structure_pe(lengths: np.ndarray, length: int = WINDOW) -> np.ndarray:
    """Positional features of the structure predictor (111 per position).

    These are the hand-crafted features of miRe2e's structure stage, for
    positions ``p = 1..length`` of a sequence of real length ``L``, with
    ``a = p`` (absolute) and ``r = p / L`` (relative):
    ``a, r, 1/a, 1/a², sin(n·a), sin(n·r) for n = 1..49, r², r³, r⁴`` and the
    Hermite-like Gaussian bases ``exp(-x²)·sqrt(2^i/i!)·x^i`` for
    ``x in (a, r)``, ``i = 0, 1, 2``. Rows at and beyond ``L`` are zero, so a
    short sequence zero-padded to ``length`` carries its true length.

    Parameters
    ----------
    lengths
        Real sequence lengths, shape ``(N,)``.
    length
        Window length.

    Returns
    -------
    numpy.ndarray
        ``float32`` array, shape ``(N, length, 111)``.
    """
    lengths = np.asarray(lengths, dtype=np.float64).reshape(-1)
    a = np.broadcast_to(np.arange(1, length + 1, dtype=np.float64)[None, :], (lengths.size, length))
    r = a / lengths[:, None]
    pos = np.stack([a, r], axis=-1)  # (N, L, 2)
    feats = [pos, (1.0 / a)[..., None], (1.0 / a**2)[..., None]]
    n = np.arange(1, 50, dtype=np.float64)
    sines = np.sin(pos[..., None, :] * n[None, None, :, None])  # (N, L, 49, 2)
    feats.append(sines.reshape(lengths.size, length, 98))
    feats.append(np.stack([r**2, r**3, r**4], axis=-1))
    for i in range(3):
        coef = np.sqrt(2.0**i / float(np.prod(np.arange(1, i + 1)) if i else 1.0))
        feats.append(np.exp(-(pos**2)) * coef * pos**i)
    pe = np.concatenate(feats, axis=-1)
    pe[a > lengths[:, None]] = 0.0
    return pe.astype(np.float32)


def classifier_pe(n_positions: int = 6, d_model: int = 64) -> np.ndarray:
    """Sinusoidal table of the classifier's positional encoder.

    ``pe[p, i] = sin(p / 10000^(2i/d))`` and ``pe[p, i+1] = cos(p / 10000^(2(i+1)/d))``
    for even ``i``: the variant miRe2e uses (note the exponent uses ``i``, not
    ``i/2``). Returned with a leading batch axis, shape ``(1, n_positions, d_model)``.
    """
    p = np.arange(n_positions, dtype=np.float64)[:, None]
    i = np.arange(0, d_model, 2, dtype=np.float64)[None, :]
    pe = np.zeros((n_positions, d_model))
    pe[:, 0::2] = np.sin(p / 10000 ** (2 * i / d_model))
    pe[:, 1::2] = np.cos(p / 10000 ** (2 * (i + 1) / d_model))
    return pe[None].astype(np.float32)
