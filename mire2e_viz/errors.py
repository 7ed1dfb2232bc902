"""Exception types with messages meant for people, not tracebacks."""

from __future__ import annotations


class Mire2eVizError(Exception):
    """Base class of every error mire2e-viz raises on purpose.

    The CLI and the widgets catch this class and show ``str(err)`` as a single
    line, so each message names the file, the record and the position.
    """


class InputError(Mire2eVizError, ValueError):
    """Bad user input: a missing or malformed file, an empty sequence, a bad parameter."""


class SequenceError(InputError):
    """A sequence holds a character that is not a nucleotide or an IUPAC code.

    Parameters
    ----------
    record
        Name of the record (FASTA id, or ``"sequence 3"`` for a list item).
    position
        1-based position of the offending character in the record.
    char
        The offending character.
    source
        The file the record came from, if any.
    """

    def __init__(self, record: str, position: int, char: str, source: str | None = None):
        self.record = record
        self.position = position
        self.char = char
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}record '{record}', position {position}: invalid character {char!r} "
            "(expected A, C, G, U/T, N or an IUPAC ambiguity code)"
        )


class WeightsError(Mire2eVizError):
    """A weights file that cannot be loaded: wrong keys, wrong shapes or a bad checksum."""
