from __future__ import annotations

import json
from pathlib import Path

import pytest

from mire2e_viz import datasets
from mire2e_viz.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_local_data_dir_is_found():
    assert datasets.local_data_dir() == SHARED.resolve()


def test_demo_locus_comes_from_the_local_directory():
    assert datasets.demo_locus() == SHARED.resolve() / datasets.DEMO_LOCUS
    rec = datasets.demo_record()
    assert len(rec) == 459 and rec.seqname == "chr19" and rec.offset == 13836201


def test_env_var_overrides(tmp_path, monkeypatch):
    (tmp_path / "genomic").mkdir()
    (tmp_path / datasets.DEMO_LOCUS).write_text(">chr19\nACGU\n")
    monkeypatch.setenv("MIRE2E_DATA_DIR", str(tmp_path))
    assert datasets.demo_locus() == tmp_path / datasets.DEMO_LOCUS


def test_no_local_copy_and_no_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRE2E_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("MIRE2E_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="downloading is disabled"):
        datasets.fetch(datasets.DEMO_LOCUS, download=False)
    with pytest.raises(InputError, match="no public download address"):
        datasets.fetch("nowhere/x.fa")


def test_cached_download_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRE2E_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("MIRE2E_CACHE_DIR", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "mirbase" / "hsa_v22_GRCh38.gff3"
    cached.parent.mkdir(parents=True)
    cached.write_text("##gff-version 3\n")
    assert datasets.fetch("mirbase/hsa_v22_GRCh38.gff3") == cached


def test_ucsc_answer_becomes_fasta(tmp_path):
    raw = tmp_path / "x.fa.json"
    raw.write_text(json.dumps({"dna": "acgt" * 40, "chrom": "chr19"}))
    out = datasets._ucsc_to_fasta("chr19:1-160")(str(raw), "download", None)
    lines = Path(out).read_text().splitlines()
    assert lines[0] == ">chr19:1-160" and lines[1] == "ACGT" * 15 and len(lines) == 4


def test_describe_mentions_every_file():
    text = datasets.describe()
    for rel in datasets.REGISTRY:
        assert rel in text
