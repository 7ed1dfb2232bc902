"""Scan throughput and peak memory: mire2e-viz against the reference miRe2e 0.17.

Both scan the same seeded random sequence (100 kb, and 1 Mb for ours) with the
same random weights, step 20, both strands, and the same torch thread count.
bf16 autocast (the optional fast path) has no hardware support on CPUs
without bf16 units and runs several times slower there, so on CPU it is
measured on a 5 kb sample only, for the fp32 agreement check.
Each run happens in its own subprocess so that peak RSS (``ru_maxrss``) is
that run's alone. The fast path (bf16 autocast, larger batches) is compared
with fp32 on every score and profile value.

Usage::

    python bench/scan_throughput.py                  # 100 kb + 1 Mb (reference at 100 kb)
    python bench/scan_throughput.py --sizes 20000    # quick look
    python bench/scan_throughput.py --json out.json

Prints windows/s and peak RSS for each run, and the ratios the goals ask for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_fasta(path: Path, n: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    seq = "".join(np.array(list("ACGT"))[rng.integers(0, 4, n)])
    with open(path, "w") as fh:
        fh.write(f">bench_{n}\n")
        for i in range(0, n, 60):
            fh.write(seq[i : i + 60] + "\n")


def child(kind: str, fasta: str, threads: int, step: int, out: str, batch: int, precision: str) -> None:
    """Run one scan in this process and write timing, RSS and outputs."""
    import resource
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if kind == "reference":
        from miRe2e import MiRe2e

        model = MiRe2e(pretrained="no", device="cpu")
        # same random weights as ours (seed 0 through our constructors)
        from mire2e_viz.cascade import Cascade

        ours = Cascade.untrained_model(seed=0, layout="reference")
        model._structure.load_state_dict(ours.structure.state_dict())
        model._mfe.load_state_dict(ours.mfe.state_dict())
        model._predictor.load_state_dict(ours.classifier.state_dict())
        t0 = time.perf_counter()
        s53, s35, _ = model.predict(fasta, step=step, batch_size=4096, verbose=False)
        scores = np.concatenate([np.asarray(s53), np.asarray(s35)])
        n_windows = len(scores)
        np.save(out + ".npy", scores)
    else:
        from mire2e_viz.cascade import Cascade
        from mire2e_viz.scan import scan

        cascade = Cascade.untrained_model(seed=0, layout="fixed", device="cpu", batch_size=batch or None, precision=precision)
        t0 = time.perf_counter()
        df = scan(fasta, cascade=cascade, step=step, progress=False)
        n_windows = len(df)
        np.save(out + ".npy", df["score"].to_numpy())
        # profiles of a fixed sample of windows for the fp32/bf16 agreement check
        from mire2e_viz.scan import window_codes
        from mire2e_viz.sequences import iter_fasta

        rec = next(iter_fasta(fasta))
        starts = np.arange(0, min(len(rec) - 100, 200 * step), step)
        codes, lengths = window_codes(rec, starts, "+")
        prof = cascade.run_codes(codes, lengths)["profile"]
        np.save(out + ".profile.npy", prof)
    dt = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({"kind": kind, "windows": int(n_windows), "seconds": dt,
                                     "windows_per_s": n_windows / dt, "peak_rss_mb": rss_mb}))


def run_child(kind: str, fasta: Path, threads: int, step: int, batch: int = 0, precision: str = "fp32") -> dict:
    out = tempfile.mktemp(prefix=f"bench_{kind}_")
    cmd = [sys.executable, __file__, "--child", kind, "--fasta", str(fasta), "--threads", str(threads),
           "--step", str(step), "--out", out, "--batch", str(batch), "--precision", precision]
    subprocess.run(cmd, check=True)
    res = json.loads(Path(out).read_text())
    import numpy as np

    res["scores"] = np.load(out + ".npy")
    if Path(out + ".profile.npy").exists():
        res["profile"] = np.load(out + ".profile.npy")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--reference-max", type=int, default=100_000, help="largest size to run the reference on")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--step", type=int, default=20)
    ap.add_argument("--large-step", type=int, default=None,
                    help="step for sizes above --reference-max (default: --step); a larger step keeps a 1 Mb run short "
                         "on a 2-core machine while still streaming the whole sequence")
    ap.add_argument("--batch", type=int, default=0, help="windows per forward pass (default: the Cascade's own)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--paired-rounds", type=int, default=5, help="alternating ours/reference rounds (0: skip)")
    ap.add_argument("--paired-size", type=int, default=10_000, help="sequence length of each paired round")
    ap.add_argument("--bf16-sample", type=int, default=5000, help="size of the bf16 agreement check (0: skip)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--fasta", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.fasta, args.threads, args.step, args.out, args.batch, args.precision)
        return

    import numpy as np
    import torch

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, threads {args.threads}, step {args.step}")
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="m2v_bench_"))
    for size in args.sizes:
        fasta = tmp / f"seq_{size}.fa"
        make_fasta(fasta, size)
        step = args.step if size <= args.reference_max or not args.large_step else args.large_step
        ours = run_child("mire2e-viz", fasta, args.threads, step, args.batch)
        row = {"size": size, "step": step, "ours": {k: v for k, v in ours.items() if k not in ("scores", "profile")}}
        print(f"[{size:>9,} nt] mire2e-viz fp32 : step {step}, {ours['windows']:>7,} windows {ours['windows_per_s']:8.1f} win/s  "
              f"peak RSS {ours['peak_rss_mb']:7.0f} MB")
        if size <= args.reference_max:
            ref = run_child("reference", fasta, args.threads, args.step)
            row["reference"] = {k: v for k, v in ref.items() if k not in ("scores", "profile")}
            print(f"[{size:>9,} nt] reference      : {ref['windows']:>7,} windows {ref['windows_per_s']:8.1f} win/s  "
                  f"peak RSS {ref['peak_rss_mb']:7.0f} MB")
            row["speedup"] = ours["windows_per_s"] / ref["windows_per_s"]
            row["rss_ratio"] = ours["peak_rss_mb"] / ref["peak_rss_mb"]
            print(f"[{size:>9,} nt] ratio ours/reference: windows/s x{row['speedup']:.2f} (goal >= 4), "
                  f"peak RSS x{row['rss_ratio']:.3f} (goal <= 0.1); "
                  f"ours covers {ours['windows'] - ref['windows']} more windows (the 3' tail)")
        results.append(row)
    if args.bf16_sample:
        import torch as _t

        print("bf16 check on", "cuda" if _t.cuda.is_available() else "cpu")
        fasta = tmp / "bf16_sample.fa"
        make_fasta(fasta, args.bf16_sample, seed=1)
        a = run_child("mire2e-viz", fasta, args.threads, args.step, args.batch)
        b = run_child("mire2e-viz", fasta, args.threads, args.step, args.batch, precision="bf16")
        d = max(float(np.abs(a["scores"] - b["scores"]).max()), float(np.abs(a["profile"] - b["profile"]).max()))
        print(f"[{args.bf16_sample:>9,} nt] bf16 autocast: {b['windows_per_s']:.1f} win/s vs fp32 {a['windows_per_s']:.1f}; "
              f"max |diff| vs fp32 {d:.4f} ({'OK' if d <= 0.01 else 'ABOVE 0.01'})")
        results.append({"size": args.bf16_sample, "bf16": {"windows_per_s": b["windows_per_s"], "max_abs_diff": d},
                        "fp32": {"windows_per_s": a["windows_per_s"]}})
    if args.paired_rounds:
        # Load on a shared machine changes from minute to minute: alternate short runs of both
        # implementations on the same sequence and report the median of the per-round ratios.
        fasta = tmp / "paired.fa"
        make_fasta(fasta, args.paired_size, seed=2)
        ratios, ours_w, ref_w = [], [], []
        for r in range(args.paired_rounds):
            a = run_child("mire2e-viz", fasta, args.threads, args.step, args.batch)
            b = run_child("reference", fasta, args.threads, args.step)
            ours_w.append(a["windows_per_s"])
            ref_w.append(b["windows_per_s"])
            ratios.append(a["windows_per_s"] / b["windows_per_s"])
            print(f"[paired {r + 1}/{args.paired_rounds}, {args.paired_size:,} nt] ours {a['windows_per_s']:.1f} win/s, "
                  f"reference {b['windows_per_s']:.1f} win/s, ratio x{ratios[-1]:.2f}", flush=True)
        med = float(np.median(ratios))
        print(f"paired throughput ratio ours/reference: median x{med:.2f} over {len(ratios)} rounds "
              f"(min x{min(ratios):.2f}, max x{max(ratios):.2f}; goal >= 4)")
        results.append({"paired": {"size": args.paired_size, "ratios": ratios, "median_ratio": med,
                                   "ours_windows_per_s": ours_w, "reference_windows_per_s": ref_w}})
    by_size = {r["size"]: r for r in results if "size" in r}
    if 100_000 in by_size and 1_000_000 in by_size:
        a, b = by_size[100_000]["ours"]["peak_rss_mb"], by_size[1_000_000]["ours"]["peak_rss_mb"]
        print(f"ours peak RSS 1 Mb / 100 kb: {b / a:.3f} (goal <= 1.10)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
