"""Latency of the interactive widgets, per update, on this machine's CPU.

Goals (from the widgets issue): choosing a window of an already scanned locus takes
under 300 ms when the window has been folded before, and under 1.5 s for a new one.

What is measured, on the chr19 miR-23a/27a/24-2 locus (459 nt, step 10, both strands):

* ``scan``: the initial scan of the locus (done once per locus, with a progress bar);
* ``new window``: the slider moves to a window never shown and never folded
  (RNAfold and layout caches cleared): cascade on one window + RNAfold + decoding + drawing;
* ``folded window``: the window was folded before but its panel was not drawn
  (panel cache cleared): cascade + drawing;
* ``revisited window``: a window already shown (panel cached): only the track marker moves;
* ``strand toggle``: both strands of the window already computed;
* ``threshold change``: a threshold not used before (candidate table, track and the
  panel's threshold line are redrawn; nothing is recomputed);
* ``playground``: one mutation (window update) and the saliency strip (3 × 73 variants
  in one batch).

Every explorer case is at least 10 updates (``--repeats``); the table gives the median
and the 90th percentile, and the goal of the case where the issue sets one (a case
passes when its p90 is under the goal). The machine's load average is printed before
and after: the timings are only comparable within one run.

``--compare OLD.py`` also times another version of ``mire2e_viz/widgets.py`` (e.g.
``git show HEAD:mire2e_viz/widgets.py > /tmp/old_widgets.py``) in the same process,
alternating old and new ``--rounds`` times, and prints both columns side by side.

Each update is timed from the trait change to the end of the callback (the kernel's
work; the browser adds one round trip). Run::

    python bench/widget_latency.py [--repeats 12] [--threads 1] [--compare OLD.py] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

os.environ.setdefault("MPLBACKEND", "Agg")

GOALS = {"new window": 1.5, "folded window": 0.3, "revisited window": 0.3, "strand toggle": 0.3,
         "threshold change": 0.3}
MIR23A = "GGCCGGCUGGGGUUCCUGGGGAUGGGAUUUGCUUCCUGUCACAAAUCACAUUGCCAGGGAUUUCCAACCGACC"


def load_average() -> tuple[float, float, float] | None:
    return tuple(round(x, 2) for x in os.getloadavg()) if hasattr(os, "getloadavg") else None


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": 1000 * statistics.median(xs),
            "p90_ms": 1000 * xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))], "max_ms": 1000 * xs[-1]}


def load_widgets(path: str | None):
    """The widgets module: the package's, or another version of widgets.py loaded inside the package."""
    import importlib
    import importlib.util

    if path is None:
        return importlib.import_module("mire2e_viz.widgets")
    spec = importlib.util.spec_from_file_location("mire2e_viz._widgets_compared", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def measure_explorer(mod, cascade, repeats: int, threads: int) -> tuple[float, dict[str, list[float]]]:
    """Time every explorer case with the widgets module ``mod``: (scan seconds, {case: [seconds]})."""
    from mire2e_viz import datasets, fold

    t0 = time.perf_counter()
    ex = mod.LocusExplorer(datasets.demo_record(), cascade=cascade, annotations=datasets.demo_annotation(),
                           step=10, threads=threads, panel_cache=10_000)
    t_scan = time.perf_counter() - t0
    if "m2v-error" in ex.message.value:
        raise SystemExit(ex.message.value)

    lo, hi = ex.position.min, ex.position.max
    starts = [lo + 7 + (k * 23) % (hi - lo - 7) for k in range(repeats)]  # off the scan grid: new windows
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
        getattr(mod, "_LAYOUTS", {}).clear()
        timed("new window", lambda s=s: setattr(ex.position, "value", s))
    ex._panels.clear()
    for s in starts:  # folded before, panel not drawn
        timed("folded window", lambda s=s: setattr(ex.position, "value", s))
    for s in starts:  # shown before
        timed("revisited window", lambda s=s: setattr(ex.position, "value", s))
    ex.strand.value = "-"  # both strands of this window computed before the toggles are timed
    ex.strand.value = "+"
    for _ in range(repeats):
        timed("strand toggle", lambda: setattr(ex.strand, "value", "-" if ex.strand.value == "+" else "+"))
    for k in range(repeats):  # a new threshold every time
        timed("threshold change", lambda k=k: setattr(ex.threshold, "value", round(0.2 + 0.55 * k / repeats, 2)))
    return t_scan, results


def measure_playground(mod, cascade, repeats: int, threads: int) -> dict[str, list[float]]:
    pg = mod.SequencePlayground(MIR23A, cascade=cascade, threads=threads)
    pg.timings.clear()
    for i in range(min(repeats, 4)):
        pg.mutate(10 + 7 * i, "A" if MIR23A[9 + 7 * i] != "A" else "C")
    return {k: [t for kind, t in pg.timings if kind == k] for k in ("window", "saliency")}


def _cell(v: dict | None) -> str:
    return f"{'':>17}" if v is None else f"{v['median_ms']:>8.0f} {v['p90_ms']:>8.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=12, help="updates per case (at least 10)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads inside the widgets")
    ap.add_argument("--trained", action="store_true", help="require the shipped weights")
    ap.add_argument("--compare", metavar="OLD.py", help="also time this version of widgets.py, in the same run")
    ap.add_argument("--rounds", type=int, default=1, help="with --compare: alternate old and new this many times")
    ap.add_argument("--no-playground", action="store_true", help="skip the playground (saliency takes seconds)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    args.repeats = max(args.repeats, 10)

    import torch

    from mire2e_viz import train

    warnings.simplefilter("ignore", UserWarning)
    new = load_widgets(None)
    cascade, note = new.load_cascade()
    if note and args.trained:
        raise SystemExit(f"no trained weights: {note}")
    versions = {"new": new}
    if args.compare:
        versions = {"old": load_widgets(args.compare), "new": new}
    load_before = load_average()
    runs: dict[str, dict[str, list[float]]] = {k: {} for k in versions}
    scans: dict[str, list[float]] = {k: [] for k in versions}
    for _ in range(max(args.rounds, 1) if args.compare else 1):
        for name, mod in versions.items():
            t_scan, res = measure_explorer(mod, cascade, args.repeats, args.threads)
            scans[name].append(t_scan)
            for k, v in res.items():
                runs[name].setdefault(k, []).extend(v)
            if not args.no_playground:
                for k, v in measure_playground(mod, cascade, args.repeats, args.threads).items():
                    runs[name].setdefault("playground " + k, []).extend(v)
    load_after = load_average()

    out = {
        "machine": {"cpu": train.cpu_name(), "cores": os.cpu_count(), "torch_threads_in_widget": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": load_after},
        "model": cascade.name + ("" if note is None else " (UNTRAINED)"),
        "scan_s": {k: statistics.median(v) for k, v in scans.items()},
        "results": {name: {k: summary(v) for k, v in res.items()} for name, res in runs.items()},
    }
    print(f"machine: {out['machine']['cpu']}, {out['machine']['cores']} cores, torch {out['machine']['torch']} "
          f"({args.threads} thread(s) in the widget)")
    print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after")
    print(f"model: {out['model']}")
    print("initial scan + first window of the 459-nt locus: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in out["scan_s"].items()))
    names = list(versions)
    print(f"{'update':24} {'n':>3}" + "".join(f" {name + ' med':>8} {name + ' p90':>8}" for name in names)
          + "  goal (p90)")
    new_res = out["results"]["new"]
    for k, v in new_res.items():
        goal = GOALS.get(k)
        ok = "" if goal is None else (f"< {goal * 1000:.0f} ms " + ("OK" if v["p90_ms"] < goal * 1000 else "MISSED"))
        cells = "".join(" " + _cell(out["results"][name].get(k)) for name in names)
        print(f"{k:24} {v['n']:>3}{cells}  {ok}")
    print("(times in ms; 'med' = median, 'p90' = 90th percentile of the updates)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
