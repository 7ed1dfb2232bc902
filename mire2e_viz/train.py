"""Train the three stages of the miRe2e cascade.

One seeded, resumable entry point for every stage::

    mire2e-viz train structure  --out runs/structure  [--config cfg.json] [--resume ckpt.pt]
    mire2e-viz train mfe        --out runs/mfe        --config '{"structure_weights": "runs/structure/last.pt"}'
    mire2e-viz train classifier --out runs/classifier --config '{"structure_weights": ..., "mfe_weights": ...}'

or from Python: ``train_stage("structure", {"max_minutes": 50}, out="runs/structure")``.

Recipe
------
The paper's recipe is the baseline and is available as ``optimizer="sgd"``
(Nesterov momentum 0.9, lr 1e-3, constant): MSE for the structure and MFE
stages, focal loss (alpha=1, gamma=4) for the classifier; the stages are
trained in cascade (the MFE stage sees the structure stage's predicted
profiles, the classifier sees both predicted outputs). The default optimiser
is AdamW with a warm-up + cosine schedule over the run's step or time budget,
a deviation measured against the baseline (see ``MODEL_CARD.md``).

Checkpoints (``<out>/last.pt``) hold the model, optimiser, scheduler position,
RNG state, config and history; ``--resume`` continues from one. ``--resume``
may also name shipped weights (``hsa``) to fine-tune them further.

Data parallel on several CPU processes (or GPUs) through ``torchrun``: each
process draws its own batches and the gradients are averaged every step, so
two single-thread processes do about twice the work of one::

    torchrun --standalone --nproc_per_node 2 -m mire2e_viz.train structure --out runs/s --config '{"threads": 1}'

Weight soups
------------
``mire2e-viz soup classifier --out runs/soup.pt hsa runs/a/best.pt runs/b/best.pt``
averages the weights of fine-tunes that share one starting point (a uniform
"model soup", Wortsman et al. 2022). The result is one network of the same
size, so scanning costs the same; ``export`` records every member's run.

Structure attention aid
-----------------------
``{"pair_attention": w}`` (w > 0) adds ``w`` times a cross-entropy that
teaches head 0 of the layers in ``pair_attention_layers`` to attend from each
nucleotide to its RNAfold partner (see :func:`pair_partners`). Without it the
stage sat on the per-position prior for hundreds of steps; the measurement is
in ``MODEL_CARD.md``. The architecture is unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("structure", "mfe", "classifier")

BASE: dict[str, Any] = {
    "seed": 0,
    "data_seed": 0,
    "data": None,  # path to an .npz of arrays; None = trainingdata.load_windows(data_seed)
    "optimizer": "adamw",  # "adamw" | "sgd" (paper: SGD, Nesterov momentum 0.9, lr 1e-3)
    "lr": 1e-3,
    "weight_decay": 1e-2,
    "momentum": 0.9,
    "schedule": "cosine",  # "cosine" (warm-up + cosine over the budget) | "constant"
    "warmup": 0.03,
    "batch_size": 32,
    "max_steps": 100_000,
    "max_minutes": None,  # wall-clock budget; the schedule then runs on elapsed time
    "eval_every": 200,
    "eval_windows": 512,
    "ckpt_every": 100,
    "threads": 2,
    "device": "cpu",
    # mixed precision for the training forward pass and loss: None (fp32) or "bf16"
    # (torch.autocast; weights, optimizer state and validation stay fp32). On CPUs with
    # AMX or AVX512-BF16 it runs the structure stage's step about 1.8x faster (bench/train_throughput.py)
    "autocast": None,
    "grad_clip": 1.0,
    "max_train_windows": None,  # cap on training rows (classifier: all positives kept, up to half)
    "init": None,  # initial weights (checkpoint, state dict or shipped name); optimizer starts fresh
    # also save ``best.pt`` whenever this validation metric improves (None: last step only)
    "keep_best": None,  # e.g. "val_aupr", "val_acc3", "val_pearson", "-val_loss"
    # dropout probability during training for every Dropout layer and attention dropout
    # (None: the architecture's own, 0.1 in the Transformers, 0.5 in the classifier MLP)
    "dropout": None,
    # exponential moving average of the weights (e.g. 0.999): validation, best.pt and the
    # exported "model" use the average; the raw weights are kept for resuming (None: off)
    "weight_ema": None,
    # add the stem-loops of every other metazoan miRBase species (training only, guarded
    # against the validation families; see trainingdata.animal_windows)
    "animal_hairpins": False,
    # add fresh RNAfold-labelled regression windows from the training side (meant for the MFE
    # stage; see trainingdata.mfe_extra)
    "mfe_extra": False,
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "structure": {"loss": "mse", "lr": 5e-4,
                  # weight of the auxiliary attention loss (0 = the paper's plain MSE); see pair_partners
                  "pair_attention": 0.0, "pair_attention_layers": [0, 1]},
    "mfe": {"loss": "mse", "profile_source": "predicted", "structure_weights": None},
    "classifier": {
        "loss": "focal",
        "lr": 1e-4,
        "alpha": 1.0,
        "gamma": 4.0,
        "positive_species": ["hsa"],  # miRBase species codes, or "all" (every hairpin in the data)
        "pos_fraction": 0.3,
        "profile_source": "predicted",
        "structure_weights": None,
        "mfe_weights": None,
        "classifier_extra": True,  # more genomic-context positives and background windows
        # reverse complements of the hairpins as negatives (trainingdata.strand_decoys):
        # False, True (human hairpins) or a list of miRBase species codes, e.g. the positive_species
        "strand_decoys": False,
        # share of each batch drawn from the negatives the current model scores highest,
        # re-mined every ``eval_every`` steps from ``hard_negative_pool`` top-scoring negatives
        "hard_negative_fraction": 0.0,
        "hard_negative_pool": 2000,
        # weight of a ranking loss that scores each hairpin above its own reverse complement
        # (needs strand_decoys; see strand_pairs)
        "strand_pair_weight": 0.0,
    },
}


#: the paper's optimiser settings; select with ``{"recipe": "paper"}``
PAPER_RECIPE: dict[str, Any] = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "schedule": "constant",
                                "warmup": 0.0, "grad_clip": None}


def default_config(stage: str) -> dict[str, Any]:
    """Full default configuration of one stage."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    return {**BASE, **DEFAULTS[stage], "stage": stage}


def code_version() -> str:
    """Package version plus the git commit of the checkout, if any."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("mire2e-viz")
    except PackageNotFoundError:
        v = "0.1.0"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+git.{sha}" if sha else v


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: Any = None) -> str:
    """One-line description of the machine that trains (with its GPU when ``device`` is CUDA)."""
    import os

    import torch

    line = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device is not None and torch.device(device).type == "cuda":
        line = f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda}); {line}"
    return line


# ------------------------------------------------------------------ helpers


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_state(path_or_name: str | Path, stage: str) -> dict:
    """A stage state dict from a checkpoint, a bare state-dict file or shipped weights name."""
    import torch

    from . import weights

    p = Path(path_or_name)
    if not p.exists() and str(path_or_name) in weights.available():
        return weights.get(str(path_or_name))[stage].state_dict()
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - a local training checkpoint (holds RNG state): trusted
        obj = torch.load(p, weights_only=False, map_location="cpu")
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}


def window_sets(config: dict) -> list[tuple[str, Any, dict[str, np.ndarray]]]:
    """The cached window tables a stage trains on: ``(name, WindowSet, arrays)``, the base table first.

    The classifier adds ``classifier_extra`` and ``strand_decoys`` when its config turns them on;
    any stage adds the other animal species' hairpins with ``animal_hairpins`` and the extra
    regression windows of :func:`~mire2e_viz.trainingdata.mfe_extra` with ``mfe_extra``.
    """
    from .trainingdata import (
        animal_windows,
        classifier_extra,
        load_windows,
        mfe_extra,
        strand_decoys,
    )

    seed = config.get("data_seed", 0)
    sets = [("windows", *load_windows(seed))]
    if config.get("animal_hairpins"):
        sets.append(("animal_hairpins", *animal_windows(seed)))
    if config.get("mfe_extra"):
        sets.append(("mfe_extra", *mfe_extra(seed)))
    if config.get("stage") == "classifier":
        if config.get("classifier_extra"):
            sets.append(("classifier_extra", *classifier_extra(seed)))
        for sp in decoy_species(config):  # human first, under its historical name
            sets.append(("strand_decoys" if sp == "hsa" else f"strand_decoys_{sp}", *strand_decoys(seed, sp)))
    return sets


def decoy_species(config: dict) -> list[str]:
    """Species whose hairpins give strand decoys under ``config["strand_decoys"]``, human first.

    ``False``/``None`` gives none, ``True`` human only (``["hsa"]``), a list those species.
    """
    value = config.get("strand_decoys")
    if not value:
        return []
    if value is True:
        return ["hsa"]
    if isinstance(value, str):
        value = [value]
    species = [str(v) for v in value]
    return sorted(set(species), key=lambda sp: (sp != "hsa", species.index(sp)))


def load_arrays(config: dict) -> dict[str, np.ndarray]:
    """Training arrays: from ``config["data"]`` (.npz) or the cached window tables (:func:`window_sets`)."""
    if config.get("data"):
        with np.load(config["data"], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    parts = []
    for _, ws, arrays in window_sets(config):
        part = {k: v for k, v in arrays.items()}
        part.update(split=ws.split, species=ws.species, kind=ws.kind, name=ws.name)
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def predict_stages(arrays: dict[str, np.ndarray], structure_weights: str | None, mfe_weights: str | None,
                   batch_size: int = 256, cache: Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Run stage 1 (and 2) on every window; returns ``pred_profile`` and ``pred_mfe_raw``.

    With ``structure_weights`` None, stage 1 is not run: ``arrays["pred_profile"]``
    (an earlier prediction) feeds stage 2. Results are cached in ``cache`` (an
    .npz) when given.
    """
    import torch

    from .encoding import one_hot, structure_pe
    from .model import build

    if cache is not None and Path(cache).exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    from tqdm.auto import tqdm

    codes, lengths = arrays["codes"], arrays["lengths"]
    out: dict[str, np.ndarray] = {}
    if structure_weights is None:
        if "pred_profile" not in arrays:
            raise ValueError("predict_stages: no structure weights and no earlier pred_profile to reuse")
        prof = np.asarray(arrays["pred_profile"], np.float32)
    else:
        s = build("structure").eval()
        s.load_state_dict(load_state(structure_weights, "structure"))
        prof = np.zeros(codes.shape, np.float32)
        with torch.inference_mode():
            for i in tqdm(range(0, len(codes), batch_size), desc="structure", disable=not progress):
                oh = torch.from_numpy(one_hot(codes[i : i + batch_size]))
                pe = torch.from_numpy(structure_pe(lengths[i : i + batch_size]))
                prof[i : i + batch_size] = s(oh, pe).numpy()
    out["pred_profile"] = prof
    if mfe_weights:
        m = build("mfe").eval()
        m.load_state_dict(load_state(mfe_weights, "mfe"))
        raw = np.zeros(len(codes), np.float32)
        with torch.inference_mode():
            for i in range(0, len(codes), batch_size):
                oh = torch.from_numpy(one_hot(codes[i : i + batch_size]))
                raw[i : i + batch_size] = m(oh, torch.from_numpy(prof[i : i + batch_size])).numpy()
        out["pred_mfe_raw"] = raw
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out


def focal_loss(logits, target_pos, alpha: float = 1.0, gamma: float = 4.0):
    """Focal loss on two-class logits (column 0 = pre-miRNA).

    ``FL = -alpha * (1 - p_t)^gamma * log(p_t)``, averaged over the batch.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=1)
    cls = (1 - target_pos.long())  # positive -> class 0
    logpt = logp.gather(1, cls[:, None]).squeeze(1)
    pt = logpt.exp()
    return (-alpha * (1 - pt) ** gamma * logpt).mean()


class _Batches:
    """Seeded index sampler.

    The classifier's draws a fixed share of positives and, once :attr:`hard` is
    set, a share ``hard_fraction`` of its negatives from that pool of hard negatives.
    """

    def __init__(self, n: int, batch_size: int, seed: int, pos: np.ndarray | None = None, pos_fraction: float = 0.0,
                 hard_fraction: float = 0.0):
        self.n, self.bs = n, batch_size
        self.rng = np.random.default_rng(seed)
        self.pos = None if pos is None or pos_fraction <= 0 else np.flatnonzero(pos)
        self.neg = None if self.pos is None else np.flatnonzero(~pos)
        self.pf = pos_fraction
        self.hard: np.ndarray | None = None
        self.hf = hard_fraction
        self.perm, self.i = self.rng.permutation(n), 0

    def next(self) -> np.ndarray:
        if self.pos is not None:
            k = self.rng.binomial(self.bs, self.pf)
            h = self.rng.binomial(self.bs - k, self.hf) if self.hard is not None and len(self.hard) else 0
            parts = [self.rng.choice(self.pos, k), self.rng.choice(self.neg, self.bs - k - h)]
            if h:
                parts.append(self.rng.choice(self.hard, h))
            return np.concatenate(parts)
        if self.i + self.bs > self.n:
            self.perm, self.i = self.rng.permutation(self.n), 0
        idx = self.perm[self.i : self.i + self.bs]
        self.i += self.bs
        return idx


def _distributed() -> tuple[int, int]:
    """``(world_size, rank)``; joins the process group when launched by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_world_size(), dist.get_rank()


def _shared_value(x: float, world: int) -> float:
    """``x`` as rank 0 sees it (so every process stops and schedules alike)."""
    if world <= 1:
        return x
    import torch
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t)


def _average_gradients(model, world: int) -> None:
    """All-reduce the gradients (one flat buffer) and divide by the process count."""
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    with torch.no_grad():
        for g, v in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(v)


def _lr_factor(config: dict, step: int, elapsed_min: float) -> float:
    if config["schedule"] == "constant":
        return 1.0
    if config.get("max_minutes"):
        frac = min(elapsed_min / float(config["max_minutes"]), 1.0)
    else:
        frac = min(step / max(int(config["max_steps"]), 1), 1.0)
    w = float(config["warmup"])
    if frac < w:
        return max(frac / w, 0.02)
    return 0.5 * (1 + math.cos(math.pi * (frac - w) / max(1 - w, 1e-9))) * 0.98 + 0.02


# ------------------------------------------------------------------- training


def _inputs(stage: str, arrays: dict[str, np.ndarray], idx: np.ndarray, config: dict, device):
    import torch

    from .encoding import one_hot, structure_pe

    oh = torch.from_numpy(one_hot(arrays["codes"][idx])).to(device)
    if stage == "structure":
        pe = torch.from_numpy(structure_pe(arrays["lengths"][idx])).to(device)
        target = torch.from_numpy(arrays["profile"][idx]).to(device)
        if config.get("pair_attention") and "partner" in arrays:
            return (oh, pe), (target, torch.from_numpy(arrays["partner"][idx]).to(device))
        return (oh, pe), target
    use_pred = config.get("profile_source") == "predicted" and "pred_profile" in arrays
    prof = torch.from_numpy(arrays["pred_profile" if use_pred else "profile"][idx]).to(device)
    if stage == "mfe":
        return (oh, prof), torch.from_numpy(arrays["mfe_raw"][idx]).to(device)
    mfe_key = "pred_mfe_raw" if use_pred and "pred_mfe_raw" in arrays else "mfe_raw"
    mfe = torch.from_numpy(arrays[mfe_key][idx]).to(device)
    return (oh, prof, mfe), torch.from_numpy(arrays["label"][idx]).to(device)


def _loss(stage: str, model, inputs, target, config: dict):
    import torch.nn.functional as F

    if stage == "classifier":
        return focal_loss(model.logits(*inputs), target, config["alpha"], config["gamma"])
    if isinstance(target, tuple):  # structure with attention supervised by base pairs
        target, partner = target
        layers = [int(i) for i in config.get("pair_attention_layers", [0])]
        profile, scores = model.forward_with_attention(*inputs, layers=layers)
        n = partner.shape[-1]
        ce = sum(F.cross_entropy(scores[i][:, 0].float().reshape(-1, n), partner.reshape(-1), ignore_index=-1)
                 for i in layers) / len(layers)
        return F.mse_loss(profile.float(), target.float()) + float(config["pair_attention"]) * ce
    return F.mse_loss(model(*inputs).float(), target.float())


def strand_pairs(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Row of each hairpin's strand decoy (its reverse complement), or -1.

    A positive row of kind ``hairpin`` named ``n`` pairs with the ``hairpin_rc``
    row named ``n_rc``, a ``hairpin_ctx`` row with the ``hairpin_rc_ctx`` row
    (see :func:`mire2e_viz.trainingdata.strand_decoys`). Needs ``name``, ``kind``
    and ``label`` arrays; rows without a decoy (and every negative) get -1.
    """
    n = len(arrays["label"])
    out = np.full(n, -1, dtype=np.int64)
    if "name" not in arrays or "kind" not in arrays:
        return out
    names, kinds = arrays["name"].astype(str), arrays["kind"].astype(str)
    decoy = {(str(nm), str(k)): i for i, (nm, k) in enumerate(zip(names, kinds, strict=True))
             if k in ("hairpin_rc", "hairpin_rc_ctx")}
    for i in np.flatnonzero(arrays["label"] == 1):
        if kinds[i] in ("hairpin", "hairpin_ctx"):
            out[i] = decoy.get((names[i] + "_rc", kinds[i].replace("hairpin", "hairpin_rc")), -1)
    return out


def strand_rank_loss(logits, n_sense: int):
    """Pairwise loss ``softplus(-(z_sense - z_antisense))`` over the last rows of a batch.

    ``logits`` holds ``n_sense`` hairpins' rows followed by their decoys' rows, as
    the last ``2 * n_sense`` rows; ``z`` is the pre-miRNA log-odds (column 0 minus
    column 1). The loss falls as each hairpin outscores its own reverse complement.
    """
    import torch.nn.functional as F

    z = (logits[:, 0] - logits[:, 1]).float()
    if n_sense == 0:
        return z.sum() * 0.0
    sense, anti = z[-2 * n_sense : -n_sense], z[-n_sense:]
    return F.softplus(-(sense - anti)).mean()


def set_dropout(model, p: float) -> int:
    """Set every dropout probability of ``model`` (``nn.Dropout`` layers and attention dropout) to ``p``.

    A training setting only: dropout is inactive in evaluation, so the network,
    its state dict and its outputs are unchanged. Returns the number of places set.
    """
    from torch import nn

    n = 0
    for mod in model.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = float(p)
            n += 1
        elif isinstance(mod, nn.MultiheadAttention):
            mod.dropout = float(p)
            n += 1
    return n


def pair_partners(profile: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Partner index of each position from reference-encoded dot-brackets.

    ``profile`` holds '(' = 1, '.' = 0, ')' = -1 (RNAfold, so properly
    nested). A paired position gets its partner's index, an unpaired one its
    own index, a position beyond the real length -1. These are the targets
    of the auxiliary attention loss (``pair_attention`` > 0): head 0 of the
    chosen Transformer layers is trained, by cross-entropy over key
    positions, to attend from each nucleotide to its partner. It is a
    training-time aid only; the network and its outputs are unchanged.
    """
    from .fold import base_pairs

    b, n = profile.shape
    out = np.tile(np.arange(n, dtype=np.int64), (b, 1))
    out[np.arange(n)[None, :] >= np.asarray(lengths)[:, None]] = -1
    symbols = np.array(list(".()"))  # indexed by the sign: 0 '.', 1 '(', -1 ')'
    for r in range(b):
        for i, j in base_pairs("".join(symbols[np.sign(profile[r]).astype(np.int64)])):
            out[r, i], out[r, j] = j, i
    return out


def _evaluate(stage: str, model, arrays, idx, config, device, pairs: np.ndarray | None = None) -> dict[str, float]:
    """Validation metrics on rows ``idx``; for the classifier also ``val_strand`` on ``pairs``.

    ``pairs`` is an ``(n, 2)`` array of (hairpin row, its decoy row): ``val_strand``
    is the share of hairpins scored above their own reverse complement.
    """
    import torch

    model.eval()
    losses, outs = [], []
    with torch.inference_mode():
        for i in range(0, len(idx), 128):
            b = idx[i : i + 128]
            inputs, target = _inputs(stage, arrays, b, config, device)
            if isinstance(target, tuple):
                target = target[0]  # validation loss: the profile MSE alone, comparable across runs
            losses.append(float(_loss(stage, model, inputs, target, config)) * len(b))
            outs.append(model(*inputs).float().cpu().numpy())
    out = np.concatenate(outs) if outs else np.zeros(0)
    res = {"val_loss": sum(losses) / max(len(idx), 1)}
    if stage == "structure":
        tgt = arrays["profile"][idx]
        mask = np.arange(tgt.shape[1])[None] < arrays["lengths"][idx][:, None]
        pred3 = np.where(out > 0.5, 1, np.where(out < -0.5, -1, 0))
        res["val_acc3"] = float((pred3 == tgt)[mask].mean())
    elif stage == "mfe":
        tgt = arrays["mfe_raw"][idx] * arrays["lengths"][idx]
        est = out * arrays["lengths"][idx]
        res["val_pearson"] = float(np.corrcoef(est, tgt)[0, 1]) if len(idx) > 2 else float("nan")
        res["val_mae_kcal"] = float(np.abs(est - tgt).mean())
    else:
        from sklearn.metrics import average_precision_score

        y = arrays["label"][idx]
        if 0 < y.sum() < len(y):
            res["val_aupr"] = float(average_precision_score(y, out))
        if pairs is not None and len(pairs):
            with torch.inference_mode():
                sc = []
                for i in range(0, len(pairs), 256):
                    rows = pairs[i : i + 256].T.reshape(-1)
                    inputs, _ = _inputs(stage, arrays, rows, config, device)
                    sc.append(model(*inputs).float().cpu().numpy().reshape(2, -1).T)
            sc = np.concatenate(sc)
            res["val_strand"] = float((sc[:, 0] > sc[:, 1]).mean())
            res["val_strand_pairs"] = len(pairs)
    model.train()
    return res


def hard_negatives(model, arrays: dict[str, np.ndarray], idx: np.ndarray, config: dict, device,
                   pool: int) -> np.ndarray:
    """The ``pool`` rows of ``idx`` that the classifier scores highest (its hardest negatives).

    ``idx`` should hold negatives only; returns positions into ``idx``.
    """
    import torch

    was_training = model.training
    model.eval()
    scores = []
    with torch.inference_mode():
        for i in range(0, len(idx), 512):
            inputs, _ = _inputs("classifier", arrays, idx[i : i + 512], config, device)
            scores.append(model(*inputs).float().cpu().numpy())
    model.train(was_training)
    s = np.concatenate(scores) if scores else np.zeros(0)
    return np.argsort(-s, kind="stable")[: int(pool)]


def _best_value(rec: dict[str, Any], key: str | None) -> float | None:
    """Value of a ``keep_best`` key: a metric, ``-metric`` (lower is better) or a sum ``a+b``."""
    if not key:
        return None
    if "+" in key:
        parts = [_best_value(rec, k) for k in key.split("+")]
        return None if any(v is None for v in parts) else float(sum(parts))
    sign = -1.0 if key.startswith("-") else 1.0
    v = rec.get(key.lstrip("-"))
    return None if v is None or not np.isfinite(v) else sign * float(v)


def _training_rows(stage: str, arrays: dict[str, np.ndarray], config: dict) -> tuple[np.ndarray, np.ndarray]:
    n = len(arrays["codes"])
    split = arrays.get("split", np.array(["train"] * n))
    train = split == "train"
    val = split == "val"
    if stage == "classifier" and "species" in arrays:
        wanted = config["positive_species"]
        pos_ok = (arrays["species"] != "") if wanted == "all" else np.isin(arrays["species"], wanted)
        keep = (arrays["label"] == 0) | pos_ok
        train &= keep
        val &= keep
    return np.flatnonzero(train), np.flatnonzero(val)


def autocast(config: dict, device):
    """The training step's precision context: ``torch.autocast`` under ``config["autocast"]``.

    ``None`` (or ``"fp32"``) gives fp32; ``"bf16"`` runs matrix products and convolutions
    in bfloat16 on ``device`` (CPU or CUDA). Losses are computed in fp32 either way.
    """
    import contextlib

    import torch

    mode = config.get("autocast")
    if mode in (None, "fp32", False):
        return contextlib.nullcontext()
    if mode != "bf16":
        raise ValueError(f"unknown autocast {mode!r}; choose null (fp32) or \"bf16\"")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def cpu_bf16_flags() -> list[str] | None:
    """The CPU's bf16 instruction sets among ``amx_bf16`` and ``avx512_bf16``; ``None`` if unknown.

    Without either, torch emulates bf16 and a structure training step is over ten times
    slower than fp32 (measured on an AMD EPYC); with AMX it is about 1.8 times faster
    (``bench/train_throughput.py``).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return [f for f in ("amx_bf16", "avx512_bf16") if f" {f}" in flags]


def cpu_has_bf16() -> bool | None:
    """Whether this CPU computes bf16 matrix products natively (``None`` when unknown)."""
    flags = cpu_bf16_flags()
    return None if flags is None else bool(flags)


def take_rows(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The per-row arrays of a training table restricted to ``rows`` (scalars and metadata dropped)."""
    n_all = len(arrays["codes"])
    return {k: v[rows] for k, v in arrays.items() if hasattr(v, "__len__") and len(v) == n_all}


def _step_loss(stage: str, model, arrays, idx: np.ndarray, cfg: dict, device, pair_w: float,
               decoy_of: np.ndarray | None):
    """Training loss of one batch of rows ``idx`` (with the strand ranking term when asked)."""
    if pair_w > 0:
        # the batch's hairpins that have a decoy, then those decoys, appended as extra negatives
        sense = idx[decoy_of[idx] >= 0]
        rows = np.concatenate([idx, sense, decoy_of[sense]])
        inputs, target = _inputs(stage, arrays, rows, cfg, device)
        logits = model.logits(*inputs).float()
        return (focal_loss(logits, target, cfg["alpha"], cfg["gamma"])
                + pair_w * strand_rank_loss(logits, len(sense)))
    inputs, target = _inputs(stage, arrays, idx, cfg, device)
    return _loss(stage, model, inputs, target, cfg)


def train_stage(stage: str, config: dict | str | Path | None = None, out: str | Path = "runs/train",
                resume: str | Path | None = None, arrays: dict[str, np.ndarray] | None = None,
                progress: bool = True) -> Path:
    """Train one stage and return the path of its final checkpoint.

    Parameters
    ----------
    stage
        ``structure``, ``mfe`` or ``classifier``.
    config
        Overrides of :func:`default_config` (a dict, a JSON file or a JSON string).
    out
        Output directory: ``config.json``, ``last.pt`` (checkpoint), ``history.jsonl``;
        ``best.pt`` too when ``keep_best`` names a validation metric.
    resume
        A checkpoint to continue (optimizer, step and RNG included), or a state
        dict / shipped weights name (``hsa``) to start from.
    arrays
        Training arrays (``codes``, ``lengths``, ``profile``, ``mfe_raw``,
        ``label``, optional ``split``/``species``/``pred_profile``/``pred_mfe_raw``);
        default: the cached window table (:mod:`mire2e_viz.trainingdata`).
    progress
        Show a tqdm progress bar.

    Returns
    -------
    pathlib.Path
        ``<out>/last.pt``.
    """
    import torch
    from tqdm.auto import tqdm

    from .model import build

    cfg = default_config(stage)
    if isinstance(config, (str, Path)):
        text = Path(config).read_text() if Path(str(config)).exists() else str(config)
        config = json.loads(text)
    cfg.update(config or {})
    if cfg.get("recipe") == "paper":  # the published baseline, verbatim
        cfg.update(PAPER_RECIPE)
    cfg["stage"] = stage
    torch.set_num_threads(int(cfg["threads"]))
    import warnings

    device = torch.device(cfg["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device {cfg['device']!r} asked for, but torch {torch.__version__} sees no CUDA GPU "
                      "on this machine: training on the CPU instead", RuntimeWarning, stacklevel=2)
        device = torch.device("cpu")
    autocast(cfg, device)  # an unknown mode fails here, before any data is loaded
    if cfg.get("autocast") == "bf16" and device.type == "cpu" and cpu_has_bf16() is False:
        warnings.warn("autocast 'bf16' on a CPU without AMX or AVX512-BF16: torch emulates bf16 there and "
                      "training runs much slower than fp32; leave \"autocast\" null on this machine",
                      RuntimeWarning, stacklevel=2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _seed_all(int(cfg["seed"]))

    if arrays is None:
        arrays = load_arrays(cfg)
    arrays = dict(arrays)
    if stage == "structure" and cfg.get("pair_attention") and "partner" not in arrays:
        arrays["partner"] = pair_partners(arrays["profile"], arrays["lengths"])
    train_idx, val_idx = _training_rows(stage, arrays, cfg)
    rng = np.random.default_rng(int(cfg["seed"]))
    eval_idx = np.sort(rng.permutation(val_idx)[: int(cfg["eval_windows"])]) if len(val_idx) else val_idx
    cap = cfg.get("max_train_windows")
    pair_w = float(cfg.get("strand_pair_weight") or 0.0) if stage == "classifier" else 0.0
    decoy_of = strand_pairs(arrays) if stage == "classifier" else None
    if cap and len(train_idx) > int(cap):
        # keep every positive (up to half the cap), fill with random negatives
        lab = arrays["label"][train_idx]
        pos_i = rng.permutation(train_idx[lab == 1])[: int(cap) // 2] if stage == "classifier" else train_idx[:0]
        rest = np.setdiff1d(train_idx, pos_i)
        train_idx = np.sort(np.concatenate([pos_i, rng.permutation(rest)[: int(cap) - len(pos_i)]]))
        if pair_w > 0:  # the kept hairpins' decoys stay too
            d = decoy_of[pos_i]
            train_idx = np.union1d(train_idx, d[d >= 0])
    val_pairs = np.zeros((0, 2), np.int64)
    if decoy_of is not None:
        if pair_w > 0 and (decoy_of[train_idx] >= 0).sum() == 0:
            raise ValueError("strand_pair_weight > 0 needs strand decoys in the training rows "
                             "(set \"strand_decoys\": true)")
        vi = val_idx[decoy_of[val_idx] >= 0]
        val_pairs = np.stack([vi, decoy_of[vi]], axis=1)
    if stage != "structure" and cfg.get("profile_source") == "predicted" and "pred_profile" not in arrays:
        if not cfg.get("structure_weights"):
            raise ValueError(f"stage {stage!r} with profile_source='predicted' needs structure_weights")
        # predict only the rows this run uses
        rows = np.concatenate([train_idx, eval_idx])
        extra = np.setdiff1d(np.concatenate([val_pairs.ravel(), decoy_of[train_idx][decoy_of[train_idx] >= 0]])
                             if decoy_of is not None else np.zeros(0, np.int64), rows)
        rows = np.concatenate([rows, extra])
        n_all = len(arrays["codes"])
        where = np.full(n_all, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        arrays = take_rows(arrays, rows)
        train_idx, eval_idx = np.arange(len(train_idx)), np.arange(len(train_idx), len(train_idx) + len(eval_idx))
        if decoy_of is not None:
            decoy_of = np.where(decoy_of[rows] >= 0, where[np.maximum(decoy_of[rows], 0)], -1)
            val_pairs = where[val_pairs]
        mfe_w = cfg.get("mfe_weights") if stage == "classifier" else None
        digest_rows = __import__("hashlib").sha1(rows.tobytes()).hexdigest()[:10]
        key = f"{Path(str(cfg['structure_weights'])).parent.name}_{Path(str(mfe_w)).parent.name if mfe_w else 'none'}_{digest_rows}"
        cache = out / f"pred_{key}.npz"
        arrays.update(predict_stages(arrays, cfg["structure_weights"], mfe_w, cache=cache, progress=progress))

    model = build(stage).to(device)
    if cfg.get("dropout") is not None:
        set_dropout(model, float(cfg["dropout"]))
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], nesterov=True)
    elif cfg["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        raise ValueError(f"unknown optimizer {cfg['optimizer']!r}")
    step, elapsed0, history = 0, 0.0, []
    averaged_state = None  # a resumed weight_ema run: its average so far
    pos = arrays["label"][train_idx].astype(bool) if stage == "classifier" else None
    hard_frac = float(cfg.get("hard_negative_fraction") or 0.0) if stage == "classifier" else 0.0
    sampler = _Batches(len(train_idx), int(cfg["batch_size"]), int(cfg["seed"]), pos, cfg.get("pos_fraction", 0.0),
                       hard_frac)
    if resume is not None:
        obj = None
        if Path(str(resume)).exists():
            obj = torch.load(resume, weights_only=False, map_location="cpu")
        if isinstance(obj, dict) and "optimizer" in obj:
            model.load_state_dict(obj.get("raw_model", obj["model"]))
            averaged_state = obj["model"] if "raw_model" in obj else None
            opt.load_state_dict(obj["optimizer"])
            step, elapsed0, history = obj["step"], obj["elapsed_s"], obj.get("history", [])
            rs = obj["sampler_rng"]
            if isinstance(rs, dict):
                sampler.rng.bit_generator.state = rs
            else:
                sampler.rng = rs
            torch.set_rng_state(obj["torch_rng"])
        else:  # a state dict or shipped weights: an initialisation, recorded as such
            model.load_state_dict(load_state(resume, stage))
            cfg["init"] = str(resume)
            resume = None
    if cfg.get("init") and resume is None:
        model.load_state_dict(load_state(cfg["init"], stage))
    world, rank = _distributed()
    if world > 1:  # data parallel: same start everywhere, different batches and dropout per process
        import torch.distributed as dist

        for t in model.state_dict().values():
            dist.broadcast(t, 0)
        sampler.rng = np.random.default_rng([int(cfg["seed"]), rank, step])
        torch.manual_seed(int(cfg["seed"]) * 1000 + rank + step)
    cfg["world_size"] = world
    averaged = None
    if cfg.get("weight_ema"):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(cfg["weight_ema"])),
                                 use_buffers=True)
        if averaged_state is not None:  # resumed: the next update continues this average
            averaged.module.load_state_dict(averaged_state)
            averaged.n_averaged.fill_(max(int(step), 1))
    scored = averaged.module if averaged is not None else model  # what validation and exports see
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
    model.train()
    neg_local = np.flatnonzero(~pos) if pos is not None else np.zeros(0, int)

    def mine() -> None:
        if hard_frac > 0 and len(neg_local):
            top = hard_negatives(model, arrays, train_idx[neg_local], cfg, device, int(cfg["hard_negative_pool"]))
            sampler.hard = neg_local[top]

    best = max((v for v in (_best_value(r, cfg.get("keep_best")) for r in history) if v is not None),
               default=-np.inf)
    mine()

    def keep_if_best(rec: dict[str, Any]) -> None:
        nonlocal best
        v = _best_value(rec, cfg.get("keep_best"))
        if v is not None and v > best:
            best = v
            save(out / "best.pt")
            rec["best"] = True

    def save(path: Path) -> None:
        extra = {"raw_model": model.state_dict()} if averaged is not None else {}
        torch.save({
            "model": scored.state_dict(), **extra, "optimizer": opt.state_dict(), "step": step,
            "elapsed_s": elapsed0 + time.time() - t0, "history": history, "config": cfg,
            "sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "hardware": hardware(device), "stage": stage,
        }, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    t0 = time.time()
    max_steps = int(cfg["max_steps"])
    max_s = float(cfg["max_minutes"]) * 60 if cfg.get("max_minutes") else float("inf")
    bar = tqdm(total=max_steps, initial=step, desc=f"train {stage}", disable=not progress or rank > 0)
    ema = None
    log = open(out / "history.jsonl", "a") if rank == 0 else open(os.devnull, "w")
    while True:
        elapsed = _shared_value(elapsed0 + time.time() - t0, world)  # rank 0's clock rules
        if step >= max_steps or elapsed >= max_s:
            break
        factor = _lr_factor(cfg, step, elapsed / 60)
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * factor
        idx = train_idx[sampler.next()]
        with autocast(cfg, device):
            loss = _step_loss(stage, model, arrays, idx, cfg, device, pair_w, decoy_of)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            _average_gradients(model, world)
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
        opt.step()
        if averaged is not None:
            averaged.update_parameters(model)
        step += 1
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.4f}", lr=f"{cfg['lr'] * factor:.2e}")
        rec: dict[str, Any] = {"step": step, "loss": lv, "loss_ema": ema, "lr": cfg["lr"] * factor,
                               "elapsed_s": round(elapsed0 + time.time() - t0, 1)}
        if rank == 0 and len(eval_idx) and (step % int(cfg["eval_every"]) == 0):
            rec.update(_evaluate(stage, scored, arrays, eval_idx, cfg, device, val_pairs))
            history.append(rec)
            keep_if_best(rec)
        if step % int(cfg["eval_every"]) == 0:
            mine()
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if rank == 0 and step % int(cfg["ckpt_every"]) == 0:
            save(out / "last.pt")
    bar.close()
    if rank > 0:
        log.close()
        return out / "last.pt"
    if len(eval_idx):
        rec = {"step": step, "final": True, "elapsed_s": round(elapsed0 + time.time() - t0, 1)}
        rec.update(_evaluate(stage, scored, arrays, eval_idx, cfg, device, val_pairs))
        history.append(rec)
        keep_if_best(rec)
        log.write(json.dumps(rec) + "\n")
    log.close()
    save(out / "last.pt")
    return out / "last.pt"


# ------------------------------------------------------------------------ CLI


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to a CLI's subparsers."""
    p = subparsers.add_parser("train", help="train one stage of the cascade",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--config", help="JSON file or JSON string overriding the defaults")
    p.add_argument("--out", default=None, help="output directory (default runs/<stage>)")
    p.add_argument("--resume", default=None, help="checkpoint, state dict or shipped weights name")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.set_defaults(func=_cli_main)
    q = subparsers.add_parser("soup", help="average the weights of fine-tunes of one stage (a model soup)",
                              description=soup.__doc__.split("\n\n")[0])
    q.add_argument("stage", choices=STAGES)
    q.add_argument("members", nargs="+", help="checkpoints (best.pt, last.pt) or shipped weights names (hsa)")
    q.add_argument("--out", required=True, help="output checkpoint, e.g. runs/soup.pt")
    q.add_argument("--weights", default=None, metavar="W,W,...",
                   help="relative weight of each member, comma-separated (default: equal), e.g. 2,1,1")
    q.set_defaults(func=_cli_soup)
    return p


def _cli_soup(args: argparse.Namespace) -> int:
    try:
        weights = None
        if args.weights:
            try:
                weights = [float(x) for x in args.weights.split(",")]
            except ValueError:
                raise ValueError(f"--weights {args.weights!r}: give numbers separated by commas, e.g. 2,1,1") from None
        print(soup(args.stage, args.members, args.out, weights=weights))
    except ValueError as err:
        raise SystemExit(f"mire2e-viz soup: {err}") from None
    return 0


def _cli_main(args: argparse.Namespace) -> int:
    cfg: dict[str, Any] = {}
    if args.config:
        text = Path(args.config).read_text() if Path(args.config).exists() else args.config
        cfg.update(json.loads(text))
    if args.device:
        cfg["device"] = args.device
    if args.max_steps is not None:
        cfg["max_steps"] = args.max_steps
    if args.max_minutes is not None:
        cfg["max_minutes"] = args.max_minutes
    path = train_stage(args.stage, cfg, out=args.out or f"runs/{args.stage}", resume=args.resume)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m mire2e_viz.train structure ...``."""
    parser = argparse.ArgumentParser(prog="mire2e-viz")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = parser.parse_args(["train", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


# --------------------------------------------------------------------- soup


def _member_run(member: str | Path, stage: str) -> tuple[dict[str, Any], list[dict], dict | None]:
    """Provenance of one soup member: its own run, the runs before it, and its config."""
    import torch

    from . import weights as W

    p = Path(str(member))
    if not p.exists() and str(member) in W.available():
        runs = W.get(str(member))[stage].meta.get("training_runs", [])
        if not runs:
            raise ValueError(f"soup member {member!r}: the {stage} record lists no training runs")
        recipe = W.get(str(member))[stage].meta.get("recipe") or {}
        own = dict(runs[-1], run=f"shipped {member} weights ({runs[-1]['run']})", seed=recipe.get("seed"))
        return own, [dict(r) for r in runs[:-1]], recipe
    try:
        ck = torch.load(p, weights_only=False, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - report the member, not a pickle traceback
        raise ValueError(f"soup member {member}: cannot load it ({err})") from None
    if not (isinstance(ck, dict) and isinstance(ck.get("model"), dict) and "config" in ck):
        raise ValueError(f"soup member {member}: not a training checkpoint (no model/config); "
                         "pass the run's best.pt or last.pt")
    if ck.get("stage", stage) != stage:
        raise ValueError(f"soup member {member}: a {ck.get('stage')} checkpoint, not {stage}")
    cfg = ck["config"]
    own = {**_run_entry(p, ck), "seed": cfg.get("seed"), "init": str(cfg.get("init"))}
    return own, [], cfg


def soup(stage: str, members: list[str | Path], out: str | Path, weights: list[float] | None = None) -> Path:
    """Average the weights of several fine-tunes of one stage (a model soup).

    Averaging works for networks fine-tuned from one starting point with
    different seeds or settings (Wortsman et al., ICML 2022): the average is
    one network of the same size, so it costs nothing extra to run, and it is
    usually better than a typical member. BatchNorm statistics are averaged
    too; integer buffers are taken from the first member.

    Parameters
    ----------
    stage
        ``"structure"``, ``"mfe"`` or ``"classifier"``.
    members
        Training checkpoints (``best.pt``/``last.pt``) or shipped weights
        names (``"hsa"``). At least two.
    out
        The soup checkpoint to write. :func:`export` ships it, recording
        every member's run.
    weights
        Relative weight of each member (positive; normalised to sum 1).
        Default: a uniform average. ``[2, 1, 1]`` keeps half of the first
        member, e.g. an earlier soup, and adds two new fine-tunes.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        Fewer than two members, a member that is not a checkpoint of
        ``stage``, members whose tensors differ in name or shape, or
        ``weights`` of the wrong length or not all positive.
    """
    import torch

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if len(members) < 2:
        raise ValueError(f"a soup needs at least two members, got {len(members)}")
    if weights is None:
        share = [1.0 / len(members)] * len(members)
    else:
        if len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} members; give one weight per member")
        if not all(np.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"soup weights must be positive numbers, got {list(weights)}")
        share = [float(w) / float(sum(weights)) for w in weights]
    states, provenance, configs, shared = [], [], [], None
    for m in members:
        own, before, cfg = _member_run(m, stage)
        provenance.append(own)
        configs.append(cfg)
        if before and shared is None:
            shared = before
        states.append(load_state(m, stage))
    first = states[0]
    for m, sd in zip(members[1:], states[1:], strict=True):
        if sd.keys() != first.keys():
            diff = sorted(set(sd) ^ set(first))[:3]
            raise ValueError(f"soup member {m}: its tensors differ from {members[0]}'s (e.g. {diff})")
        for k, v in sd.items():
            if v.shape != first[k].shape:
                raise ValueError(f"soup member {m}: {k} has shape {tuple(v.shape)}, "
                                 f"{members[0]} has {tuple(first[k].shape)}")
    # a shipped member's start is an older record, so only checkpoints are compared
    from_checkpoint = [not str(p["run"]).startswith("shipped ") for p in provenance]
    inits = {p.get("init") for p, ok in zip(provenance, from_checkpoint, strict=True)
             if ok and p.get("init") not in (None, "None")}
    if len(inits) > 1:
        import warnings

        warnings.warn(f"soup members start from different weights {sorted(inits)}; averaging works for "
                      "fine-tunes of one starting point", stacklevel=2)
    elif shared is None and len(inits) == 1:  # fine-tunes of shipped weights: their record's runs come first
        from . import weights as W

        (init,) = inits
        if not Path(str(init)).is_file() and str(init) in W.available():
            shared = [dict(r) for r in W.get(str(init))[stage].meta.get("training_runs", [])]
            provenance = [dict(p, init=f"shipped {init} weights") if ok else p
                          for p, ok in zip(provenance, from_checkpoint, strict=True)]
    w = torch.tensor(share, dtype=torch.float32)
    avg = {k: (torch.einsum("m,m...->...", w, torch.stack([sd[k].float() for sd in states]))
               if v.is_floating_point() else v.clone())
           for k, v in first.items()}
    uniform = len(set(round(x, 12) for x in share)) == 1
    if not uniform:
        provenance = [dict(p, soup_weight=round(x, 4)) for p, x in zip(provenance, share, strict=True)]
    # the recipe of the first fine-tune checkpoint (a shipped member's record lacks the data path)
    cfg = next((c for c, ok in zip(configs, from_checkpoint, strict=True) if c and ok), None) \
        or next((c for c in configs if c), {})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": avg, "stage": stage, "config": {**cfg, "init": None, "soup": [str(m) for m in members],
                                                "soup_weights": [round(x, 6) for x in share]},
                "soup": provenance, "shared_runs": shared or [], "step": 0, "elapsed_s": 0.0,
                "history": [], "hardware": hardware()}, out)
    return out


# --------------------------------------------------------------------- export


def _run_wall_time(src: str | Path, ck: dict) -> float:
    """Wall time of the whole run a checkpoint came from (a best.pt stops counting at its step)."""
    import torch

    last = Path(str(src)).with_name("last.pt")
    if Path(str(src)).name != "last.pt" and last.is_file():
        return round(float(torch.load(last, weights_only=False, map_location="cpu")["elapsed_s"]), 1)
    return round(float(ck["elapsed_s"]), 1)


def _run_entry(src: str | Path, ck: dict) -> dict[str, Any]:
    """One ``training_runs`` entry of a record: a training checkpoint and the run it came from."""
    world = ck["config"].get("world_size")
    if world is None:  # runs saved before the size was stored in the checkpoint
        run_cfg = Path(str(src)).parent / "config.json"
        world = json.loads(run_cfg.read_text()).get("world_size", 1) if run_cfg.is_file() else 1
    # the run folder for its last.pt; the file itself for any other checkpoint
    run_name = Path(str(src)).parent if Path(str(src)).name == "last.pt" else Path(str(src))
    return {"run": str(run_name), "steps": ck["step"], "batch_size": ck["config"]["batch_size"] * int(world),
            "processes": int(world), "wall_time_s": round(ck["elapsed_s"], 1),
            "run_wall_time_s": _run_wall_time(src, ck),
            "profile_source": ck["config"].get("profile_source", "n/a"),
            "optimizer": ck["config"]["optimizer"], "lr": ck["config"]["lr"], "hardware": ck.get("hardware", "")}


def export(name: str, checkpoints: dict[str, str | Path], meta: dict | None = None,
           stage_meta: dict[str, dict] | None = None, out_dir: str | Path | None = None) -> Path:
    """Write shipped weights (compact fp16) and their JSON record.

    Parameters
    ----------
    name
        Model name (``hsa``): files ``<name>-<stage>.pt`` and ``<name>.json``.
    checkpoints
        ``stage -> checkpoint`` produced by :func:`train_stage`, or ``name``
        itself to keep that stage as the existing record ships it (file,
        sha256 and history unchanged), so only the retrained stages move.
    meta
        Metadata common to all stages (training data, metrics, ...).
    stage_meta
        Extra metadata per stage.
    out_dir
        Default: the package's ``weights/`` directory.

    Returns
    -------
    pathlib.Path
        The JSON record file.
    """
    import torch

    from . import weights as W

    out_dir = Path(out_dir) if out_dir else W.WEIGHTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"name": name, "meta": dict(meta or {}), "stages": {}}
    old = out_dir / f"{name}.json"
    prev: dict[str, Any] = {}
    if old.exists():
        prev = json.loads(old.read_text())
        for k, v in prev.get("meta", {}).items():
            if k not in ("code_version", "date"):  # these describe this export, not the last one
                doc["meta"].setdefault(k, v)
    doc["meta"].setdefault("layout", "fixed")
    doc["meta"].setdefault("code_version", code_version())
    doc["meta"].setdefault("date", time.strftime("%Y-%m-%d"))
    shipped_doc = prev
    for stage in STAGES:
        if str(checkpoints[stage]) == name:  # keep the shipped stage as it is
            kept = shipped_doc.get("stages", {}).get(stage)
            if not kept or W.sha256_file(out_dir / kept["file"]) != kept["sha256"]:
                raise ValueError(f"{stage}: cannot keep the shipped {name!r} stage: no record or file with a "
                                 f"matching sha256 in {out_dir}")
            doc["stages"][stage] = kept
            continue
        ck = torch.load(checkpoints[stage], weights_only=False, map_location="cpu")
        info = W.export_state_dict(ck["model"], stage, out_dir / f"{name}-{stage}.pt")
        cfg = {k: v for k, v in ck["config"].items() if k not in ("data",)}
        hist = ck.get("history", [])
        # a final record, or (best.pt, saved mid-run) the evaluation it was saved on
        final = [h for h in hist if h.get("final")] or [h for h in hist if any(k.startswith("val_") for k in h)]
        if "soup" in ck:  # shared runs once, then every member, then the average
            n = len(ck["soup"])
            members = [dict(r, soup_member=f"{i + 1}/{n}") for i, r in enumerate(ck["soup"])]
            shares = [r.get("soup_weight") for r in members]
            how = ("uniform weight average" if None in shares else
                   "weight average (" + " : ".join(f"{x:g}" for x in shares) + ")")
            last = {"run": str(checkpoints[stage]), "steps": 0, "batch_size": 0, "processes": 1,
                    "wall_time_s": 0.0, "run_wall_time_s": 0.0,
                    "profile_source": members[-1].get("profile_source", "n/a"),
                    "optimizer": f"{how} of the {n} members", "lr": "n/a",
                    "hardware": ck.get("hardware", "")}
            runs = [*ck.get("shared_runs", []), *members, last]
            final = [{"soup_of": n}]
        else:
            runs = None
        # follow the chain of initialisations (pre-training runs) for the full budget
        chain, prev, src = [], ck, checkpoints[stage]
        while runs is None:
            chain.append(_run_entry(src, prev))
            init = prev["config"].get("init")
            if not init or not Path(str(init)).is_file():
                break
            prev, src = torch.load(init, weights_only=False, map_location="cpu"), init
        earlier: list[dict] = []
        if runs is not None:
            chain = runs[::-1]
        elif init and not Path(str(init)).is_file():
            # started from shipped weights: their record's runs come first (same name: the record replaced here)
            shipped = json.loads((out_dir / f"{init}.json").read_text()) if (out_dir / f"{init}.json").is_file() \
                else {}
            earlier = shipped.get("stages", {}).get(stage, {}).get("meta", {}).get("training_runs", [])
            if not earlier:
                raise ValueError(f"{stage}: the chain starts from shipped weights {init!r}, but no record "
                                 f"{out_dir / (str(init) + '.json')} lists their training runs")
            chain[-1]["init"] = f"shipped {init} weights"
        chain = chain + earlier[::-1]
        rec_meta = {
            "recipe": cfg,
            "steps": sum(c["steps"] for c in chain),
            "windows_seen": sum(c["steps"] * int(c["batch_size"]) for c in chain),
            "wall_time_s": round(sum(c["run_wall_time_s"] for c in chain), 1),
            "training_runs": chain[::-1],
            "hardware": ck.get("hardware", ""),
            "final_validation": final[-1] if final else {},
            "omitted": info["omitted"],
            "stored_params": info["stored_params"],
            "bytes": info["bytes"],
            "storage": "fp16 (BatchNorm statistics and positional table fp32)",
            **(stage_meta or {}).get(stage, {}),
        }
        doc["stages"][stage] = {"file": info["file"], "sha256": info["sha256"], "meta": rec_meta}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
