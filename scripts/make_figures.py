#!/usr/bin/env python
"""Regenerate the README's example figures in ``docs/figures/``.

Figures
-------
``score_track_chr19_mir23a_cluster.png``
    Pre-miRNA score along chr19:13,836,202-13,836,660 (the miR-23a/27a/24-2
    cluster, minus strand), both strands, with the miRBase 22 annotation.
``stage_panel_hsa-mir-23a.png``
    Every stage of the cascade for the 100-nt window holding hsa-mir-23a.
``mfe_scatter.png``
    Stage-2 MFE estimates against RNAfold for sequences held out of training:
    human miRBase hairpins of the validation families and validation CODING
    pseudo-hairpins (the split of :mod:`mire2e_viz.trainingdata`).

The cascade is ``Cascade.pretrained()``; while no trained weights ship, the
script falls back to an untrained (random) cascade and says so in every title.

Usage::

    python scripts/make_figures.py [--data ../shared/data] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mire2e_viz import fold as F  # noqa: E402
from mire2e_viz import plot as P  # noqa: E402
from mire2e_viz.annotations import features_in_window, read_annotations  # noqa: E402
from mire2e_viz.encoding import reverse_complement  # noqa: E402
from mire2e_viz.sequences import iter_fasta  # noqa: E402

# The example FASTA is named 13836201-13836660 but holds 459 nt starting at
# 1-based 13836202: only that start puts the three hairpins exactly at their
# miRBase coordinates (checked in tests/test_plot.py).
LOCUS = ("chr19", 13836202, 13836660)  # 1-based inclusive


def read_fasta(path: Path) -> dict[str, str]:
    """Sequences of a FASTA file by record name, via the library's reader."""
    return {r.name: r.sequence for r in iter_fasta(path)}


def load_cascade():
    """The trained cascade, or an untrained one (and a flag) while weights are missing."""
    from mire2e_viz import Cascade

    try:
        return Cascade.pretrained(device="cpu"), True
    except Exception as err:  # weights not shipped yet
        print(f"no trained weights ({type(err).__name__}: {err}); using an UNTRAINED cascade")
        return Cascade.from_files(device="cpu", layout="fixed"), False


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--dpi", type=int, default=150)
    args = ap.parse_args(argv)
    data, out = args.data, args.out
    out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", message=".*untrained.*")

    from mire2e_viz import call_candidates, scan

    cascade, trained = load_cascade()
    flag = "" if trained else "\nUNTRAINED MODEL: outputs are not predictions"

    chrom, first, last = LOCUS
    offset = first - 1
    fasta = data / "genomic" / "mire2e_example_chr19_13836201_13836660_true.fa"
    seq = "".join(read_fasta(fasta).values())
    assert len(seq) == last - first + 1, len(seq)
    gff = data / "mirbase" / "hsa_v22_GRCh38.gff3"
    ann = read_annotations(gff, chrom, offset, last)

    # 1. score track over the locus (region FASTA id: genomic coordinates)
    # at the weights' measured operating point, as the command line and widgets call candidates
    thr = cascade.recommended_threshold
    windows = scan(f">{chrom}:{first}-{last}\n{seq}\n", cascade, step=5)
    cands = call_candidates(windows, threshold=thr)
    fig = P.score_track(
        windows, cands, ann, threshold=thr,
        title=f"pre-miRNA score, {chrom}:{first:,}\u2013{last:,} (miR-23a/27a/24-2 cluster){flag}",
    )  # fmt: skip
    P.save_figure(fig, out / "score_track_chr19_mir23a_cluster.png", dpi=args.dpi)

    # 2. stage panel for the window holding hsa-mir-23a (minus strand)
    hp = ann[(ann["name"] == "hsa-mir-23a")].iloc[0]
    end = min(int(hp["end"]) + 13, last)
    start = end - 100
    wseq = reverse_complement(seq[start - offset:end - offset])
    window = cascade.window(wseq, name=chrom, start=start, strand="-")
    matures = features_in_window(ann, start, end, "-")
    fig = P.stage_panel(
        window, matures=matures, threshold=thr,
        title=f"miRe2e stage by stage: hsa-mir-23a window{flag}",
    )  # fmt: skip
    P.save_figure(fig, out / "stage_panel_hsa-mir-23a.png", dpi=args.dpi)

    # 3. MFE scatter on held-out sequences only: the human hairpins of the validation families
    #    and the validation CODING pseudo-hairpins of the training split (mire2e_viz.trainingdata)
    from mire2e_viz import trainingdata as td

    rng = np.random.default_rng(0)
    ws = td.build_windows(0)  # the seeded split of hairpins and negatives, without folding
    val = ws.split == "val"
    val_names = set(ws.name[val & (ws.kind == "hairpin") & (ws.species == "hsa")])
    hp = read_fasta(data / "mirbase" / "hairpin_v22_hsa.fa")
    pos = [s for n, s in hp.items() if n.split()[0] in val_names and len(s) <= 100]
    neg = sorted({s for s, k, v in zip(ws.seqs, ws.kind, val, strict=True) if k == "coding" and v and len(s) <= 100})
    n = min(len(pos), len(neg), 300)
    seqs = list(rng.choice(pos, n, replace=False)) + list(rng.choice(neg, n, replace=False))
    pred = cascade.run(seqs).mfe
    ref = np.array([r.mfe for r in F.fold(seqs)])
    ax = P.mfe_scatter(
        pred, ref,
        title=f"Stage 2 MFE vs RNAfold, held out of training\n{n} human hairpins (validation families),\n"
              f"{n} CODING pseudo-hairpins{flag}",
    )  # fmt: skip
    ax.title.set_fontsize(7)
    ax.figure.set_size_inches(4.6, 4.6)
    P.save_figure(ax, out / "mfe_scatter.png", dpi=args.dpi)
    for f in sorted(out.glob("*.png")):
        print(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f)


if __name__ == "__main__":
    main()
