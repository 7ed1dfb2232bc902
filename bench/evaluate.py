"""Measure the cascade on held-out data (the numbers of MODEL_CARD.md).

Usage::

    python bench/evaluate.py --weights hsa --out data/metrics [--update-record]
    python bench/evaluate.py --checkpoints runs/structure/last.pt runs/mfe/last.pt runs/classifier/last.pt

Everything evaluated here is held out from training (see
:mod:`mire2e_viz.trainingdata`): the validation clusters of the seeded split
(which contain every DeepMirCut hairpin's cluster and the chr19 mir-23/27/24
families), 10 % of the negatives, and chr21 blocks ``[700k, 800k)`` (flanks
for validation hairpins) and ``[800k, 1M)`` (false-positive scan). The
miRBoost cross-validation retrains a classifier per fold (see ``--cv-steps``).

Sections
--------
structure   per-nucleotide 3-class accuracy vs RNAfold (profile rounded at ±0.5) and
            base-pair F1 after decoding the profile to a valid dot-bracket of the
            window's sequence (canonical pairs, as the library decodes; also
            reported without the sequence, from the profile alone).
mfe         Pearson r and MAE (kcal/mol) vs RNAfold, plus the anchor: the published
            miRe2e MFE weights given RNAfold's structures.
classifier  AUPR / AUROC / best F1 on held-out validation windows;
            strand: each validation hairpin against its own reverse complement.
cv          miRBoost human 5-fold CV, folds as given: a classifier trained per fold for a
            fixed number of steps (``--cv-steps``).
cv_nested   the same folds, each fold's classifier stopped at its best AUPR on 10 % of that
            fold's own training split (at most ``--cv-nested-steps``).
cv_transfer (opt-in) the nested protocol, each fold fine-tuning a classifier pre-trained on
            the rows of a cascade table (``--pretrain-table``, written by
            ``scripts/cascade_table.py`` with the same stages 1-2) that share nothing
            with the benchmark: no 20-mer with any of its sequences (either strand), no
            hairpin family that one of its pre-miRNAs touches
            (:func:`mire2e_viz.trainingdata.benchmark_disjoint`).
cv_transfer_soup (opt-in) cv_transfer with ``--soup-seeds`` fine-tunes per fold (each under the
            nested rule), whose weights are averaged into the fold's classifier.
genomic     threshold recovering 90 % of validation hairpins in genomic context,
            false-positive candidate regions per 100 kb (both strands).
localization chr19 example (mir-23a/27a/24-2), DeepMirCut best-window overlap.

A hairpin (or any sequence) longer than 100 nt is scored by its best 100-nt
window (step 5).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mire2e_viz import trainingdata as td  # noqa: E402
from mire2e_viz.encoding import WINDOW, one_hot, pad_codes, reverse_complement, structure_pe  # noqa: E402

ANCHOR_MFE = REPO / ".." / "shared" / "reference" / "original-weights" / "mfe-hsa.pkl"


# --------------------------------------------------------------------- models


def load_models(weights: str | None = "hsa", checkpoints: list[str] | None = None, threads: int = 2) -> dict:
    """The three stages in eval mode, from shipped weights or checkpoints."""
    import torch

    from mire2e_viz import weights as W
    from mire2e_viz.model import build
    from mire2e_viz.train import load_state

    torch.set_num_threads(threads)
    models = {}
    for i, stage in enumerate(("structure", "mfe", "classifier")):
        m = build(stage)
        sd = load_state(checkpoints[i], stage) if checkpoints else W.get(weights)[stage].state_dict()
        m.load_state_dict(sd)
        models[stage] = m.eval()
    return models


def cascade(models: dict, codes: np.ndarray, lengths: np.ndarray, batch: int = 256,
            profile: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run the cascade; returns ``profile``, ``mfe_raw`` and ``prob`` per window.

    With ``profile`` given, stage 1 is skipped and that profile is used.
    """
    import torch

    n = len(codes)
    prof = np.zeros((n, WINDOW), np.float32) if profile is None else profile.astype(np.float32)
    raw = np.zeros(n, np.float32)
    prob = np.zeros(n, np.float32)
    with torch.inference_mode():
        for i in range(0, n, batch):
            sl = slice(i, i + batch)
            oh = torch.from_numpy(one_hot(codes[sl]))
            if profile is None:
                p = models["structure"](oh, torch.from_numpy(structure_pe(lengths[sl])))
                prof[sl] = p.numpy()
            p = torch.from_numpy(prof[sl])
            r = models["mfe"](oh, p)
            raw[sl] = r.numpy()
            if "classifier" in models:
                prob[sl] = models["classifier"](oh, p, r).numpy()
    return {"profile": prof, "mfe_raw": raw, "prob": prob}


def score_sequences(models: dict, seqs: list[str], step: int = 5) -> np.ndarray:
    """Classifier score per sequence; longer than 100 nt: best window (``step`` nt apart)."""
    wins, owner = [], []
    for j, s in enumerate(seqs):
        if len(s) <= WINDOW:
            wins.append(s)
            owner.append(j)
        else:
            starts = list(range(0, len(s) - WINDOW + 1, step))
            if starts[-1] != len(s) - WINDOW:
                starts.append(len(s) - WINDOW)
            for st in starts:
                wins.append(s[st : st + WINDOW])
                owner.append(j)
    codes, lengths = pad_codes(wins)
    prob = cascade(models, codes, lengths)["prob"]
    out = np.full(len(seqs), -1.0)
    np.maximum.at(out, np.array(owner), prob)
    return out


def scan_scores(models: dict, seq: str, step: int) -> list[tuple[int, str, float]]:
    """Score every window of ``seq`` on both strands: ``(start, strand, score)`` (+ coords)."""
    starts = list(range(0, len(seq) - WINDOW + 1, step))
    wins = [seq[s : s + WINDOW] for s in starts]
    wins += [reverse_complement(w) for w in wins]
    codes, lengths = pad_codes(wins)
    prob = cascade(models, codes, lengths)["prob"]
    n = len(starts)
    return [(s, "+", float(prob[i])) for i, s in enumerate(starts)] + [
        (s, "-", float(prob[n + i])) for i, s in enumerate(starts)]


# -------------------------------------------------------------------- metrics


def classification(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """AUPR, AUROC, best F1 and its threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    p, r, t = precision_recall_curve(y, s)
    f1 = 2 * p * r / np.maximum(p + r, 1e-12)
    k = int(np.argmax(f1[:-1])) if len(t) else 0
    return {"aupr": float(average_precision_score(y, s)), "auroc": float(roc_auc_score(y, s)),
            "f1_best": float(f1[k]), "threshold_f1_best": float(t[k]) if len(t) else 0.5,
            "n_pos": int(y.sum()), "n_neg": int((1 - y).sum())}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _val_mix(ws, rng: np.random.Generator, per_kind: dict[str, int], hsa_only: bool = False) -> np.ndarray:
    idx = []
    for kind, n in per_kind.items():
        m = (ws.split == "val") & (ws.kind == kind)
        if hsa_only and kind.startswith("hairpin"):
            m &= ws.species == "hsa"
        cand = np.flatnonzero(m)
        idx.append(np.sort(rng.permutation(cand)[:n]))
    return np.concatenate(idx)


def evaluate_structure_mfe(models: dict, ws, arrays: dict, rng: np.random.Generator, n: int) -> dict:
    import torch

    from mire2e_viz.model import MFEEstimator

    res: dict = {}
    idx = _val_mix(ws, rng, {"hairpin": n, "hairpin_ctx": n, "coding": n, "genomic": n})
    codes, lengths = arrays["codes"][idx], arrays["lengths"][idx]
    out = cascade(models, codes, lengths)
    tgt = arrays["profile"][idx]
    mask = np.arange(WINDOW)[None] < lengths[:, None]
    pred3 = np.where(out["profile"] > 0.5, 1, np.where(out["profile"] < -0.5, -1, 0))
    kinds = ws.kind[idx]
    acc = {k: float((pred3 == tgt)[mask & (kinds == k)[:, None]].mean()) for k in np.unique(kinds)}
    from mire2e_viz import fold

    folds = td.fold_many([ws.seqs[i] for i in idx], progress=False)
    # decoded as the library decodes (fold.compare, plot, widgets): only pairs the window's sequence
    # can form (AU, GC, GU); the profile alone ("unconstrained") is kept for comparison with earlier runs
    f1s, f1u, hits = [], [], 0
    for j, i in enumerate(idx):
        L = int(lengths[j])
        seq, true_db = ws.seqs[i], folds[ws.seqs[i]][0]
        pred_db = fold.dotbracket_from_profile(out["profile"][j, :L], sequence=seq)
        f1s.append(fold.bp_scores(pred_db, true_db)[2])
        f1u.append(fold.bp_scores(fold.dotbracket_from_profile(out["profile"][j, :L]), true_db)[2])
        hits += int((fold.profile_from_dotbracket(pred_db) == tgt[j, :L]).sum())
    f1s, f1u = np.array(f1s), np.array(f1u)
    res["structure"] = {
        "windows": int(len(idx)), "by_kind_windows": {k: int((kinds == k).sum()) for k in np.unique(kinds)},
        "acc3": float((pred3 == tgt)[mask].mean()), "acc3_by_kind": acc,
        "acc3_decoded": hits / int(mask.sum()),
        "bp_f1_mean": float(f1s.mean()), "bp_f1_by_kind": {k: float(f1s[kinds == k].mean()) for k in np.unique(kinds)},
        "bp_f1_mean_unconstrained": float(f1u.mean()),
        "bp_f1_by_kind_unconstrained": {k: float(f1u[kinds == k].mean()) for k in np.unique(kinds)},
        "decoder": "mire2e_viz.fold.dotbracket_from_profile(profile, sequence=window): canonical pairs only",
        "goal_acc3": 0.90,
    }
    true_mfe = arrays["mfe"][idx]
    est = -out["mfe_raw"] * lengths
    res["mfe_mix"] = {"windows": int(len(idx)), "pearson_cascade": pearson(est, true_mfe),
                      "mae_cascade": float(np.abs(est - true_mfe).mean())}

    # anchor set: 400 human hairpins (isolated first, then in context) + 400 CODING windows
    hs = np.flatnonzero((ws.split == "val") & (ws.species == "hsa") & (ws.kind == "hairpin"))
    hc = np.flatnonzero((ws.split == "val") & (ws.species == "hsa") & (ws.kind == "hairpin_ctx"))
    hp = np.concatenate([hs, rng.permutation(hc)[: max(0, 400 - len(hs))]])[:400]
    cd = rng.permutation(np.flatnonzero((ws.split == "val") & (ws.kind == "coding")))[:400]
    aidx = np.concatenate([hp, cd])
    codes, lengths = arrays["codes"][aidx], arrays["lengths"][aidx]
    true_mfe = arrays["mfe"][aidx]
    ours = cascade(models, codes, lengths)
    ours_rf = cascade({"mfe": models["mfe"]}, codes, lengths, profile=arrays["profile"][aidx])
    anchor = MFEEstimator().eval()
    anchor.load_state_dict(torch.load(ANCHOR_MFE, weights_only=True, map_location="cpu"), strict=True)
    anc = cascade({"mfe": anchor}, codes, lengths, profile=arrays["profile"][aidx])
    anc_pred = cascade({"mfe": anchor}, codes, lengths, profile=ours["profile"])
    L = lengths.astype(np.float32)
    rows = {}
    for key, o in (("cascade", ours), ("ours_rnafold_profile", ours_rf),
                   ("anchor_published_rnafold_profile", anc), ("anchor_published_our_profile", anc_pred)):
        est = -o["mfe_raw"] * L
        rows[key] = {"pearson": pearson(est, true_mfe), "mae_kcal": float(np.abs(est - true_mfe).mean())}
    res["mfe"] = {"windows": int(len(aidx)), "human_hairpin_windows": int(len(hp)), "coding_windows": int(len(cd)),
                  **rows, "goal_pearson": 0.97, "goal_mae_kcal": 2.0}
    return res


def evaluate_classifier(models: dict, ws, rng: np.random.Generator, fp_step: int = 20, dmc_step: int = 5,
                        fp_nt: int | None = None, dmc_max: int | None = None, max_val: int | None = None) -> dict:
    res: dict = {}
    val = ws.split == "val"
    pos = val & (ws.species == "hsa") & (ws.label == 1)
    neg = val & (ws.label == 0)
    idx = np.flatnonzero(pos | neg)
    if max_val:
        idx = np.sort(rng.permutation(idx)[:max_val])
    seqs = [ws.seqs[i] for i in idx]
    # isolated hairpins longer than 100 nt: score the full hairpin by its best window
    names, hseqs, _ = td.load_hairpins()
    full = dict(zip(names, hseqs, strict=True))
    n_long = 0
    for j, i in enumerate(idx):
        if ws.kind[i] == "hairpin" and len(full.get(ws.name[i], "")) > WINDOW:
            seqs[j] = full[ws.name[i]]
            n_long += 1
    scores = score_sequences(models, seqs)
    y = ws.label[idx].astype(int)
    kinds = ws.kind[idx]
    res["validation"] = {**classification(y, scores), "long_hairpins_best_window": n_long,
                         "auroc_by_negative_kind": {}}
    from sklearn.metrics import roc_auc_score

    for k in np.unique(kinds[y == 0]):
        m = (y == 1) | (kinds == k)
        res["validation"]["auroc_by_negative_kind"][str(k)] = float(roc_auc_score(y[m], scores[m]))
    for k in ("hairpin", "hairpin_ctx"):
        m = (y == 0) | (kinds == k)
        res["validation"][f"aupr_{k}_only"] = classification(y[m], scores[m])["aupr"]

    res["strand"] = strand_discrimination(models, ws, full)

    # threshold recovering 90 % of validation hairpins placed in genomic context (3 placements each)
    chr21 = td.read_genome(td.data_dir() / "genomic" / "hg38_chr21_background_1Mb.fa")
    bgv = chr21[slice(*td.CHR21_VAL)]
    hval = [full[ws.name[i]] for i in np.flatnonzero(val & (ws.species == "hsa") & (ws.kind == "hairpin"))]
    hval = hval[:max_val] if max_val else hval
    ctx = [td.embed(s, bgv, rng)[0] for s in hval for _ in range(3)]
    ctx_scores = score_sequences(models, ctx)
    thr = float(np.quantile(ctx_scores, 0.10))
    res["genomic"] = {"threshold_recall90": thr, "context_windows": len(ctx),
                      "recall_at_0.5": float((ctx_scores >= 0.5).mean())}
    # false positives on held-out chr21 background, both strands
    fp_seq = chr21[slice(*td.CHR21_FP)][: fp_nt or None]
    t0 = time.time()
    scan = scan_scores(models, fp_seq, fp_step)
    for name, t in (("recall90", thr), ("0.5", 0.5)):
        regions = _regions([(s, st) for s, st, p in scan if p >= t])
        res["genomic"][f"fp_regions_per_100kb_at_{name}"] = regions * 100_000 / len(fp_seq)
        res["genomic"][f"fp_windows_at_{name}"] = int(sum(p >= t for _, _, p in scan))
    res["genomic"].update({"background_nt": len(fp_seq), "strands": 2, "step": fp_step,
                           "windows": len(scan), "scan_s": round(time.time() - t0, 1),
                           "region": f"chr21:{15_279_870 + td.CHR21_FP[0]}-{15_279_870 + td.CHR21_FP[0] + len(fp_seq) - 1}"})
    res["chr19"] = chr19(models, thr)
    res["deepmircut"] = deepmircut(models, dmc_step, dmc_max)
    return res


def strand_discrimination(models: dict, ws, full: dict[str, str]) -> dict:
    """Sense vs antisense: each human validation hairpin against its own reverse complement.

    Both are scored whole, by their best window. Hairpins whose antisense strand
    is itself a miRBase locus are left out (as in ``trainingdata.strand_decoys``).
    """
    from sklearn.metrics import roc_auc_score

    from mire2e_viz.encoding import reverse_complement

    dec = td.strand_decoy_table()
    names = sorted({n.removesuffix("_rc") for n, sl in zip(dec.name, dec.split, strict=True) if sl == "val"})
    sense = score_sequences(models, [full[n] for n in names])
    anti = score_sequences(models, [reverse_complement(full[n]) for n in names])
    y = np.r_[np.ones(len(names)), np.zeros(len(names))]
    return {"hairpins": len(names), "auroc_sense_vs_antisense": float(roc_auc_score(y, np.r_[sense, anti])),
            "share_sense_above_antisense": float((sense > anti).mean()),
            "mean_sense": float(sense.mean()), "mean_antisense": float(anti.mean())}


def _regions(hits: list[tuple[int, str]]) -> int:
    """Candidate regions: windows above threshold merged when they overlap (per strand)."""
    n = 0
    for strand in "+-":
        starts = sorted(s for s, st in hits if st == strand)
        end = -1
        for s in starts:
            if s > end:
                n += 1
            end = max(end, s + WINDOW - 1)
    return n


def chr19(models: dict, thr: float) -> dict:
    """mir-23a / 27a / 24-2 in the miRe2e chr19 example (minus strand), step 1."""
    seq = td.read_genome(td.data_dir() / "genomic" / "mire2e_example_chr19_13836201_13836660_true.fa")
    names, hseqs, _ = td.load_hairpins()
    full = dict(zip(names, hseqs, strict=True))
    loci = {}
    for n in ("hsa-mir-23a", "hsa-mir-27a", "hsa-mir-24-2"):
        rc = reverse_complement(full[n])
        pos = seq.find(rc)
        if pos < 0:
            raise RuntimeError(f"{n} not found on the minus strand of the chr19 example")
        loci[n] = (pos, pos + len(rc))
    scan = scan_scores(models, seq, 1)

    def overlaps(s: int, a: int, b: int) -> bool:
        return s < b and s + WINDOW > a

    # every 100-nt window of the 459-nt locus touches a hairpin, so the windows "not overlapping a
    # hairpin" are those of the miRe2e companion example without any pre-miRNA (600 nt of chr19)
    inside = [p for s, st, p in scan if not any(overlaps(s, a, b) for a, b in loci.values())]
    false_seq = td.read_genome(td.data_dir() / "genomic" / "mire2e_example_chr19_12003600_12004200_false.fa")
    false_scan = scan_scores(models, false_seq, 1)
    outside = max(inside + [p for _, _, p in false_scan])
    out = {"threshold": thr, "best_window_not_overlapping_any_hairpin": outside,
           "non_overlapping_windows": len(inside) + len(false_scan),
           "non_overlapping_source": "chr19 false example (12003600-12004200), both strands, step 1"
           + (f", plus {len(inside)} windows of the locus" if inside else ""),
           "best_window_false_example": max(p for _, _, p in false_scan),
           "hairpins": {}}
    for n, (a, b) in loci.items():
        cover = [p for s, st, p in scan if st == "-" and s <= a and s + WINDOW >= b]
        best = max(cover) if cover else float("nan")
        out["hairpins"][n] = {"local_start": a, "local_end": b, "best_covering_minus_window": best,
                              "above_threshold": bool(best >= thr), "beats_all_non_overlapping": bool(best > outside)}
    out["pass"] = all(h["above_threshold"] and h["beats_all_non_overlapping"] for h in out["hairpins"].values())
    return out


def deepmircut(models: dict, step: int, max_rows: int | None = None) -> dict:
    """Share of DeepMirCut validation entries whose best window overlaps the hairpin."""
    rows = td.load_deepmircut()[: max_rows or None]
    wins, owner, meta = [], [], []
    for j, r in enumerate(rows):
        s = r["seq"]
        starts = list(range(0, max(len(s) - WINDOW, 0) + 1, step))
        if starts[-1] != max(len(s) - WINDOW, 0):
            starts.append(len(s) - WINDOW)
        for st in starts:
            for strand in "+-":
                w = s[st : st + WINDOW]
                wins.append(w if strand == "+" else reverse_complement(w))
                owner.append(j)
                meta.append((st, strand))
    codes, lengths = pad_codes(wins)
    res = cascade(models, codes, lengths)
    prob = res["prob"]
    owner = np.array(owner)
    # the strand call as users get it: scan.call_candidates on every window of each entry (no threshold),
    # whose best region per entry holds the entry's best window and its strand_margin
    import pandas as pd

    from mire2e_viz.scan import call_candidates

    table = pd.DataFrame({"seqname": owner, "start": [m[0] for m in meta], "strand": [m[1] for m in meta],
                          "score": prob, "mfe": -res["mfe_raw"] * lengths})
    table.insert(2, "end", table["start"] + lengths)
    top = call_candidates(table, threshold=-np.inf).groupby("seqname").first()
    hit_any, hit_half, hit_plus = 0, 0, 0
    for j, r in enumerate(rows):
        ids = np.flatnonzero(owner == j)
        k = ids[int(np.argmax(prob[ids]))]
        st, strand = meta[k]
        a, b = r["start"] - 1, r["end"]
        ov = max(0, min(b, st + WINDOW) - max(a, st))
        hit_any += ov > 0
        hit_plus += ov > 0 and strand == "+"
        hit_half += ov >= 0.5 * (b - a) and strand == "+"
    n = len(rows)
    margins, right_strand = top["strand_margin"].to_numpy(), (top["strand"] == "+").to_numpy()
    by_margin = [{"min_margin": t, "share_of_entries": float((margins >= t).mean()),
                  "share_on_annotated_strand": float(right_strand[margins >= t].mean()) if (margins >= t).any()
                  else None} for t in (0.0, 0.05, 0.1, 0.15, 0.2)]
    return {"entries": n, "step": step, "strands": 2, "windows": len(wins),
            "share_best_window_overlaps": hit_any / n,
            "share_best_window_overlaps_same_strand": hit_plus / n,
            "share_best_window_covers_half_same_strand": hit_half / n, "goal": 0.9,
            "strand_margin": by_margin}


# -------------------------------------------------------------- miRBoost CV


def _windows_of(s: str, step: int = 5) -> list[str]:
    if len(s) <= WINDOW:
        return [s]
    starts = list(range(0, len(s) - WINDOW + 1, step))
    if starts[-1] != len(s) - WINDOW:
        starts.append(len(s) - WINDOW)
    return [s[st : st + WINDOW] for st in starts]


_STAGE12: dict[tuple, dict[str, np.ndarray]] = {}


def mirboost_cv(models: dict, steps: int, folds: int = 5, seed: int = 0, inner_val: float = 0.0,
                eval_every: int = 100, init: str | None = None, run_name: str | None = None,
                init_note: str = "a pre-trained classifier", soup_seeds: int = 1) -> dict:
    """Retrain a classifier from scratch per fold on the given folds, evaluate on each fold's val.

    Stage 1 and 2 are the trained (frozen) ones; their outputs are computed
    once per distinct window (center 100 nt of a longer training sequence;
    every window, step 5, of a longer validation sequence, scored by its best).

    With ``inner_val`` > 0 (the nested protocol) that share of each fold's
    training sequences (stratified, seeded) is held out of its training; the
    classifier trains for at most ``steps`` steps and the checkpoint with the
    best AUPR on that inner split, checked every ``eval_every`` steps, scores
    the fold's val split. The fold's val split never chooses anything.

    ``init`` starts every fold's classifier from those weights instead of
    from scratch (a pre-training that must not have seen the benchmark).

    ``soup_seeds`` > 1 (with ``init``) fine-tunes that many seeds per fold,
    each under the same rule, and scores the uniform average of their weights
    (:func:`mire2e_viz.train.soup`); the fold's val split still chooses nothing.
    """
    import torch

    from mire2e_viz.model import build
    from mire2e_viz.train import train_stage

    root = td.data_dir() / "mirboost_benchmark_cv" / "human"
    t0 = time.time()
    data = {}
    for f in range(1, folds + 1):
        tr = [(s, 1) for _, s in td.read_fasta(root / "train" / f"human_pos_train_f{f}.fa")]
        tr += [(s, 0) for _, s in td.read_fasta(root / "train" / f"human_neg_train_f{f}.fa")]
        va = [(s, 1) for _, s in td.read_fasta(root / "val" / f"human_pos_val_f{f}.fa")]
        va += [(s, 0) for _, s in td.read_fasta(root / "val" / f"human_neg_val_f{f}.fa")]
        data[f] = (tr, va)
    uniq = sorted({td.center_crop(s) for f in data for s, _ in data[f][0]}
                  | {w for f in data for s, _ in data[f][1] for w in _windows_of(s)})
    codes, lengths = pad_codes(uniq)
    key = (id(models["structure"]), id(models["mfe"]), len(uniq))
    if key not in _STAGE12:  # both CV protocols share one pass of stages 1-2
        _STAGE12[key] = cascade({k: models[k] for k in ("structure", "mfe")}, codes, lengths)
    out = _STAGE12[key]
    row = {w: i for i, w in enumerate(uniq)}
    stage12_s = round(time.time() - t0, 1)
    per_fold, chosen = [], []
    for f in range(1, folds + 1):
        tr, va = data[f]
        idx = np.array([row[td.center_crop(s)] for s, _ in tr])
        arrays = {"codes": codes[idx], "lengths": lengths[idx], "label": np.array([y for _, y in tr]),
                  "profile": out["profile"][idx], "mfe_raw": out["mfe_raw"][idx],
                  "pred_profile": out["profile"][idx], "pred_mfe_raw": out["mfe_raw"][idx]}
        fold_dir = REPO / "runs" / (run_name or ("cv_inner" if inner_val else "cv")) / f"fold{f}"
        if inner_val:
            y = arrays["label"]
            r = np.random.default_rng([seed, f])
            held = np.zeros(len(y), bool)
            for c in (0, 1):
                ids = r.permutation(np.flatnonzero(y == c))
                held[ids[: int(round(inner_val * len(ids)))]] = True
            arrays["split"] = np.where(held, "val", "train")
        members = []
        for j in range(soup_seeds):
            run = fold_dir if soup_seeds == 1 else fold_dir / f"seed{j}"
            cfg = {"max_steps": steps, "seed": seed + f + 100 * j, "eval_every": 10**9, "ckpt_every": 10**9,
                   "profile_source": "predicted", "init": init}
            if inner_val:
                cfg.update(eval_every=eval_every, eval_windows=10**9, keep_best="val_aupr")
                for old in ("best.pt", "history.jsonl"):
                    (run / old).unlink(missing_ok=True)
            ck = train_stage("classifier", cfg, out=run, arrays=arrays, progress=False)
            if inner_val:
                best = torch.load(run / "best.pt", weights_only=False, map_location="cpu")
                ck = run / "best.pt"
                chosen.append(int(best["step"]))
            members.append(ck)
        if soup_seeds > 1:
            from mire2e_viz.train import soup

            ck = soup("classifier", members, fold_dir / "soup.pt")
        clf = build("classifier")
        clf.load_state_dict(torch.load(ck, weights_only=False, map_location="cpu")["model"])
        clf.eval()
        owner, vidx = [], []
        for j, (s, _) in enumerate(va):
            for w in _windows_of(s):
                owner.append(j)
                vidx.append(row[w])
        vidx = np.array(vidx)
        with torch.inference_mode():
            prob = np.concatenate([
                clf(torch.from_numpy(one_hot(codes[vidx[i : i + 256]])),
                    torch.from_numpy(out["profile"][vidx[i : i + 256]]),
                    torch.from_numpy(out["mfe_raw"][vidx[i : i + 256]])).numpy()
                for i in range(0, len(vidx), 256)])
        score = np.full(len(va), -1.0)
        np.maximum.at(score, np.array(owner), prob)
        per_fold.append(classification(np.array([y for _, y in va]), score))
        print(f"fold {f}: {per_fold[-1]}", flush=True)
    keys = ("aupr", "auroc", "f1_best")
    training = (f"{steps} steps" if not inner_val else
                f"at most {steps} steps, keeping the checkpoint with the best AUPR (checked every {eval_every} "
                f"steps) on {inner_val:.0%} of the fold's train split held out of training (stratified)")
    out = {"folds": per_fold, **{f"{k}_mean": float(np.mean([p[k] for p in per_fold])) for k in keys},
           **{f"{k}_sd": float(np.std([p[k] for p in per_fold])) for k in keys},
           "steps_per_fold": steps, "wall_s": round(time.time() - t0, 1), "stage12_s": stage12_s,
           **({"soup_seeds": soup_seeds} if soup_seeds > 1 else {}),
           "protocol": (f"classifier {'fine-tuned' if init else 'retrained from scratch'} on each fold's train "
                        f"split{', starting from ' + init_note if init else ''} (AdamW lr 1e-4, cosine, "
                        f"focal loss alpha=1 gamma=4, batch 32, {training}, 30% positives per batch) on top "
                        "of the frozen shipped structure and MFE stages; scored on the fold's val split, "
                        "sequences longer than 100 nt by their best window"),
           "goal_aupr": 0.93, "reference": "deepMiRGene AUPR 0.93 / F1 0.85"}
    if inner_val:
        out.update(inner_val=inner_val, eval_every=eval_every, chosen_steps=chosen)
    return out


def pretrain_disjoint(table: str | Path, steps: int = 6000, seed: int = 0, threads: int = 2) -> tuple[Path, dict]:
    """Pre-train a classifier on the rows of a cascade table disjoint from the miRBoost benchmark.

    Positives of every species in the table count; the checkpoint with the best
    AUPR on the table's own validation split (held-out families) is returned
    with a summary of the rows used.
    """
    import torch

    from mire2e_viz.train import train_stage

    path = Path(table)
    if not path.exists():
        raise SystemExit(f"--pretrain-table {path}: no such file; write it with scripts/cascade_table.py "
                         "(the same structure and MFE stages as --weights)")
    z = dict(np.load(path, allow_pickle=False))
    root = td.data_dir() / "mirboost_benchmark_cv" / "human"
    bench = sorted({s for p in root.rglob("*.fa") for _, s in td.read_fasta(p)})
    pos = sorted({s for p in root.rglob("*pos*.fa") for _, s in td.read_fasta(p)})
    keep = td.benchmark_disjoint(z, bench, pos, seed)
    arrays = {k: v[keep] for k, v in z.items()}
    species = sorted(set(arrays["species"][arrays["label"] == 1].tolist()))
    cfg = {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.01, "schedule": "cosine", "max_steps": steps,
           "eval_every": 200, "eval_windows": 2000, "ckpt_every": 10**9, "threads": threads, "seed": seed,
           "keep_best": "val_aupr", "positive_species": species, "pos_fraction": 0.3,
           "profile_source": "predicted"}
    run = REPO / "runs" / "cv_pretrain"
    for old in ("best.pt", "history.jsonl", "last.pt"):
        (run / old).unlink(missing_ok=True)
    train_stage("classifier", cfg, out=run, arrays=arrays, progress=True)
    best = torch.load(run / "best.pt", weights_only=False, map_location="cpu")
    kinds, n = np.unique(np.char.add(arrays["split"], np.char.add(":", arrays["kind"])), return_counts=True)
    summary = {"table": path.name, "rows_kept": int(keep.sum()), "rows_dropped": int((~keep).sum()),
               "rows": dict(zip(kinds.tolist(), n.tolist(), strict=True)), "positive_species": species,
               "steps": steps, "best_step": int(best["step"]),
               "best_val_aupr": next((float(h["val_aupr"]) for h in reversed(best.get("history", []))
                                      if h.get("step") == best["step"] and "val_aupr" in h), None),
               "guard": "no shared 20-mer with any benchmark sequence (either strand); no hairpin cluster "
                        "touched by a benchmark positive (20-mer or 8-mer Jaccard >= 0.3); other animal species' "
                        "hairpins also dropped when they touch a positive or share a family key with a "
                        "dropped cluster"}
    return run / "best.pt", summary


# ------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="hsa")
    ap.add_argument("--checkpoints", nargs=3, metavar=("STRUCTURE", "MFE", "CLASSIFIER"))
    ap.add_argument("--out", default=str(REPO / "data" / "metrics"))
    ap.add_argument("--sections", default="structure,classifier,cv,cv_nested")
    ap.add_argument("--per-kind", type=int, default=250, help="windows per kind for the structure mix")
    ap.add_argument("--cv-steps", type=int, default=300, help="steps per fold (fixed protocol)")
    ap.add_argument("--cv-nested-steps", type=int, default=1500,
                    help="most steps per fold of the nested protocol (section cv_nested)")
    ap.add_argument("--pretrain-table", help="cascade table for section cv_transfer (scripts/cascade_table.py)")
    ap.add_argument("--pretrain-steps", type=int, default=6000, help="pre-training steps of section cv_transfer")
    ap.add_argument("--soup-seeds", type=int, default=4,
                    help="fine-tunes per fold averaged into one classifier (section cv_transfer_soup)")
    ap.add_argument("--fp-step", type=int, default=20)
    ap.add_argument("--dmc-step", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp-nt", type=int, default=None, help="scan only this much of the FP background")
    ap.add_argument("--dmc-max", type=int, default=None, help="only the first N DeepMirCut entries")
    ap.add_argument("--max-val", type=int, default=None, help="subsample validation windows (smoke tests)")
    ap.add_argument("--update-record", action="store_true", help="write metrics into the weights record")
    ap.add_argument("--tag", default="", help="suffix of the metrics file (parallel partial runs)")
    args = ap.parse_args(argv)

    t0 = time.time()
    models = load_models(args.weights, args.checkpoints, args.threads)
    ws, arrays = td.load_windows(args.seed)
    rng = np.random.default_rng(args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.weights if not args.checkpoints else "checkpoints"
    path = out_dir / f"{name}_metrics{args.tag}.json"
    sections = args.sections.split(",")
    # a run of every section replaces the table; a partial run (or --tag) adds to it
    complete = set(sections) >= {"structure", "classifier", "cv", "cv_nested"} and not args.tag
    res = json.loads(path.read_text()) if path.exists() and not complete else {}
    if "structure" in sections:
        res.update(evaluate_structure_mfe(models, ws, arrays, rng, args.per_kind))
        path.write_text(json.dumps(res, indent=1))
    if "classifier" in sections:
        res.update(evaluate_classifier(models, ws, rng, args.fp_step, args.dmc_step, args.fp_nt,
                                       args.dmc_max, args.max_val))
        path.write_text(json.dumps(res, indent=1))
    if "cv" in sections:
        res["mirboost_cv"] = mirboost_cv(models, args.cv_steps)
        path.write_text(json.dumps(res, indent=1))
    if "cv_nested" in sections:
        res["mirboost_cv_nested"] = mirboost_cv(models, args.cv_nested_steps, inner_val=0.1)
        path.write_text(json.dumps(res, indent=1))
    if "cv_transfer" in sections or "cv_transfer_soup" in sections:
        ck, pre = pretrain_disjoint(args.pretrain_table or "", args.pretrain_steps, args.seed, args.threads)
        note = (f"a classifier pre-trained for {pre['steps']} steps (best val AUPR at step {pre['best_step']}) on "
                f"{pre['rows_kept']} windows of {pre['table']} that share nothing with the benchmark")
    if "cv_transfer" in sections:
        res["mirboost_cv_transfer"] = {**mirboost_cv(models, args.cv_nested_steps, inner_val=0.1, init=str(ck),
                                                     run_name="cv_transfer", init_note=note), "pretraining": pre}
        path.write_text(json.dumps(res, indent=1))
    if "cv_transfer_soup" in sections:
        res["mirboost_cv_transfer_soup"] = {
            **mirboost_cv(models, args.cv_nested_steps, inner_val=0.1, init=str(ck), run_name="cv_transfer_soup",
                          init_note=note, soup_seeds=args.soup_seeds), "pretraining": pre}
    from mire2e_viz.train import hardware

    res.setdefault("evaluation", {})
    res["evaluation"].update({"hardware": hardware(), "date": time.strftime("%Y-%m-%d"),
                              f"wall_s_{'+'.join(sections)}": round(time.time() - t0, 1)})
    path.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    if args.update_record and not args.checkpoints:
        from mire2e_viz import weights as W

        rec_path = W.WEIGHTS_DIR / f"{args.weights}.json"
        doc = json.loads(rec_path.read_text())
        parts = [path] if complete else sorted(out_dir.glob(f"{name}_metrics*.json"))  # partial runs (--tag)
        merged: dict = {}
        for part in parts:
            merged.update(json.loads(part.read_text()))
        merged.update(res)
        merged["evaluation"] = {k: v for part in parts
                                for k, v in json.loads(part.read_text()).get("evaluation", {}).items()}
        path.write_text(json.dumps(merged, indent=1))  # the merged table
        doc.setdefault("meta", {})["metrics"] = merged
        rec_path.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
