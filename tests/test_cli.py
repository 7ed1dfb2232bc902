"""The command line, run as a user would (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "mire2e_viz.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=600)


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    p = tmp_path_factory.mktemp("cli") / "locus.fa"
    p.write_text(">chr5:10001-10260\n" + ("ACGUUAGCUAGCUAGGCAUCGAUCGGAUCGAUGCUAGCUAGCAUCGAUCGAUCGAUGCUAGCGAUCG" * 4)[:260] + "\n")
    return p


@pytest.mark.parametrize("suffix", ["csv", "bed", "gff3"])
def test_scan_writes_each_format(tmp_path, fasta, suffix):
    out = tmp_path / f"out.{suffix}"
    cands = tmp_path / f"cands.{suffix}"
    r = run("scan", str(fasta), "-o", str(out), "-c", str(cands), "--untrained", "--step", "40", "--threshold", "0.0")
    assert r.returncode == 0, r.stderr
    assert "UNTRAINED" in r.stderr
    text = out.read_text()
    if suffix == "csv":
        df = pd.read_csv(out)
        assert {"seqname", "start", "end", "strand", "score", "mfe"} <= set(df.columns)
        assert df["start"].min() == 10000 and df["end"].max() == 10260
        assert len(df) == 2 * 5
    elif suffix == "bed":
        assert text.splitlines()[1].split("\t")[:3] == ["chr5", "10000", "10100"]
    else:
        assert text.startswith("##gff-version 3") and "\tchr5\t" not in text and text.count("chr5\t") == 10
    assert cands.exists()


@pytest.mark.parametrize(
    "content,args,message",
    [
        (None, [], "no such file"),
        ("", [], "the file is empty"),
        ("\n", [], "no FASTA records"),
        ("just some text\n", [], "not a FASTA file"),
        (">r\nACGUZ\n", [], "record 'r', position 5: invalid character 'Z'"),
        (">r\nACGU\n", ["--step", "0"], "must be greater than 0"),
        (">r\nACGU\n", ["--step", "-3"], "must be greater than 0"),
        (">r\nACGU\n", ["--threshold", "2"], "between 0 and 1"),
        (">chr1:101-200\nACGU\n", [], "is 4 nt long, but its name is a region of 100 nt"),
    ],
)
def test_bad_input_one_line_error_no_traceback(tmp_path, content, args, message):
    p = tmp_path / "in.fa"
    if content is not None:
        p.write_text(content)
    r = run("scan", str(p), "-o", str(tmp_path / "o.csv"), "--untrained", *args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, r.stderr


def test_missing_weights_file_is_one_line(tmp_path, fasta):
    r = run("scan", str(fasta), "-o", str(tmp_path / "o.csv"), "--weights-files", str(tmp_path / "nope.pkl"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such weights file" in r.stderr


def test_original_mfe_weights_through_the_cli(tmp_path, fasta):
    pkl = ROOT.parent / "shared" / "reference" / "original-weights" / "mfe-hsa.pkl"
    # a structure file is required positionally first: pass the MFE file in the MFE slot via Python API instead
    from mire2e_viz import Cascade

    c = Cascade.from_files(mfe=pkl)
    assert c.untrained == ("structure", "classifier")


def test_demo_runs(tmp_path):
    r = run("demo", "--outdir", str(tmp_path / "demo"), "--no-figure")
    assert r.returncode == 0, r.stderr
    assert "chr19" in r.stdout
    for name in ("demo_windows.csv", "demo_windows.bed", "demo_candidates.gff3"):
        assert (tmp_path / "demo" / name).exists()
    df = pd.read_csv(tmp_path / "demo" / "demo_windows.csv")
    assert df["start"].min() == 13836201 and df["end"].max() == 13836660
    if "UNTRAINED" in r.stdout:
        assert "NOT predictions" in r.stdout


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "scan" in r.stdout and "demo" in r.stdout


def test_scan_default_threshold_is_the_models_operating_point(tmp_path, fasta):
    """Without --threshold the scan says which threshold it used (0.5 for a model without a record)."""
    r = run("scan", str(fasta), "-o", str(tmp_path / "w.csv"), "--untrained", "--step", "40")
    assert r.returncode == 0, r.stderr
    assert "threshold 0.5: the default for weights without a measured operating point" in r.stderr
    assert "candidate region(s) at score >= 0.5" in r.stderr
