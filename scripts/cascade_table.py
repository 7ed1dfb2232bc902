"""Write the training windows with a trained cascade's stage 1-2 outputs to one ``.npz``.

The MFE and classifier stages train on the structure stage's predicted
profiles (and the classifier on the MFE stage's estimates too). Predicting
them is the slow part of those runs, so this computes them once, for every
window the classifier may use (the base table plus ``classifier_extra`` and
``strand_decoys``), and the runs read the table with ``{"data": ...}``::

    python scripts/cascade_table.py --structure runs/s5/last.pt --out runs/table_s5.npz
    mire2e-viz train mfe --config '{"data": "runs/table_s5.npz", "init": "hsa", ...}'
    python scripts/cascade_table.py --structure runs/s5/last.pt --mfe runs/mfe5/best.pt \\
        --from runs/table_s5.npz --out runs/table_s5_mfe5.npz
    mire2e-viz train classifier --config '{"data": "runs/table_s5_mfe5.npz", "init": "hsa", ...}'
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--structure", required=True, help="structure checkpoint, state dict or shipped name")
    ap.add_argument("--mfe", help="MFE checkpoint, state dict or shipped name (adds pred_mfe_raw)")
    ap.add_argument("--from", dest="source", help="an earlier table whose pred_profile to reuse")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decoy-species", nargs="+", default=["hsa"], metavar="SP",
                    help="species whose hairpins give strand decoys (default: hsa)")
    ap.add_argument("--animals", action="store_true",
                    help="add the other metazoan miRBase species' hairpins (trainingdata.animal_windows)")
    ap.add_argument("--mfe-extra", action="store_true",
                    help="add trainingdata.mfe_extra (fresh regression windows for the MFE stage); "
                         "with --from, stage 1 runs on the new windows only and they are appended")
    args = ap.parse_args(argv)

    import torch

    from mire2e_viz.train import load_arrays, predict_stages

    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.source and args.mfe_extra:  # stage 1 on the new windows only, appended to the source table
        with np.load(args.source, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "pred_mfe_raw" in arrays and not args.mfe:  # before the slow RNAfold and stage-1 passes
            ap.error(f"{args.source} holds MFE estimates (pred_mfe_raw): pass --mfe for the new windows too")
        from mire2e_viz.trainingdata import mfe_extra

        ws, extra = mfe_extra(0)
        extra = dict(extra, split=ws.split, species=ws.species, kind=ws.kind, name=ws.name)
        extra.update(predict_stages(extra, args.structure, args.mfe))
        missing = sorted(set(arrays) - set(extra))
        if missing:
            ap.error(f"{args.source} has columns the new windows lack: {missing}")
        arrays = {k: np.concatenate([arrays[k], extra[k] if extra[k].dtype.kind == "U" else extra[k].astype(arrays[k].dtype)])
                  for k in arrays}
    elif args.source:  # stage 1 already predicted: reuse it
        with np.load(args.source, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays.update(predict_stages(arrays, None, args.mfe))
    else:
        arrays = load_arrays({"stage": "classifier", "classifier_extra": True,
                              "strand_decoys": args.decoy_species,
                              "animal_hairpins": args.animals, "mfe_extra": args.mfe_extra})
        arrays.update(predict_stages(arrays, args.structure, args.mfe))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    meta = {"structure": args.structure, "mfe": args.mfe, "rows": len(arrays["codes"]),
            "decoy_species": args.decoy_species, "animals": args.animals, "mfe_extra": args.mfe_extra,
            "wall_s": round(time.time() - t0, 1)}
    if args.source:  # the windows (and stage 1) are the source table's: describe them as it does
        src_meta = Path(args.source).with_suffix(".json")
        src = json.loads(src_meta.read_text()) if src_meta.exists() else {}
        meta.update({k: src[k] for k in ("structure", "decoy_species", "animals") if k in src},
                    source=str(args.source))
    Path(args.out).with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
