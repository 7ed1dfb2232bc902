"""Training entry point: each stage learns on tiny data; checkpoints resume; data helpers."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from mire2e_viz import trainingdata as td
from mire2e_viz.encoding import pad_codes

torch = pytest.importorskip("torch")
from mire2e_viz.train import default_config, focal_loss, pair_partners, register_cli, train_stage  # noqa: E402

N = 16


@pytest.fixture(scope="module")
def tiny() -> dict[str, np.ndarray]:
    """16 random 60–100 nt sequences with hand-free labels from RNAfold (or a stand-in)."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGU"), int(rng.integers(60, 101)))) for _ in range(N)]
    try:
        import RNA

        folds = [RNA.fold(s) for s in seqs]
    except ImportError:  # pragma: no cover - ViennaRNA is a dependency
        folds = [("(" * 10 + "." * (len(s) - 20) + ")" * 10, -10.0) for s in seqs]
    codes, lengths = pad_codes(seqs)
    prof = np.stack([td.profile_from_dotbracket(d) for d, _ in folds])
    return {
        "codes": codes,
        "lengths": lengths,
        "profile": prof,
        "mfe_raw": np.array([abs(m) / len(s) for (_, m), s in zip(folds, seqs, strict=True)], np.float32),
        "label": (np.arange(N) % 2).astype(np.int64),
        "split": np.array(["train"] * N),
    }


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in open(out / "history.jsonl") if '"loss"' in line]


@pytest.mark.parametrize("stage", ["structure", "mfe", "classifier"])
def test_loss_falls(stage, tiny, tmp_path):
    cfg = {"max_steps": 8, "batch_size": N, "profile_source": "target", "warmup": 0.0,
           "schedule": "constant", "threads": 1}
    ckpt = train_stage(stage, cfg, out=tmp_path, arrays=tiny, progress=False)
    losses = _losses(tmp_path)
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    saved = torch.load(ckpt, weights_only=False, map_location="cpu")
    assert saved["step"] == 8 and saved["config"]["stage"] == stage
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0


@pytest.mark.parametrize("stage", ["structure", "mfe", "classifier"])
def test_bf16_autocast_trains_and_keeps_fp32_weights(stage, tiny, tmp_path):
    """``"autocast": "bf16"`` trains (loss falls), tracks the fp32 loss, and saves fp32 weights."""
    from mire2e_viz.model import build
    from mire2e_viz.train import _step_loss, autocast

    cfg = {"max_steps": 8, "batch_size": N, "profile_source": "target", "warmup": 0.0,
           "schedule": "constant", "threads": 1, "autocast": "bf16"}
    if stage == "structure":
        cfg.update(pair_attention=0.1, pair_attention_layers=[0, 5])
    ckpt = train_stage(stage, cfg, out=tmp_path, arrays=tiny, progress=False)
    losses = _losses(tmp_path)
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    saved = torch.load(ckpt, weights_only=False, map_location="cpu")
    assert saved["config"]["autocast"] == "bf16"
    assert all(t.dtype in (torch.float32, torch.int64) for t in saved["model"].values())
    # one batch, same weights: the bf16 loss is the fp32 loss to bf16 precision
    model = build(stage)
    model.load_state_dict(saved["model"])
    model.eval()
    full = {**saved["config"], "autocast": None}
    if stage == "structure":
        arrays = {**tiny, "partner": pair_partners(tiny["profile"], tiny["lengths"])}
    else:
        arrays = tiny
    idx = np.arange(N)
    with torch.no_grad():
        l32 = float(_step_loss(stage, model, arrays, idx, full, "cpu", 0.0, None))
        with autocast(saved["config"], "cpu"):
            l16 = float(_step_loss(stage, model, arrays, idx, saved["config"], "cpu", 0.0, None))
    assert l16 == pytest.approx(l32, rel=0.05, abs=1e-3)


def test_unknown_autocast_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="autocast 'fp16'"):
        train_stage("mfe", {"max_steps": 1, "autocast": "fp16", "profile_source": "target"},
                    out=tmp_path, arrays=tiny, progress=False)


def test_pair_attention_loss_falls(tiny, tmp_path):
    """The auxiliary attention loss (base-pair partners) trains and leaves the checkpoint a plain model."""
    cfg = {"max_steps": 8, "batch_size": N, "warmup": 0.0, "schedule": "constant", "threads": 1,
           "pair_attention": 1.0, "lr": 1e-3}
    ckpt = train_stage("structure", cfg, out=tmp_path, arrays=tiny, progress=False)
    losses = _losses(tmp_path)
    assert losses[0] > 1.0  # the cross-entropy over 100 key positions dominates at the start
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    from mire2e_viz.model import StructurePredictor

    StructurePredictor().load_state_dict(torch.load(ckpt, weights_only=False)["model"])


def test_data_parallel_two_processes(tiny, tmp_path):
    """torchrun with two processes: gradients are averaged each step; rank 0 alone logs and saves."""
    import subprocess
    import sys

    np.savez(tmp_path / "tiny.npz", **tiny)
    cfg = {"data": str(tmp_path / "tiny.npz"), "max_steps": 6, "batch_size": 8, "profile_source": "target",
           "threads": 1, "eval_every": 3}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mire2e_viz.train", "mfe", "--out", str(tmp_path / "run"), "--config", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(_losses(tmp_path / "run")) == 6  # one log, written by rank 0
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert saved["step"] == 6 and saved["config"]["stage"] == "mfe"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2


def test_pair_partners_from_reference_encoding():
    prof = np.array([td.profile_from_dotbracket("((.((...)).))..")])
    got = pair_partners(prof, np.array([15]))[0]
    assert got[:15].tolist() == [12, 11, 2, 9, 8, 5, 6, 7, 4, 3, 10, 1, 0, 13, 14]
    assert (got[15:] == -1).all()


def test_forward_with_attention_matches_forward():
    from mire2e_viz import encoding
    from mire2e_viz.model import StructurePredictor

    torch.manual_seed(0)
    model = StructurePredictor().eval()
    x = torch.from_numpy(encoding.EYE)[torch.randint(0, 4, (3, 100))]
    pe = torch.from_numpy(encoding.structure_pe(np.array([100, 80, 60])))
    with torch.no_grad():
        prof, scores = model.forward_with_attention(x, pe, layers=(0, 3))
        assert torch.allclose(prof, model(x, pe), atol=1e-6)
        layer = model.transformer_encoder.layers[3]
        h = torch.cat([model.conv_in(x.transpose(1, 2)).transpose(1, 2), pe.float()], 2)
        for lyr in model.transformer_encoder.layers[:3]:
            h = lyr(h)
        _, w = layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)
    assert sorted(scores) == [0, 3] and scores[3].shape == (3, 2, 100, 100)
    assert torch.allclose(torch.softmax(scores[3], -1), w, atol=1e-5)


def test_resume_continues(tiny, tmp_path):
    cfg = {"max_steps": 3, "batch_size": 8, "profile_source": "target", "threads": 1}
    train_stage("mfe", cfg, out=tmp_path, arrays=tiny, progress=False)
    ckpt = train_stage("mfe", {**cfg, "max_steps": 5}, out=tmp_path, arrays=tiny,
                       resume=tmp_path / "last.pt", progress=False)
    assert torch.load(ckpt, weights_only=False, map_location="cpu")["step"] == 5
    assert len(_losses(tmp_path)) == 5


def test_weight_ema_is_the_running_average_and_resumes(tiny, tmp_path):
    from mire2e_viz.model import build

    decay = 0.5
    cfg = {"max_steps": 1, "batch_size": 8, "profile_source": "target", "threads": 1, "weight_ema": decay,
           "warmup": 0.0, "schedule": "constant"}
    one = torch.load(train_stage("classifier", cfg, out=tmp_path / "one", arrays=tiny, progress=False),
                     weights_only=False, map_location="cpu")
    # torch's EMA copies the first update: after one step the average equals the raw weights
    assert all(torch.equal(one["model"][k], one["raw_model"][k]) for k in one["model"])
    two = torch.load(train_stage("classifier", {**cfg, "max_steps": 2}, out=tmp_path / "one", arrays=tiny,
                                 resume=tmp_path / "one" / "last.pt", progress=False),
                     weights_only=False, map_location="cpu")
    k = next(n for n, v in two["raw_model"].items() if v.is_floating_point() and not torch.equal(v, one["raw_model"][n]))
    expect = decay * one["model"][k] + (1 - decay) * two["raw_model"][k]
    assert torch.allclose(two["model"][k], expect, atol=1e-6)
    assert not torch.equal(two["model"][k], two["raw_model"][k])
    assert two["step"] == 2
    net = build("classifier")
    net.load_state_dict(two["model"])  # the exported weights load into the plain network


def test_seeded_runs_agree(tiny, tmp_path):
    cfg = {"max_steps": 3, "batch_size": 8, "profile_source": "target", "threads": 1}
    a = train_stage("mfe", cfg, out=tmp_path / "a", arrays=tiny, progress=False)
    b = train_stage("mfe", cfg, out=tmp_path / "b", arrays=tiny, progress=False)
    sa = torch.load(a, weights_only=False)["model"]
    sb = torch.load(b, weights_only=False)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_focal_loss_matches_formula():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([1, 1])  # both pre-miRNA (class 0)
    p0 = torch.softmax(logits, 1)[:, 0]
    expected = (-(1 - p0) ** 4 * torch.log(p0)).mean()
    assert torch.allclose(focal_loss(logits, target, 1.0, 4.0), expected)


def test_cli_registers_train():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    args = parser.parse_args(["train", "mfe", "--out", "x", "--max-steps", "3", "--device", "cpu"])
    assert args.stage == "mfe" and args.max_steps == 3 and callable(args.func)
    assert default_config("classifier")["gamma"] == 4.0


def test_family_keys():
    assert td.family_key("hsa-mir-24-2") == "mir-24"
    assert td.family_key("hsa-mir-23a") == "mir-23"
    assert td.family_key("mmu-let-7a-1") == "let-7"


def test_dinucleotide_shuffle_preserves_pairs():
    rng = np.random.default_rng(1)
    s = "GAUGCUGAAGGUGCAGGACCGAGCCAGCAGCCACAGCCGUUCUGCACUUCUGACC"
    t = td.dinuc_shuffle(s, rng)
    assert sorted(zip(s, s[1:], strict=False)) == sorted(zip(t, t[1:], strict=False))
    assert t[0] == s[0] and t[-1] == s[-1]


def test_profile_encoding():
    p = td.profile_from_dotbracket("((..))", length=8)
    assert p.tolist() == [1, 1, 0, 0, -1, -1, 0, 0]


def test_near_identical_hairpins_cluster_together():
    rng = np.random.default_rng(2)
    base = "".join(rng.choice(list("ACGU"), 80))
    mutant = base[:40] + ("A" if base[40] != "A" else "C") + base[41:]
    other = "".join(rng.choice(list("ACGU"), 80))
    cl = td.cluster_hairpins(["hsa-mir-1000", "mmu-mir-2000", "hsa-mir-3000"], [base, mutant, other])
    assert cl[0] == cl[1] != cl[2]


def test_embed_places_sequence():
    rng = np.random.default_rng(3)
    window, offset = td.embed("ACGUACGUAC", "G" * 500, rng)
    assert len(window) == 100 and window[offset : offset + 10] == "ACGUACGUAC"


def test_hard_negative_mining_and_best_checkpoint(tiny, tmp_path):
    from mire2e_viz.model import build
    from mire2e_viz.train import hard_negatives

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    cfg = {"max_steps": 6, "batch_size": 8, "profile_source": "target", "threads": 1, "eval_every": 2,
           "eval_windows": 4, "hard_negative_fraction": 0.5, "hard_negative_pool": 3, "keep_best": "-val_loss"}
    train_stage("classifier", cfg, out=tmp_path, arrays=arrays, progress=False)
    hist = [json.loads(line) for line in open(tmp_path / "history.jsonl")]
    evals = [r for r in hist if "val_loss" in r]
    best = torch.load(tmp_path / "best.pt", weights_only=False, map_location="cpu")
    assert best["step"] == min(evals, key=lambda r: r["val_loss"])["step"]
    # the mined pool is the top of the model's own ranking of the negatives
    model = build("classifier").eval()
    neg = np.flatnonzero(arrays["label"][:12] == 0)
    top = hard_negatives(model, arrays, neg, {"profile_source": "target"}, torch.device("cpu"), 3)
    from mire2e_viz.encoding import one_hot

    with torch.inference_mode():
        s = model(torch.from_numpy(one_hot(arrays["codes"][neg])), torch.from_numpy(arrays["profile"][neg]),
                  torch.from_numpy(arrays["mfe_raw"][neg])).numpy()
    assert set(top) == set(np.argsort(-s)[:3])


def test_strand_decoys_are_antisense_and_follow_the_split():
    from mire2e_viz.encoding import reverse_complement

    ws = td.strand_decoy_table()
    names, seqs, species = td.load_hairpins()
    split = dict(zip(names, td.make_split(0)["split"], strict=True))
    by_name = dict(zip(names, seqs, strict=True))
    known = set()
    for s in seqs:
        known |= {s[i : i + 20] for i in range(len(s) - 19)}
    assert (ws.label == 0).all() and len(ws) > 2000
    assert set(ws.kind) == {"hairpin_rc", "hairpin_rc_ctx"}
    for seq, kind, name, sl in zip(ws.seqs, ws.kind, ws.name, ws.split, strict=True):
        rc = reverse_complement(by_name[name.removesuffix("_rc")])
        assert td.center_crop(rc) in seq if kind == "hairpin_rc_ctx" else seq == td.center_crop(rc)
        assert sl == split[name.removesuffix("_rc")]
        assert not any(seq[i : i + 20] in known for i in range(len(seq) - 19)) or kind == "hairpin_rc_ctx"
    assert ws.meta["dropped_antisense_loci"] > 0


def test_strand_decoys_per_species():
    from mire2e_viz.train import decoy_species

    assert decoy_species({"strand_decoys": False}) == []
    assert decoy_species({"strand_decoys": True}) == ["hsa"]
    assert decoy_species({"strand_decoys": ["mmu", "hsa", "mmu", "rno"]}) == ["hsa", "mmu", "rno"]
    names, _, species = td.load_hairpins()
    sp_of = dict(zip(names, species, strict=True))
    ws = td.strand_decoy_table(species="mmu")
    assert len(ws) > 1000
    assert {sp_of[n.removesuffix("_rc")] for n in ws.name} == {"mmu"}


def test_export_records_chain_and_best_checkpoint(tiny, tmp_path):
    from mire2e_viz.train import export
    from mire2e_viz.weights import sha256_file

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    base = {"max_steps": 4, "batch_size": 8, "profile_source": "target", "threads": 1, "eval_every": 2,
            "eval_windows": 4}
    cks = {}
    for stage in ("structure", "mfe"):
        cks[stage] = train_stage(stage, base, out=tmp_path / stage, arrays=arrays, progress=False)
    pre = train_stage("classifier", base, out=tmp_path / "clf_pre", arrays=arrays, progress=False)
    train_stage("classifier", {**base, "init": str(pre), "keep_best": "val_aupr"}, out=tmp_path / "clf",
                arrays=arrays, progress=False)
    cks["classifier"] = tmp_path / "clf" / "best.pt"
    rec = export("tiny", cks, meta={"summary": "test"}, out_dir=tmp_path / "w")
    doc = json.loads(rec.read_text())
    for stage, st in doc["stages"].items():
        assert st["sha256"] == sha256_file(tmp_path / "w" / st["file"]), stage
    runs = doc["stages"]["classifier"]["meta"]["training_runs"]
    # the chain runs from the pre-training (named by its folder) to the best checkpoint (named by its file)
    assert [r["run"] for r in runs] == [str(tmp_path / "clf_pre"), str(tmp_path / "clf" / "best.pt")]
    assert "val_aupr" in doc["stages"]["classifier"]["meta"]["final_validation"]
    assert runs[-1]["run_wall_time_s"] >= runs[-1]["wall_time_s"]  # the whole run, not only up to best.pt
    # a re-export keeps the record's metrics but states its own code version
    from mire2e_viz.train import code_version

    doc["meta"].update(code_version="0.0.0+git.old", metrics={"kept": 1})
    rec.write_text(json.dumps(doc))
    again = json.loads(export("tiny", cks, out_dir=tmp_path / "w").read_text())
    assert again["meta"]["metrics"] == {"kept": 1} and again["meta"]["code_version"] == code_version()


def _with_decoys(tiny) -> dict[str, np.ndarray]:
    """The tiny set as 4 hairpins (2 isolated, 2 in context) with their decoys, plus other negatives."""
    arrays = {k: v.copy() for k, v in tiny.items()}
    kind = np.array(["genomic"] * N, dtype=object)
    name = np.array([f"neg{i}" for i in range(N)], dtype=object)
    label = np.zeros(N, np.int64)
    for i, (k, nm) in enumerate([("hairpin", "h1"), ("hairpin_ctx", "h1"), ("hairpin", "h2"), ("hairpin_ctx", "h2")]):
        kind[i], name[i], label[i] = k, nm, 1
        kind[4 + i], name[4 + i] = k.replace("hairpin", "hairpin_rc"), nm + "_rc"
    arrays.update(kind=kind.astype(str), name=name.astype(str), label=label, species=np.where(label == 1, "hsa", ""))
    return arrays


def test_strand_pairs_match_each_hairpin_to_its_own_decoy(tiny):
    from mire2e_viz.train import strand_pairs

    pairs = strand_pairs(_with_decoys(tiny))
    assert pairs[:4].tolist() == [4, 5, 6, 7]  # hairpin -> hairpin_rc, hairpin_ctx -> hairpin_rc_ctx
    assert (pairs[4:] == -1).all()  # decoys and other negatives have no partner
    # tables without names (the miRBoost folds, say) have no pairs
    assert (strand_pairs(tiny) == -1).all()


def test_strand_rank_loss_prefers_the_sense_strand():
    from mire2e_viz.train import strand_rank_loss

    good = torch.tensor([[0.0, 0.0], [3.0, -3.0], [-3.0, 3.0]])  # one other row, then sense, then decoy
    bad = torch.tensor([[0.0, 0.0], [-3.0, 3.0], [3.0, -3.0]])
    assert float(strand_rank_loss(good, 1)) < 0.01 < 11.0 < float(strand_rank_loss(bad, 1))
    assert float(strand_rank_loss(good, 0)) == 0.0


def test_strand_pair_training_raises_the_sense_strand(tiny, tmp_path):
    """With the ranking loss the hairpins move above their decoys; ``val_strand`` measures it."""
    arrays = _with_decoys(tiny)
    arrays["split"] = np.array(["train"] * N)
    cfg = {"max_steps": 30, "batch_size": 8, "profile_source": "target", "threads": 1, "lr": 1e-3,
           "strand_pair_weight": 1.0, "pos_fraction": 0.5, "warmup": 0.0, "schedule": "constant"}
    ck = train_stage("classifier", cfg, out=tmp_path, arrays=arrays, progress=False)
    from mire2e_viz.encoding import one_hot
    from mire2e_viz.model import build

    model = build("classifier")
    model.load_state_dict(torch.load(ck, weights_only=False, map_location="cpu")["model"])
    model.eval()
    with torch.inference_mode():
        s = model(torch.from_numpy(one_hot(arrays["codes"][:8])), torch.from_numpy(arrays["profile"][:8]),
                  torch.from_numpy(arrays["mfe_raw"][:8])).numpy()
    assert (s[:4] > s[4:8]).all(), s
    # validation reports the share of held-out hairpins above their own decoy
    arrays["split"] = np.array(["val" if i in (2, 3, 6, 7) else "train" for i in range(N)])
    train_stage("classifier", {**cfg, "max_steps": 2, "eval_every": 2, "eval_windows": 8}, out=tmp_path / "v",
                arrays=arrays, progress=False)
    rec = [json.loads(line) for line in open(tmp_path / "v" / "history.jsonl") if "val_strand" in line][-1]
    assert rec["val_strand_pairs"] == 2 and 0.0 <= rec["val_strand"] <= 1.0


def test_strand_pair_weight_needs_decoys(tiny, tmp_path):
    cfg = {"max_steps": 2, "batch_size": 8, "profile_source": "target", "threads": 1, "strand_pair_weight": 1.0}
    with pytest.raises(ValueError, match="strand_decoys"):
        train_stage("classifier", cfg, out=tmp_path, arrays=tiny, progress=False)


def test_set_dropout_reaches_every_dropout():
    from mire2e_viz.model import build
    from mire2e_viz.train import set_dropout

    for stage in ("structure", "classifier"):
        model = build(stage)
        n = set_dropout(model, 0.0)
        assert n > 0
        assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
        assert all(m.dropout == 0.0 for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention))
    # in training mode a dropout-free model is deterministic
    model = build("structure")
    set_dropout(model, 0.0)
    model.train()
    oh = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 100)), 4).float()
    from mire2e_viz.encoding import structure_pe

    pe = torch.from_numpy(structure_pe(np.array([100, 100])))
    torch.testing.assert_close(model(oh, pe), model(oh, pe))


def test_export_after_fine_tuning_shipped_weights_keeps_their_history(tiny, tmp_path):
    """A run started from the shipped weights (``--resume hsa``) is recorded after their training runs."""
    import shutil

    from mire2e_viz import weights as W
    from mire2e_viz.train import export

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    base = {"max_steps": 2, "batch_size": 8, "profile_source": "target", "threads": 1, "eval_every": 2,
            "eval_windows": 4}
    cks = {stage: train_stage(stage, base, out=tmp_path / stage, resume="hsa", arrays=arrays, progress=False)
           for stage in ("structure", "mfe", "classifier")}
    assert json.loads((tmp_path / "mfe" / "config.json").read_text())["init"] == "hsa"
    shutil.copy(W.WEIGHTS_DIR / "hsa.json", tmp_path / "hsa.json")
    shipped = json.loads((tmp_path / "hsa.json").read_text())
    doc = json.loads(export("hsa", cks, out_dir=tmp_path).read_text())
    for stage in ("structure", "mfe", "classifier"):
        before = shipped["stages"][stage]["meta"]
        after = doc["stages"][stage]["meta"]
        assert after["training_runs"][:-1] == before["training_runs"]
        assert after["training_runs"][-1]["run"] == str(tmp_path / stage)
        assert after["training_runs"][-1]["init"] == "shipped hsa weights"
        assert after["steps"] == before["steps"] + 2
    # without the record of the shipped weights the history would be lost: refused
    (tmp_path / "hsa.json").unlink()
    with pytest.raises(ValueError, match="training runs"):
        export("hsa", cks, out_dir=tmp_path)


def test_predict_stages_reuses_an_earlier_profile(tiny):
    """Stage 2 on a stored stage-1 prediction equals the full cascade (scripts/cascade_table.py --from)."""
    from mire2e_viz.train import predict_stages

    full = predict_stages(tiny, "hsa", "hsa", progress=False)
    assert full["pred_profile"].shape == (N, 100) and np.abs(full["pred_profile"]).max() <= 1.0
    again = predict_stages({**tiny, "pred_profile": full["pred_profile"]}, None, "hsa", progress=False)
    np.testing.assert_allclose(again["pred_mfe_raw"], full["pred_mfe_raw"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pred_profile"):
        predict_stages(tiny, None, "hsa", progress=False)


def test_cascade_table_from_an_earlier_table_keeps_its_description(tiny, tmp_path):
    """scripts/cascade_table.py --from: new stage-2 estimates, the source's windows described as before."""
    import importlib.util
    from pathlib import Path

    from mire2e_viz.train import predict_stages

    spec = importlib.util.spec_from_file_location(
        "cascade_table", Path(__file__).resolve().parents[1] / "scripts" / "cascade_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    src = tmp_path / "table_anim.npz"
    np.savez(src, **tiny, **predict_stages(tiny, "hsa", None, progress=False))
    src.with_suffix(".json").write_text(json.dumps(
        {"structure": "runs/s5/last.pt", "mfe": "hsa", "rows": N, "decoy_species": ["hsa", "mmu"], "animals": True}))
    out = tmp_path / "table_anim_m.npz"
    assert script.main(["--structure", "hsa", "--from", str(src), "--mfe", "hsa", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["structure"] == "runs/s5/last.pt" and meta["animals"] is True
    assert meta["decoy_species"] == ["hsa", "mmu"] and meta["source"] == str(src) and meta["rows"] == N
    with np.load(out) as z:
        want = predict_stages(tiny, "hsa", "hsa", progress=False)["pred_mfe_raw"]
        np.testing.assert_allclose(z["pred_mfe_raw"], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(z["codes"], tiny["codes"])


def test_cascade_table_mfe_extra_needs_mfe_when_the_source_has_estimates(tiny, tmp_path, capsys):
    """--from T --mfe-extra: a source with MFE estimates needs --mfe, refused before any slow pass."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "cascade_table", Path(__file__).resolve().parents[1] / "scripts" / "cascade_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    src = tmp_path / "t.npz"
    np.savez(src, **tiny, pred_profile=tiny["profile"], pred_mfe_raw=tiny["mfe_raw"])
    with pytest.raises(SystemExit) as err:
        script.main(["--structure", "hsa", "--from", str(src), "--mfe-extra", "--out", str(tmp_path / "o.npz")])
    assert err.value.code == 2
    assert f"{src} holds MFE estimates (pred_mfe_raw): pass --mfe" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_benchmark_disjoint_drops_shared_sequences_and_touched_families():
    from mire2e_viz.encoding import reverse_complement

    names, seqs, _ = td.load_hairpins()
    split = td.make_split(0)
    cluster = np.array(split["cluster"])
    # a benchmark positive from a family with several members, and an unrelated hairpin
    sizes = np.bincount(cluster)

    def k20(s):
        return {s[p : p + 20] for p in range(len(s) - 19)}

    # the mate shares no 20-mer with the positive: only the family rule can drop it
    i, mate = next((int(a), int(b)) for a in np.flatnonzero(sizes[cluster] >= 2)
                   for b in np.flatnonzero(cluster == cluster[a])
                   if b != a and k20(seqs[a]).isdisjoint(k20(seqs[b]) | k20(reverse_complement(seqs[b]))))
    free = int(np.flatnonzero(sizes[cluster] == 1)[0])
    negative = "GAUCCAGUUACGGAUCCAAGCUUAGCCGAUAGGCUAACCGUUAGCCAUGGAUCG"  # a benchmark negative
    rows = [  # (sequence, name)
        (td.center_crop(seqs[mate]), names[mate]),  # a paralog/ortholog of the benchmark positive
        (td.center_crop(reverse_complement(seqs[mate])), names[mate] + "_rc"),  # its strand decoy
        (td.center_crop(seqs[free]), names[free]),  # unrelated hairpin: kept
        (td.center_crop(seqs[free][::-1]), names[free] + "_shuf"),  # kept
        ("AAAA" + negative[10:40] + "CCCC", "coding_1"),  # shares a 30-mer with a benchmark negative
        ("CCCC" + reverse_complement(negative)[5:35], "coding_2"),  # shares one with its other strand
        ("ACGU" * 20, "genomic_1"),  # kept
    ]
    codes, lengths = pad_codes([s for s, _ in rows])
    table = {"codes": codes, "lengths": lengths, "name": np.array([n for _, n in rows])}
    keep = td.benchmark_disjoint(table, [seqs[i].replace("U", "T").lower(), negative], [seqs[i]])
    assert keep.tolist() == [False, False, True, True, False, False, True]


def test_export_keeps_shipped_stages_named_by_the_record(tiny, tmp_path):
    from mire2e_viz.train import export

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    base = {"max_steps": 2, "batch_size": 8, "profile_source": "target", "threads": 1, "eval_every": 2,
            "eval_windows": 4}
    cks = {s: train_stage(s, base, out=tmp_path / s, arrays=arrays, progress=False)
           for s in ("structure", "mfe", "classifier")}
    first = json.loads(export("tiny", cks, out_dir=tmp_path / "w").read_text())
    # a later classifier fine-tune from the shipped one; structure and MFE stay as shipped
    clf2 = train_stage("classifier", {**base, "seed": 1}, out=tmp_path / "clf2", arrays=arrays, progress=False)
    again = json.loads(export("tiny", {"structure": "tiny", "mfe": "tiny", "classifier": clf2},
                              out_dir=tmp_path / "w").read_text())
    assert again["stages"]["structure"] == first["stages"]["structure"]
    assert again["stages"]["mfe"] == first["stages"]["mfe"]
    assert again["stages"]["classifier"]["sha256"] != first["stages"]["classifier"]["sha256"]
    (tmp_path / "w" / first["stages"]["mfe"]["file"]).write_bytes(b"not the shipped file")
    with pytest.raises(ValueError, match="mfe: cannot keep"):
        export("tiny", {"structure": "tiny", "mfe": "tiny", "classifier": clf2}, out_dir=tmp_path / "w")


def test_soup_averages_members_and_export_records_each_run(tiny, tmp_path):
    """A weight soup is the element-wise mean of its members; its record lists every member's run."""
    from mire2e_viz.train import export, load_state, soup

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    base = {"max_steps": 3, "batch_size": 8, "profile_source": "target", "threads": 1, "eval_every": 3,
            "eval_windows": 4}
    pre = train_stage("classifier", base, out=tmp_path / "pre", arrays=arrays, progress=False)
    members = [train_stage("classifier", {**base, "init": str(pre), "seed": s}, out=tmp_path / f"m{s}",
                           arrays=arrays, progress=False) for s in (1, 2, 3)]
    out = soup("classifier", members, tmp_path / "soup.pt")
    avg, states = load_state(out, "classifier"), [load_state(m, "classifier") for m in members]
    key = "FF1.weight"
    assert not torch.equal(states[0][key], states[1][key])  # the seeds did move the members apart
    torch.testing.assert_close(avg[key], (states[0][key] + states[1][key] + states[2][key]) / 3)
    # a soup is one ordinary network: it loads strictly and scores a batch
    from mire2e_viz.model import build

    model = build("classifier")
    model.load_state_dict(avg)

    cks = {"structure": train_stage("structure", base, out=tmp_path / "s", arrays=arrays, progress=False),
           "mfe": train_stage("mfe", base, out=tmp_path / "f", arrays=arrays, progress=False),
           "classifier": out}
    doc = json.loads(export("tiny", cks, out_dir=tmp_path / "w").read_text())
    meta = doc["stages"]["classifier"]["meta"]
    runs = meta["training_runs"]
    assert [r["run"] for r in runs] == [*(str(m.parent) for m in members), str(out)]
    assert [r["soup_member"] for r in runs[:3]] == ["1/3", "2/3", "3/3"]
    assert [r["seed"] for r in runs[:3]] == [1, 2, 3] and {r["init"] for r in runs[:3]} == {str(pre)}
    assert meta["steps"] == 9 and meta["recipe"]["soup"] == [str(m) for m in members]

    with pytest.raises(ValueError, match="at least two"):
        soup("classifier", members[:1], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="a structure checkpoint, not classifier"):
        soup("classifier", [members[0], cks["structure"]], tmp_path / "x.pt")
    torch.save(avg, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare.pt: not a training checkpoint"):
        soup("classifier", [members[0], tmp_path / "bare.pt"], tmp_path / "x.pt")


def test_soup_with_shipped_member_keeps_the_shared_history(tiny, tmp_path):
    """Souping the shipped weights with a fine-tune of them: the shipped runs before its last are shared."""
    from mire2e_viz import weights as W
    from mire2e_viz.train import soup

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    ft = train_stage("classifier", {"max_steps": 1, "batch_size": 8, "profile_source": "target", "threads": 1},
                     out=tmp_path / "ft", resume="hsa", arrays=arrays, progress=False)
    ck = torch.load(soup("classifier", ["hsa", ft], tmp_path / "soup.pt"), weights_only=False)
    shipped_runs = W.get("hsa")["classifier"].meta["training_runs"]
    assert ck["shared_runs"] == shipped_runs[:-1]
    assert ck["soup"][0]["run"] == f"shipped hsa weights ({shipped_runs[-1]['run']})"
    assert ck["soup"][1]["run"] == str(tmp_path / "ft")


def test_soup_of_fine_tunes_of_shipped_weights_keeps_their_history(tiny, tmp_path):
    """Two fine-tunes with ``"init": "hsa"``: the record lists the shipped runs first, then both members."""
    from mire2e_viz import weights as W
    from mire2e_viz.train import export, soup

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    cfg = {"max_steps": 2, "batch_size": 8, "profile_source": "target", "threads": 1, "init": "hsa"}
    fts = [train_stage("mfe", {**cfg, "seed": s}, out=tmp_path / f"ft{s}", arrays=arrays, progress=False)
           for s in (0, 1)]
    ck = torch.load(soup("mfe", fts, tmp_path / "soup.pt"), weights_only=False)
    shipped_runs = W.get("hsa")["mfe"].meta["training_runs"]
    assert ck["shared_runs"] == shipped_runs and len(shipped_runs) > 1
    assert [m["init"] for m in ck["soup"]] == ["shipped hsa weights"] * 2
    doc = json.loads(export("hsa", {"structure": "hsa", "mfe": tmp_path / "soup.pt", "classifier": "hsa"},
                            out_dir=_copy_shipped(tmp_path / "w")).read_text())
    meta = doc["stages"]["mfe"]["meta"]
    assert meta["training_runs"][: len(shipped_runs)] == shipped_runs
    assert meta["steps"] == sum(r["steps"] for r in shipped_runs) + 2 * 2


def test_weighted_soup_keeps_half_of_the_shipped_weights(tiny, tmp_path):
    """``weights=[2, 1, 1]``: half the shipped soup, a quarter of each fine-tune; the record says so."""
    from mire2e_viz.train import export, load_state, soup

    arrays = dict(tiny, split=np.array(["train"] * 12 + ["val"] * 4))
    cfg = {"max_steps": 2, "batch_size": 8, "profile_source": "target", "threads": 1}
    fts = [train_stage("classifier", {**cfg, "seed": s}, out=tmp_path / f"ft{s}", resume="hsa", arrays=arrays,
                       progress=False) for s in (0, 1)]
    out = soup("classifier", ["hsa", *fts], tmp_path / "soup.pt", weights=[2, 1, 1])
    avg = load_state(out, "classifier")
    parts = [load_state(m, "classifier") for m in ("hsa", *fts)]
    key = "FF1.weight"
    torch.testing.assert_close(avg[key], 0.5 * parts[0][key] + 0.25 * parts[1][key] + 0.25 * parts[2][key])
    ck = torch.load(out, weights_only=False)
    assert [m.get("soup_weight") for m in ck["soup"]] == [0.5, 0.25, 0.25]
    assert ck["config"]["soup_weights"] == [0.5, 0.25, 0.25]
    doc = json.loads(export("hsa", {"structure": "hsa", "mfe": "hsa", "classifier": out},
                            out_dir=_copy_shipped(tmp_path / "w")).read_text())
    runs = doc["stages"]["classifier"]["meta"]["training_runs"]
    assert runs[-1]["optimizer"] == "weight average (0.5 : 0.25 : 0.25) of the 3 members"
    assert [r.get("soup_weight") for r in runs[-4:-1]] == [0.5, 0.25, 0.25]
    # equal weights are the uniform soup, and bad weights are refused
    torch.testing.assert_close(load_state(soup("classifier", fts, tmp_path / "u.pt", weights=[3, 3]), "classifier"),
                               load_state(soup("classifier", fts, tmp_path / "v.pt"), "classifier"))
    with pytest.raises(ValueError, match="2 weights for 3 members"):
        soup("classifier", ["hsa", *fts], tmp_path / "x.pt", weights=[1, 1])
    with pytest.raises(ValueError, match="positive"):
        soup("classifier", fts, tmp_path / "x.pt", weights=[1, 0])


def _copy_shipped(dest):
    import shutil

    from mire2e_viz import weights as W

    shutil.copytree(W.WEIGHTS_DIR, dest)
    return dest


def test_positive_species_all_counts_every_hairpin():
    from mire2e_viz.train import _training_rows

    arrays = {"codes": np.zeros((5, 100), np.uint8), "label": np.array([1, 1, 1, 0, 0]),
              "species": np.array(["hsa", "cel", "dme", "", ""]), "split": np.array(["train"] * 5)}
    train, _ = _training_rows("classifier", arrays, {"positive_species": "all"})
    assert train.tolist() == [0, 1, 2, 3, 4]
    train, _ = _training_rows("classifier", arrays, {"positive_species": ["hsa"]})
    assert train.tolist() == [0, 3, 4]


def test_mirbase_dat_gives_every_stem_loop_and_the_animal_filter():
    recs = td.read_mirbase_dat()
    by_name = {r["name"]: r for r in recs}
    assert len(recs) > 38000 and len(by_name) == len(recs)
    mir21 = by_name["hsa-mir-21"]
    assert mir21["species"] == "hsa" and len(mir21["seq"]) == 72
    assert mir21["seq"].startswith("UGUCGGGUAGCUUAUCAGAC") and set(mir21["seq"]) <= set("ACGU")
    assert mir21["description"] == "Homo sapiens miR-21 stem-loop"
    assert td.is_animal_hairpin(by_name["cel-let-7"]) and td.is_animal_hairpin(mir21)
    assert not td.is_animal_hairpin(by_name["ath-MIR156a"])  # plant
    assert not td.is_animal_hairpin(next(r for r in recs if r["name"].startswith("ebv-")))  # virus


def test_animal_hairpins_never_touch_the_validation_split():
    from mire2e_viz.encoding import reverse_complement

    names, seqs, species, counts = td.animal_hairpins(0)
    assert counts["kept"] == len(names) > 10_000 and len(set(species)) > 100
    assert not set(species) & set(td.SPECIES)
    split = td.make_split(0)
    names4, seqs4, _ = td.load_hairpins()
    val = [s for s, sl in zip(seqs4, split["split"], strict=True) if sl == "val"]
    val_fams = {td.family_key(n) for n, sl in zip(names4, split["split"], strict=True) if sl == "val"}
    assert not {td.family_key(n) for n in names} & val_fams
    k20 = set()
    for s in val + [r["hairpin"] for r in td.load_deepmircut()]:
        k20 |= td._kmers(s, 20) | td._kmers(reverse_complement(s), 20)
    assert all(td._kmers(s, 20).isdisjoint(k20) for s in seqs)
    assert not td.kmer_jaccard_pairs(seqs, val, 8, 0.3)
    ws = td.animal_window_table(0)
    assert (ws.split == "train").all()
    assert set(ws.kind) == {"hairpin", "hairpin_ctx", "shuffled", "hairpin_rc", "hairpin_rc_ctx"}
    assert ((ws.label == 1) == np.isin(ws.kind, ["hairpin", "hairpin_ctx"])).all()
    assert set(ws.species[ws.label == 1]) == set(species) and set(ws.species[ws.label == 0]) == {""}


def test_mfe_extra_windows_are_fresh_and_training_only():
    from mire2e_viz.encoding import reverse_complement

    ws = td.mfe_extra_table(0)
    assert (ws.split == "train").all() and len(ws) > 100_000
    assert set(ws.kind) == {"hairpin_ctx", "shuffled", "hairpin_rc_ctx", "coding_ctx", "genomic"}
    assert all(n.rsplit("_", 1)[-1].startswith("mx") or n.startswith("genomic_mx_") for n in ws.name)
    # fresh windows: most differ from the base table's (a hairpin of exactly 100 nt repeats by design)
    base, _ = td.load_windows(0)
    assert len(set(ws.seqs) & set(base.seqs)) < 0.02 * len(ws)
    # every hairpin window comes from a training hairpin of the four species or a guarded other-species one,
    # no CODING window from a validation record, no background from the chr21 validation block (either strand)
    split = td.make_split(0)
    names4, _, _ = td.load_hairpins()
    allowed = {n for n, sl in zip(names4, split["split"], strict=True) if sl == "train"} | set(td.animal_hairpins(0)[0])
    hp = np.isin(ws.kind, ["hairpin_ctx", "hairpin_rc_ctx", "shuffled"])
    assert {n.rsplit("_mx", 1)[0] for n in ws.name[hp]} <= allowed
    coding_val = set(base.name[(base.kind == "coding") & (base.split == "val")])
    assert not {n.rsplit("_mx", 1)[0] for n, k in zip(ws.name, ws.kind, strict=True) if k == "coding_ctx"} & coding_val
    chr21 = td.read_genome(td.data_dir() / "genomic" / "hg38_chr21_background_1Mb.fa")
    val_block = chr21[slice(*td.CHR21_VAL)]
    probe = [w for w, k in zip(ws.seqs, ws.kind, strict=True) if k == "genomic"][:200]
    assert not any(w in val_block or reverse_complement(w) in val_block for w in probe)


def test_benchmark_disjoint_drops_other_species_orthologs():
    names, seqs, species, _ = td.animal_hairpins(0)
    names4, seqs4, _ = td.load_hairpins()
    fam4 = {td.family_key(n): i for i, n in enumerate(names4)}
    # an other-species hairpin whose family has a four-species member, and one whose family has none
    j = next(j for j, n in enumerate(names) if td.family_key(n) in fam4
             and not td.kmer_jaccard_pairs([seqs[j]], [seqs4[fam4[td.family_key(n)]]], 8, 0.3))
    free = next(j for j, n in enumerate(names) if td.family_key(n) not in fam4)
    positive = seqs4[fam4[td.family_key(names[j])]]  # the benchmark positive: the four-species member
    rows = [(td.center_crop(seqs[j]), names[j]), (td.center_crop(seqs[j])[::-1], names[j] + "_shuf"),
            (td.center_crop(seqs[free]), names[free])]
    codes, lengths = pad_codes([s for s, _ in rows])
    table = {"codes": codes, "lengths": lengths, "name": np.array([n for _, n in rows])}
    keep = td.benchmark_disjoint(table, [positive], [positive])
    assert keep.tolist() == [False, False, True]


def test_cuda_without_gpu_warns_and_trains_on_the_cpu(tiny, tmp_path):
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        pytest.skip("this machine has a GPU")
    cfg = {"max_steps": 2, "batch_size": 4, "device": "cuda", "threads": 1}
    with pytest.warns(RuntimeWarning, match="sees no CUDA GPU"):
        ckpt = train_stage("structure", cfg, out=tmp_path, arrays=tiny, progress=False)
    saved = torch.load(ckpt, weights_only=False, map_location="cpu")
    assert saved["step"] == 2 and "CUDA" not in saved["hardware"]
