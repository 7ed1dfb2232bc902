"""Command line: ``mire2e-viz scan``, ``mire2e-viz demo``, ``mire2e-viz data`` (and ``train`` when available).

Errors in the input are printed as one line on stderr, with a non-zero exit
status and no traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import Mire2eVizError

EXIT_INPUT = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


THRESHOLD_HELP = ("candidate score threshold (default: the weights' measured operating point, where 90 %% of "
                  "held-out hairpins in genomic context score at least this, as recorded in MODEL_CARD.md; 0.5 for "
                  "weights without a record)")


def _threshold(value: float | None, cascade) -> float:
    """The threshold given on the command line, or the cascade's recommended one (said on stderr)."""
    if value is not None:
        return value
    thr = cascade.recommended_threshold
    print(f"threshold {thr:g}: " + ("the weights' 90 %-recall operating point (see MODEL_CARD.md; set --threshold "
                                    "to change it)" if getattr(cascade, "weights", None) and cascade.is_trained
                                    else "the default for weights without a measured operating point"),
          file=sys.stderr)
    return thr


def _load_cascade(args) -> object:
    from .cascade import Cascade

    if args.untrained:
        return Cascade.untrained_model(device=args.device)
    if args.weights_files:
        files = dict(zip(("structure", "mfe", "classifier"), args.weights_files, strict=False))
        return Cascade.from_files(**files, layout=args.layout, device=args.device)
    return Cascade.pretrained(args.weights, device=args.device)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--weights", default="hsa", help="shipped weights set (default: hsa)")
    g.add_argument("--weights-files", nargs="+", metavar="PKL",
                   help="state-dict files for structure [mfe [classifier]] (e.g. original miRe2e .pkl)")
    g.add_argument("--layout", choices=["fixed", "reference"], default="reference",
                   help="classifier layout for --weights-files (default: reference)")
    g.add_argument("--untrained", action="store_true", help="use a random, untrained model (for testing)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")


def cmd_scan(args) -> int:
    from .scan import call_candidates, export, scan

    cascade = _load_cascade(args)
    print(f"model: {cascade.describe()}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        df = scan(args.fasta, cascade=cascade, step=args.step, strands=args.strands,
                  progress=None if not args.quiet else False)
    out = export(df, args.output)
    args.threshold = _threshold(args.threshold, cascade)
    cands = call_candidates(df, args.threshold)
    if args.candidates:
        export(cands, args.candidates)
    print(f"{len(df):,} windows scanned ({df['seqname'].nunique()} sequence(s)); "
          f"{len(cands)} candidate region(s) at score >= {args.threshold}", file=sys.stderr)
    print(f"wrote {out}" + (f" and {args.candidates}" if args.candidates else ""), file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    import pandas as pd

    from . import datasets
    from .cascade import Cascade
    from .scan import call_candidates, export, scan

    rec = datasets.demo_record()
    print(f"Demo locus: {rec.name} (GRCh38, {len(rec)} nt), the miR-23a / miR-27a / miR-24-2 cluster,")
    print(f"read from {datasets.demo_locus()}")
    try:
        cascade = Cascade.pretrained(device=args.device)
        trained = True
    except Exception as err:  # noqa: BLE001 - any failure to load weights falls back loudly
        print(f"\n*** No trained weights available ({err}).")
        print("*** Running an explicitly UNTRAINED model: the scores below are random, NOT predictions.\n")
        cascade = Cascade.untrained_model(device=args.device)
        trained = False
    print(f"Model: {cascade.describe()}")
    if trained:
        print(_quality_line(cascade))
    print()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        df = scan(rec, cascade=cascade, step=args.step)
    args.threshold = _threshold(args.threshold, cascade)
    cands = call_candidates(df, args.threshold)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for suffix in ("csv", "bed", "gff3"):
        export(df, outdir / f"demo_windows.{suffix}")
        export(cands, outdir / f"demo_candidates.{suffix}")
    label = "score" if trained else "score (UNTRAINED)"
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        top = df.sort_values("score", ascending=False).head(8)[["seqname", "start", "end", "strand", "score", "mfe"]]
        print(f"Top windows by {label} (0-based half-open, GRCh38):")
        print(top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"\nCandidate regions at score >= {args.threshold}: {len(cands)}")
        if len(cands):
            print(cands.head(10)[["name", "seqname", "start", "end", "strand", "score", "strand_margin", "n_windows"]]
                  .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    try:
        from .annotations import read_annotations

        ann = read_annotations(datasets.demo_annotation(), seqname="chr19", start=rec.offset, end=rec.offset + len(rec))
        hp = ann[ann["type"] == "miRNA_primary_transcript"]
        if len(hp):
            print("\nmiRBase hairpins in the locus:")
            print(hp[["name", "start", "end", "strand"]].to_string(index=False))
    except Exception:  # noqa: BLE001 - annotation is a bonus in the demo
        pass
    if args.figure:
        try:
            fig_path = _demo_figure(df, cands, rec, trained, outdir, args.threshold)
            print(f"\nFigure: {fig_path}")
        except ImportError:
            pass
    print(f"\nTables written to {outdir}/ (CSV, BED and GFF3; open the BED/GFF3 in IGV on GRCh38).")
    if not trained:
        print("Reminder: these scores come from an UNTRAINED model.")
    return 0


def _quality_line(cascade) -> str:
    """One line on how good the loaded weights are, from their record."""
    try:
        meta = next(iter(cascade.weights.values())).meta
        cv = meta["metrics"]["mirboost_cv"]
        return (f"Measured quality: miRBoost 5-fold CV AUPR {cv['aupr_mean']:.2f} (goal {cv.get('goal_aupr', 0.93)}); "
                "see MODEL_CARD.md for every metric and the known limits.")
    except (AttributeError, KeyError, StopIteration, TypeError):
        return "Measured quality: see MODEL_CARD.md."


def _demo_figure(df, cands, rec, trained, outdir: Path, threshold: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from . import datasets, plot

    ax = plot.score_track(df, candidates=cands, threshold=threshold, annotations=datasets.demo_annotation())
    fig = ax.figure if hasattr(ax, "figure") else ax
    if not trained:
        fig.suptitle("UNTRAINED MODEL: scores are random", color="firebrick")
    path = outdir / "demo_track.png"
    plot.save_figure(fig, path)
    return path


def cmd_data(args) -> int:
    from . import datasets

    print(datasets.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mire2e-viz",
        description="Find pre-miRNAs in raw genome sequence with the miRe2e cascade, and look inside it.",
    )
    parser.add_argument("--version", action="version", version=f"mire2e-viz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scan", help="scan a FASTA file in 100-nt windows on both strands")
    p.add_argument("fasta", help="FASTA file (multi-record, optionally gzipped)")
    p.add_argument("-o", "--output", required=True, help="window table: .csv, .tsv, .bed or .gff3")
    p.add_argument("-c", "--candidates", help="also write merged candidate regions (.csv, .bed or .gff3)")
    p.add_argument("--step", type=_positive_int, default=20, help="window step in nt (default 20)")
    p.add_argument("--threshold", type=_probability, default=None, help=THRESHOLD_HELP)
    p.add_argument("--strands", choices=["both", "+", "-"], default="both")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_args(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("demo", help="scan the bundled demo locus (chr19 miR-23a/27a/24-2) and write tables")
    p.add_argument("--outdir", default="demo-output", help="output folder (default demo-output/)")
    p.add_argument("--step", type=_positive_int, default=10)
    p.add_argument("--threshold", type=_probability, default=None, help=THRESHOLD_HELP)
    p.add_argument("--device", default=None)
    p.add_argument("--no-figure", dest="figure", action="store_false", help="skip the score-track PNG")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="show where each public data file is read from")
    p.set_defaults(func=cmd_data)

    try:
        from . import train
    except ImportError:
        train = None
    if train is not None and hasattr(train, "register_cli"):
        train.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except Mire2eVizError as err:
        print(f"mire2e-viz: error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:
        print(f"mire2e-viz: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("mire2e-viz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
