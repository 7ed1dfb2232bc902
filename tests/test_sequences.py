from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mire2e_viz.errors import InputError, SequenceError
from mire2e_viz.sequences import iter_fasta, read_records

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_reads_multi_record_and_gzip(tmp_path):
    text = ">a desc\nACGU\nacgt\n>b\nNNNN\n"
    (tmp_path / "x.fa").write_text(text)
    with gzip.open(tmp_path / "x.fa.gz", "wt") as fh:
        fh.write(text)
    for p in ("x.fa", "x.fa.gz"):
        recs = list(iter_fasta(tmp_path / p))
        assert [r.name for r in recs] == ["a", "b"]
        assert recs[0].sequence == "ACGUACGU" and recs[0].description == "desc"


def test_region_ids_give_genomic_coordinates():
    rec = next(read_records(">chr1:1001-1100\n" + "A" * 100))
    assert rec.seqname == "chr1" and rec.offset == 1000


def test_region_id_with_wrong_length_is_refused():
    with pytest.raises(InputError, match="is 3 nt long, but its name is a region of 100 nt"):
        next(read_records(">chr1:1001-1100\nACG"))


def test_crlf_file_is_read():
    rec = next(iter_fasta(SHARED / "viral" / "NC_045512.2_Wuhan-Hu-1.fasta"))
    assert len(rec) == 29903


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "the file is empty"),
        ("\n\n", "no FASTA records found"),
        ("hello world\nthis is not fasta\n", "line 1: not a FASTA file"),
        (">r1\n>r2\nACGU\n", "record 'r1' has no sequence"),
    ],
)
def test_bad_files_get_one_line_errors(tmp_path, content, message):
    p = tmp_path / "bad.fa"
    p.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        list(iter_fasta(p))
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_bad_character_error_names_file_record_and_position(tmp_path):
    p = tmp_path / "bad.fa"
    p.write_text(">ok\nACGU\n>chr7 x\nACGU\nACJU\n")
    with pytest.raises(SequenceError) as err:
        list(iter_fasta(p))
    assert str(err.value).startswith(f"{p}: record 'chr7', position 7: invalid character 'J'")


def test_missing_file():
    with pytest.raises(InputError, match="no such file"):
        list(read_records("/nonexistent/dir/x.fa"))


def test_strings_biopython_and_dicts():
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    assert next(read_records("acgu", name="q")).name == "q"
    assert [r.name for r in read_records([SeqRecord(Seq("ACGT"), id="s1"), SeqRecord(Seq("AC"), id="s2")])] == ["s1", "s2"]
    assert [r.name for r in read_records({"x": "ACGU", "y": "GG"})] == ["x", "y"]
    assert [r.name for r in read_records(">p\nAC\n>q\nGU")] == ["p", "q"]
    with pytest.raises(InputError, match="empty"):
        list(read_records(""))
