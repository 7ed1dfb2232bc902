"""How fast can any fp32 implementation of the cascade be on this CPU?

Issue 2 asks for a scan at least 4x the reference's windows/s. Both
implementations run the same three networks, so the work per window is fixed
by the architecture. This script measures, in one run:

1. the floating-point work per window of each stage, counted by
   ``torch.utils.flop_counter`` on a real forward pass;
2. the machine's fp32 GEMM peak with the same thread count: the best of
   several square 1024 and 2048 matrix products, and the product with the
   shape that dominates the structure Transformer (6400 x 222 by 222 x 888);
3. the cascade's measured windows/s on 100-nt windows (batch 64, inference
   mode), hence the share of the GEMM peak it reaches;
4. the ceiling: GEMM peak / work per window, the windows/s no fp32 code can
   beat here, set against 4x the reference's windows/s.

Usage::

    python bench/roofline.py                       # reference rate from data/metrics/scan_throughput.json
    python bench/roofline.py --reference-wps 51.3 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_peak(repeats: int = 5) -> dict[str, float]:
    """Best fp32 GFLOP/s of a few matrix products."""
    import torch

    out = {}
    for name, (m, k, n) in {"square_1024": (1024, 1024, 1024), "square_2048": (2048, 2048, 2048),
                            "structure_ff_6400x222x888": (6400, 222, 888)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        t = _best(lambda a=a, b=b: torch.mm(a, b), repeats)
        out[name] = 2 * m * k * n / t / 1e9
    return out


def stage_flops(cascade, batch: int = 64) -> dict[str, float]:
    """FLOPs per window of each stage (one forward pass)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mire2e_viz import encoding

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (batch, encoding.WINDOW)).astype(np.uint8)
    x = torch.from_numpy(encoding.EYE)[torch.from_numpy(codes).long()]
    pe = torch.from_numpy(encoding.structure_pe(np.full(batch, encoding.WINDOW)))
    # In eval mode nn.TransformerEncoderLayer takes a fused "fast path" that the
    # counter does not see, so count on train-mode copies (same arithmetic; dropout adds none).
    s, f, c = (copy.deepcopy(m).train() for m in (cascade.structure, cascade.mfe, cascade.classifier))
    res = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            p = s(x, pe)
        res["structure"] = fc.get_total_flops() / batch
        with FlopCounterMode(display=False) as fc:
            m = f(x, p)
        res["mfe"] = fc.get_total_flops() / batch
        with FlopCounterMode(display=False) as fc:
            c(x, p, m)
        res["classifier"] = fc.get_total_flops() / batch
    res["cascade"] = res["structure"] + res["mfe"] + res["classifier"]
    return res


def cascade_rate(cascade, n: int = 1024, repeats: int = 3) -> float:
    """Windows/s of ``run_codes`` on random full windows (best of ``repeats``)."""
    import numpy as np

    codes = np.random.default_rng(1).integers(0, 4, (n, 100)).astype(np.uint8)
    return n / _best(lambda: cascade.run_codes(codes), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reference-wps", type=float, default=None,
                    help="reference windows/s on the same machine (default: the 100 kb run in "
                         "data/metrics/scan_throughput.json)")
    ap.add_argument("--windows", type=int, default=1024, help="windows per timed cascade pass")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch

    from mire2e_viz.cascade import Cascade

    torch.set_num_threads(args.threads)
    ref = args.reference_wps
    if ref is None:
        rec = json.loads((HERE.parent / "data/metrics/scan_throughput.json").read_text())
        ref = float(rec["run_100k"][0]["reference"]["windows_per_s"])
    cascade = Cascade.untrained_model(seed=0, layout="fixed", device="cpu")
    flops = stage_flops(cascade)
    peak = gemm_peak()
    best_peak = max(peak.values())
    rate = cascade_rate(cascade, args.windows)
    achieved = rate * flops["cascade"] / 1e9
    ceiling = best_peak * 1e9 / flops["cascade"]
    goal = 4 * ref
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads")
    for k in ("structure", "mfe", "classifier", "cascade"):
        print(f"work per window, {k:<10}: {flops[k] / 1e6:8.1f} MFLOP")
    for k, v in peak.items():
        print(f"fp32 GEMM {k:<28}: {v:7.1f} GFLOP/s")
    print(f"cascade, fp32, batch {cascade.batch_size}: {rate:7.1f} windows/s = {achieved:6.1f} GFLOP/s "
          f"({achieved / best_peak:.0%} of the best GEMM rate)")
    print(f"ceiling (best GEMM rate / work per window): {ceiling:7.1f} windows/s")
    print(f"goal, 4 x reference ({ref:.1f} windows/s): {goal:7.1f} windows/s = {goal * flops['cascade'] / 1e9:6.1f} GFLOP/s "
          f"= {goal / ceiling:.2f} x the ceiling")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "threads": args.threads, "flops_per_window": flops, "gemm_gflops": peak,
            "cascade_windows_per_s": rate, "cascade_gflops": achieved, "ceiling_windows_per_s": ceiling,
            "reference_windows_per_s": ref, "goal_windows_per_s": goal}, indent=2))


if __name__ == "__main__":
    main()
