"""Reading sequences: FASTA files (optionally gzipped), strings and Biopython records.

Every problem is reported as an :class:`~mire2e_viz.errors.InputError` that
names the file, the record and the position, so the CLI and the widgets can
show it as one line.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoding import to_codes
from .errors import InputError, SequenceError

_REGION = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


@dataclass
class Record:
    """One named sequence, already validated and encoded.

    Attributes
    ----------
    name
        Record id (first word of the FASTA header).
    codes
        ``uint8`` codes (see :mod:`mire2e_viz.encoding`).
    description
        Rest of the FASTA header.
    seqname
        Name used in output coordinates (the chromosome when the id is a
        ``chrom:start-end`` region, otherwise ``name``).
    offset
        Added to 0-based positions to give output coordinates (``start - 1``
        for a ``chrom:start-end`` id, else 0).
    source
        File the record was read from, if any.
    """

    name: str
    codes: np.ndarray
    description: str = ""
    seqname: str = ""
    offset: int = 0
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.seqname:
            m = _REGION.match(self.name)
            if m:
                start, end = (int(m[k].replace(",", "")) for k in ("start", "end"))
                if end - start + 1 != len(self.codes):
                    where = f"{self.source}: " if self.source else ""
                    raise InputError(
                        f"{where}record '{self.name}' is {len(self.codes)} nt long, but its name is a region of "
                        f"{end - start + 1} nt; fix the header (or rename the record) so coordinates are not shifted"
                    )
                self.seqname = m["chrom"]
                self.offset = start - 1
            else:
                self.seqname = self.name

    def __len__(self) -> int:
        return int(self.codes.size)

    @property
    def sequence(self) -> str:
        """The sequence as an RNA string (ambiguity codes shown as N)."""
        from .encoding import codes_to_str

        return codes_to_str(self.codes)


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", errors="replace")
    return open(path, encoding="ascii", errors="replace")  # noqa: SIM115


def iter_fasta(path: str | os.PathLike) -> Iterator[Record]:
    """Stream records from a FASTA file (plain or gzipped), one at a time.

    Parameters
    ----------
    path
        FASTA file.

    Yields
    ------
    Record
        Each record, validated and encoded.

    Raises
    ------
    InputError
        Missing or unreadable file, a file that is not FASTA, an empty file,
        a file with no records, an empty record, or a bad character (the
        message names the file, the record and the 1-based position).
    """
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise InputError(f"{src}: no such file")
    if path.is_dir():
        raise InputError(f"{src}: is a directory, not a FASTA file")
    if path.stat().st_size == 0:
        raise InputError(f"{src}: the file is empty")
    try:
        fh = _open_text(path)
    except OSError as err:
        raise InputError(f"{src}: cannot read ({err.strerror or err})") from None
    n = 0
    with fh:
        name: str | None = None
        desc = ""
        chunks: list[str] = []
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):  # noqa: B007
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    if name is not None:
                        n += 1
                        yield _make(name, desc, chunks, src)
                    header = line[1:].strip()
                    if not header:
                        header = f"record_{n + 1}"
                    name, _, desc = header.partition(" ")
                    chunks = []
                elif name is None:
                    if line.startswith(";"):
                        continue
                    raise InputError(
                        f"{src}: line {lineno}: not a FASTA file (expected a '>' header line, "
                        f"found {line[:30]!r})"
                    )
                else:
                    chunks.append(line)
        except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as err:
            raise InputError(f"{src}: line {lineno}: cannot read ({err})") from None
        if name is not None:
            n += 1
            yield _make(name, desc, chunks, src)
    if n == 0:
        raise InputError(f"{src}: no FASTA records found")


def _make(name: str, desc: str, chunks: list[str], src: str | None) -> Record:
    seq = "".join(chunks)
    if not seq:
        raise InputError(f"{src}: record '{name}' has no sequence" if src else f"record '{name}' has no sequence")
    if any(c.isspace() for c in seq):
        seq = re.sub(r"\s+", "", seq)
    codes = to_codes(seq, record=name, source=src)
    return Record(name=name, codes=codes, description=desc, source=src)


def read_records(source, name: str = "sequence") -> Iterator[Record]:
    """Turn any supported source into a stream of :class:`Record`.

    Parameters
    ----------
    source
        One of: a path to a FASTA file (``str`` or ``os.PathLike``; a string
        is taken as a path when it names an existing file or ends in a FASTA
        suffix), a nucleotide string, a FASTA-formatted string (starts with
        ``>``), a Biopython ``SeqRecord`` or an iterable of them, a
        :class:`Record` or an iterable of them, or a ``{name: sequence}``
        mapping.
    name
        Record name used for a bare sequence string.
    """
    if isinstance(source, Record):
        yield source
        return
    if isinstance(source, os.PathLike):
        yield from iter_fasta(source)
        return
    if isinstance(source, bytes):
        source = source.decode("ascii", errors="replace")
    if isinstance(source, str):
        text = source.strip()
        if text.startswith(">"):
            yield from _parse_fasta_text(text)
            return
        looks_like_path = (
            os.sep in text
            or re.search(r"\.(fa|fasta|fna|fas|fa\.gz|fasta\.gz|fna\.gz|txt)$", text, re.I)
            or _existing_file(text)
        )
        if looks_like_path:
            yield from iter_fasta(text)
            return
        if not text:
            raise InputError("the sequence is empty")
        seq = re.sub(r"\s+", "", text)
        yield Record(name=name, codes=to_codes(seq, record=name))
        return
    if isinstance(source, dict):
        for k, v in source.items():
            yield from read_records(str(v), name=str(k))
        return
    if hasattr(source, "seq") and hasattr(source, "id"):  # Bio.SeqRecord
        yield _from_seqrecord(source)
        return
    if isinstance(source, Iterable):
        got = False
        for i, item in enumerate(source):
            got = True
            if isinstance(item, str) and not item.lstrip().startswith(">"):
                yield from read_records(item, name=f"{name}_{i + 1}")
            else:
                yield from read_records(item, name=name)
        if not got:
            raise InputError("no sequences given")
        return
    raise InputError(f"cannot read sequences from an object of type {type(source).__name__}")


def _existing_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):
        return False


def _from_seqrecord(rec) -> Record:
    seq = str(rec.seq)
    if not seq:
        raise InputError(f"record '{rec.id}' has no sequence")
    return Record(name=str(rec.id), codes=to_codes(seq, record=str(rec.id)), description=str(rec.description))


def _parse_fasta_text(text: str, src: str = "<text>") -> Iterator[Record]:
    name = None
    desc = ""
    chunks: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            if name is not None:
                yield _make_text(name, desc, chunks)
            name, _, desc = line[1:].strip().partition(" ")
            name = name or "record"
            chunks = []
        else:
            chunks.append(line)
    if name is not None:
        yield _make_text(name, desc, chunks)


def _make_text(name: str, desc: str, chunks: list[str]) -> Record:
    try:
        return _make(name, desc, chunks, None)
    except SequenceError as err:
        raise SequenceError(err.record, err.position, err.char) from None
