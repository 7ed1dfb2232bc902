"""Training throughput of each stage in fp32 and under bf16 autocast, on this CPU.

The structure stage dominates training (issue 3), and on CPU its budget is wall time.
This script times the real training step of :mod:`mire2e_viz.train` (forward pass,
loss, backward pass, gradient clipping, AdamW update) on real rows of the cached
window table, with the recipe the shipped stage was last trained with (batch 16 per
process, dropout off, attention supervised by RNAfold's pairs on all six layers).

The precisions are interleaved in rounds inside one process, so that both see the same
machine noise. The report gives windows/s per round, the median, and the ratio to fp32.
It also trains each precision for ``--learn-steps`` steps from the same start and
weights, and reports the training loss, so that a speed-up that broke learning would
show.

Usage::

    python bench/train_throughput.py                          # structure stage, 1 thread
    python bench/train_throughput.py --stages structure mfe classifier --threads 2 \\
        --json data/metrics/train_throughput.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np

#: per stage: the recipe keys that matter for the cost of one step (as shipped)
RECIPES = {
    "structure": {"batch_size": 16, "dropout": 0.0, "pair_attention": 0.1,
                  "pair_attention_layers": [0, 1, 2, 3, 4, 5]},
    "mfe": {"batch_size": 64, "profile_source": "true"},
    "classifier": {"batch_size": 32, "profile_source": "true"},
}
PRECISIONS = (None, "bf16")


def _arrays(stage: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` random training rows of the cached window table (RNAfold labels)."""
    from mire2e_viz import train

    cfg = train.default_config(stage)
    arrays = train.load_arrays(cfg)
    rows = train._training_rows(stage, arrays, cfg)[0]
    rows = np.sort(np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False))
    out = train.take_rows(arrays, rows)
    if stage == "structure":
        out["partner"] = train.pair_partners(out["profile"], out["lengths"])
    return out


def bench_stage(stage: str, rounds: int, steps: int, learn_steps: int, seed: int = 0) -> dict:
    """Windows/s of ``stage``'s training step per precision, plus a short learning check."""
    import torch

    from mire2e_viz import train
    from mire2e_viz.model import build

    cfg0 = {**train.default_config(stage), **RECIPES[stage]}
    bs = int(cfg0["batch_size"])
    arrays = _arrays(stage, max(bs * (steps + learn_steps + 8), 512), seed)
    n = len(arrays["codes"])
    torch.manual_seed(seed)
    start = build(stage)
    if cfg0.get("dropout") is not None:
        train.set_dropout(start, float(cfg0["dropout"]))

    def make(mode):
        model = copy.deepcopy(start).train()
        opt = torch.optim.AdamW(model.parameters(), lr=float(cfg0["lr"]), weight_decay=cfg0["weight_decay"])
        return model, opt, {**cfg0, "autocast": mode}

    def one_step(model, opt, cfg, idx) -> float:
        with train.autocast(cfg, "cpu"):
            loss = train._step_loss(stage, model, arrays, idx, cfg, "cpu", 0.0, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    rng = np.random.default_rng(seed)
    batches = [rng.choice(n, size=bs, replace=False) for _ in range(max(steps, learn_steps))]
    runs = {m: make(m) for m in PRECISIONS}
    for m in PRECISIONS:  # warm-up (oneDNN kernel selection)
        for idx in batches[:2]:
            one_step(*runs[m], idx)
    per_round: dict[str, list[float]] = {str(m or "fp32"): [] for m in PRECISIONS}
    for _ in range(rounds):
        for m in PRECISIONS:
            t0 = time.perf_counter()
            for idx in batches[:steps]:
                one_step(*runs[m], idx)
            per_round[str(m or "fp32")].append(bs * steps / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in per_round.items()}
    # learning check: same start, same batches, fresh optimizer per precision
    learn = {}
    for m in PRECISIONS:
        model, opt, cfg = make(m)
        losses = [one_step(model, opt, cfg, idx) for idx in batches[:learn_steps]]
        k = max(len(losses) // 5, 1)
        learn[str(m or "fp32")] = {"first_loss": float(np.mean(losses[:k])), "last_loss": float(np.mean(losses[-k:]))}
    return {
        "stage": stage, "recipe": RECIPES[stage], "steps_per_round": steps, "rounds": rounds,
        "windows_per_s": {k: [round(x, 1) for x in v] for k, v in per_round.items()},
        "median_windows_per_s": {k: round(v, 1) for k, v in med.items()},
        "bf16_over_fp32": round(med["bf16"] / med["fp32"], 3),
        "learning": learn, "learn_steps": learn_steps,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stages", nargs="+", default=["structure"], choices=list(RECIPES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shipped runs used 1 per process)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per precision per round")
    ap.add_argument("--learn-steps", type=int, default=60)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from mire2e_viz.train import cpu_bf16_flags, cpu_name

    torch.set_num_threads(args.threads)
    isa = ", ".join(cpu_bf16_flags() or []) or "no bf16 instructions found"
    report = {"machine": f"{cpu_name()} ({isa}), torch {torch.__version__}, {args.threads} thread(s)",
              "date": time.strftime("%Y-%m-%d"), "stages": []}
    for stage in args.stages:
        res = bench_stage(stage, args.rounds, args.steps, args.learn_steps)
        report["stages"].append(res)
        lw = res["learning"]
        print(f"{stage:10s} fp32 {res['median_windows_per_s']['fp32']:7.1f} w/s   bf16 "
              f"{res['median_windows_per_s']['bf16']:7.1f} w/s   ratio {res['bf16_over_fp32']:.2f}   "
              f"loss over {args.learn_steps} steps: fp32 {lw['fp32']['first_loss']:.4f}->{lw['fp32']['last_loss']:.4f}, "
              f"bf16 {lw['bf16']['first_loss']:.4f}->{lw['bf16']['last_loss']:.4f}", flush=True)
    print(report["machine"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
