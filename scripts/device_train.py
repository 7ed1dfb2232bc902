"""Train the structure stage on a lent GPU machine in one call, then continue on the CPU.

The structure stage dominates the cascade's training cost (about 36 ms per
window and step on one CPU core). A GPU machine, when a task is lent one, is
held for minutes, starts bare, cannot reach ``../shared`` or the internet, and
hands back at most 8 files of 16 MB. This script packs what such a run needs
into one ignored folder, and unpacks its result:

1. Here, on the CPU machine::

       python scripts/device_train.py prepare --minutes 7

   writes ``.devtrain/`` (in ``.gitignore``): the RNAfold-labelled window table of the
   cache (``windows_seed0.pkl``, about 34 MB; ``make demo`` or any training run
   builds it), the initial weights when they are not shipped ones, and the
   training config, then prints the device command and its ``carry`` list.
2. On the device (the printed command): ``check`` fails fast without a CUDA GPU,
   ``mire2e-viz train structure`` runs for the set minutes from the carried
   table alone (no ViennaRNA, no shared data), and ``export`` writes the
   weights (fp16, under the 16 MB a file may bring back) with the run's
   history and config to ``$OUT``.
3. Back here, the exported ``structure.pt`` is a checkpoint without optimiser
   state: any training config takes it as ``"init"``, and the usual cascade
   pipeline follows (README, "Training further")::

       python scripts/cascade_table.py --structure <files_at>/structure.pt --out runs/table.npz ...
       python scripts/make_model_card.py --export <files_at>/structure.pt runs/mfe/best.pt runs/clf/best.pt

Every step runs on the CPU too (``check --allow-cpu``), which is how the
tests cover it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUNDLE = ".devtrain"
# Structure recipe for one GPU: the shipped stage's last CPU recipe (AdamW, attention aid on
# every layer, no dropout) at a batch 8x larger, lr scaled by about sqrt(8), bf16 autocast.
GPU_CONFIG = {
    "init": "hsa", "device": "cuda", "autocast": "bf16", "batch_size": 128, "lr": 4e-4,
    "warmup": 0.05, "schedule": "cosine", "dropout": 0.0, "pair_attention": 0.1,
    "pair_attention_layers": [0, 1, 2, 3, 4, 5], "eval_every": 1000, "eval_windows": 2048,
    "ckpt_every": 2000, "threads": 4, "seed": 0,
}


def prepare(minutes: float, init: str, seed: int, repo: Path = REPO, overrides: dict | None = None) -> dict:
    """Write ``repo/.devtrain`` and return ``{"command", "carry", "config"}``."""
    from mire2e_viz import weights
    from mire2e_viz.trainingdata import cache_dir

    table = cache_dir() / f"windows_seed{seed}.pkl"
    if not table.is_file():
        raise SystemExit(f"device_train prepare: {table} not found; build the window table first "
                         f"(python -c 'from mire2e_viz import trainingdata as td; td.load_windows({seed})')")
    bundle = repo / BUNDLE
    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "cache").mkdir(parents=True)
    try:
        os.link(table, bundle / "cache" / table.name)
    except OSError:
        shutil.copy2(table, bundle / "cache" / table.name)
    cfg = {**GPU_CONFIG, "max_minutes": float(minutes), "data_seed": seed, **(overrides or {})}
    if init not in weights.available():  # a local run: bring its weights along as a state dict
        import torch

        from mire2e_viz.train import load_state

        torch.save(load_state(init, "structure"), bundle / "init.pt")
        cfg["init"] = f"{BUNDLE}/init.pt"
    else:
        cfg["init"] = init
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    command = (f"export PYTHONPATH=$PWD MIRE2E_CACHE_DIR=$PWD/{BUNDLE}/cache MIRE2E_DATA_DIR=/nonexistent "
               "PYTHONUNBUFFERED=1; python3 scripts/device_train.py check && "
               f"python3 -m mire2e_viz.train structure --out /tmp/devrun --config {BUNDLE}/config.json && "
               "python3 scripts/device_train.py export /tmp/devrun $OUT")
    return {"command": command, "carry": [BUNDLE], "config": cfg}


def check(allow_cpu: bool = False) -> str:
    """The GPU's name; fails (exit 1) when torch sees none, unless ``allow_cpu``."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    if allow_cpu:
        return f"no CUDA GPU (torch {torch.__version__}): CPU run"
    raise SystemExit(f"device_train check: torch {torch.__version__} sees no CUDA GPU here; not training")


def export(run: Path, out: Path) -> list[Path]:
    """``structure.pt``, ``history.jsonl`` and ``run.json`` of the run folder ``run``, into ``out``.

    ``structure.pt`` is the run's ``last.pt`` without optimiser and RNG state and with fp16
    weights (7.7 MB): ``"init"`` of a later config, or ``make_model_card.py --export``
    (its record keeps the run's config, steps, wall time and hardware).
    """
    import torch

    ck = torch.load(run / "last.pt", weights_only=False, map_location="cpu")
    out.mkdir(parents=True, exist_ok=True)
    keep = {k: ck[k] for k in ("step", "elapsed_s", "history", "config", "hardware", "stage") if k in ck}
    state = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()}
    torch.save({"model": state, **keep}, out / "structure.pt")
    shutil.copy2(run / "history.jsonl", out / "history.jsonl")
    evals = [r for r in ck.get("history", []) if "val_acc3" in r]
    (out / "run.json").write_text(json.dumps({
        "step": ck["step"], "elapsed_s": ck["elapsed_s"], "hardware": ck.get("hardware"),
        "config": ck["config"], "last_eval": evals[-1] if evals else None}, indent=1, default=str))
    return [out / "structure.pt", out / "history.jsonl", out / "run.json"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write .devtrain/ and print the device command")
    p.add_argument("--minutes", type=float, default=7.0, help="training minutes on the device (default 7)")
    p.add_argument("--init", default="hsa", help="shipped weights name or a structure checkpoint")
    p.add_argument("--seed", type=int, default=0, help="data seed of the window table")
    p.add_argument("--config", default=None, help="JSON overriding the GPU recipe")
    c = sub.add_parser("check", help="fail fast unless torch sees a CUDA GPU")
    c.add_argument("--allow-cpu", action="store_true")
    e = sub.add_parser("export", help="bring a run's weights back under the device's file limits")
    e.add_argument("run", type=Path)
    e.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        res = prepare(args.minutes, args.init, args.seed, overrides=json.loads(args.config) if args.config else None)
        print(json.dumps(res, indent=1))
    elif args.cmd == "check":
        print(check(args.allow_cpu))
    else:
        for path in export(args.run, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
