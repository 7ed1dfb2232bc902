"""Latency of the interactive widgets, per update, on this machine's CPU.

Goals (from the widgets issue): choosing a window of an already scanned locus takes
under 300 ms when the window has been folded before, and under 1.5 s for a new one.

What is measured, on the chr19 miR-23a/27a/24-2 locus (459 nt, step 10, both strands):

* ``scan``: the initial scan of the locus (done once per locus, with a progress bar);
* ``new window``: the slider moves to a window never shown and never folded
  (RNAfold cache cleared): cascade on one window + RNAfold + decoding + drawing;
* ``folded window``: the window was folded before but its panel was not drawn
  (panel cache cleared): cascade + drawing;
* ``revisited window``: a window already shown (panel cached): the track is redrawn;
* ``strand toggle`` and ``threshold`` changes;
* ``playground``: one mutation (window update) and the saliency strip (3 × 73 variants
  in one batch).

Each update is timed from the trait change to the end of the callback (the kernel's
work; the browser adds one round trip). Run::

    python bench/widget_latency.py [--repeats 15] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("MPLBACKEND", "Agg")

GOALS = {"new window": 1.5, "folded window": 0.3, "revisited window": 0.3}
MIR23A = "GGCCGGCUGGGGUUCCUGGGGAUGGGAUUUGCUUCCUGUCACAAAUCACAUUGCCAGGGAUUUCCAACCGACC"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": 1000 * statistics.median(xs),
            "p90_ms": 1000 * xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))], "max_ms": 1000 * xs[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="windows per measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads inside the widgets")
    ap.add_argument("--trained", action="store_true", help="require the shipped weights")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import torch

    from mire2e_viz import datasets, fold
    from mire2e_viz.widgets import LocusExplorer, SequencePlayground, load_cascade

    warnings.simplefilter("ignore", UserWarning)
    cascade, note = load_cascade()
    if note and args.trained:
        raise SystemExit(f"no trained weights: {note}")
    t0 = time.perf_counter()
    ex = LocusExplorer(datasets.demo_record(), cascade=cascade, annotations=datasets.demo_annotation(), step=10,
                       threads=args.threads, panel_cache=10_000)
    t_scan = time.perf_counter() - t0
    if "m2v-error" in ex.message.value:
        raise SystemExit(ex.message.value)

    lo, hi = ex.position.min, ex.position.max
    starts = [lo + 7 + (k * 23) % (hi - lo - 7) for k in range(args.repeats)]  # off the scan grid: new windows
    results: dict[str, list[float]] = {}

    def timed(kind: str, action) -> None:
        n = len(ex.timings)
        t = time.perf_counter()
        action()
        dt = time.perf_counter() - t
        assert len(ex.timings) > n, "the update did not run"
        assert "m2v-error" not in ex.message.value, ex.message.value
        results.setdefault(kind, []).append(dt)

    ex.strand.value = "+"
    for s in starts:  # never folded, never drawn
        fold.clear_cache()
        timed("new window", lambda s=s: setattr(ex.position, "value", s))
    ex._panels.clear()
    for s in starts:  # folded before, panel not drawn
        timed("folded window", lambda s=s: setattr(ex.position, "value", s))
    for s in starts:  # shown before
        timed("revisited window", lambda s=s: setattr(ex.position, "value", s))
    for _ in range(min(args.repeats, 6)):
        timed("strand toggle (cached)", lambda: setattr(ex.strand, "value", "-" if ex.strand.value == "+" else "+"))
    for k in range(min(args.repeats, 6)):
        timed("threshold change", lambda k=k: setattr(ex.threshold, "value", 0.3 + 0.05 * k))

    pg = SequencePlayground(MIR23A, cascade=cascade, threads=args.threads)
    pg.timings.clear()
    for i in range(min(args.repeats, 4)):
        pg.mutate(10 + 7 * i, "A" if MIR23A[9 + 7 * i] != "A" else "C")
    play = {k: summary([t for kind, t in pg.timings if kind == k]) for k in ("window", "saliency")}

    out = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads_in_widget": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "model": cascade.name + ("" if note is None else " (UNTRAINED)"),
        "scan_s": t_scan,
        "explorer": {k: summary(v) for k, v in results.items()},
        "playground": play,
    }
    print(f"machine: {out['machine']['cpu']}, {out['machine']['cores']} cores, torch {out['machine']['torch']} "
          f"({args.threads} thread(s) in the widget), load average {out['machine']['load_average']}")
    print(f"model: {out['model']}")
    print(f"initial scan + first window of the 459-nt locus: {t_scan:.2f} s")
    print(f"{'update':28} {'n':>3} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}  goal")
    for k, v in out["explorer"].items():
        goal = GOALS.get(k)
        ok = "" if goal is None else (f"< {goal * 1000:.0f} ms " + ("OK" if v["p90_ms"] < goal * 1000 else "MISSED (p90)"))
        print(f"{k:28} {v['n']:>3} {v['median_ms']:>10.0f} {v['p90_ms']:>8.0f} {v['max_ms']:>8.0f}  {ok}")
    for k, v in play.items():
        print(f"{'playground ' + k:28} {v['n']:>3} {v['median_ms']:>10.0f} {v['p90_ms']:>8.0f} {v['max_ms']:>8.0f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
