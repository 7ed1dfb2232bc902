"""Shipped weights of the cascade, with torchvision-style records.

Each model name (``hsa``) has a JSON record file ``mire2e_viz/weights/<name>.json``
that lists, per stage, the weights file, its sha256 and metadata (training data
with counts, recipe, measured metrics, date, code version, classifier layout).
``MODEL_CARD.md`` is generated from these records (``scripts/make_model_card.py``).

Storage
-------
Floating-point parameters are stored in fp16 (normalisation statistics and the
classifier's positional table in fp32) and returned as fp32. The modules kept
only for state-dict compatibility with the reference (``encoder_layer.*``, the
classifier's ``med2tag.*``) are never called, so they are not stored: their
keys and shapes are listed in the record (``meta["omitted"]``) and
:meth:`Weights.state_dict` fills them with zeros, so ``load_state_dict`` stays
strict.

This module does not import torch at import time.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
STAGES = ("structure", "mfe", "classifier")

#: state-dict key prefixes of the compatibility-only modules, per stage
UNUSED_PREFIXES = {
    "structure": ("encoder_layer.",),
    "mfe": (),
    "classifier": ("encoder_layer.", "med2tag."),
}
#: keys kept in fp32 (suffixes)
FP32_SUFFIXES = ("running_mean", "running_var", "PE.pe")


def sha256_file(path: str | pathlib.Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Weights:
    """Record of one shipped weights file (in the style of torchvision's ``Weights``).

    Attributes
    ----------
    name
        Model name, e.g. ``"hsa"``.
    stage
        ``"structure"``, ``"mfe"`` or ``"classifier"``.
    file
        File name inside ``mire2e_viz/weights/``.
    sha256
        Hex sha256 of that file.
    meta
        Training data with counts, recipe, measured metrics, date, code version,
        classifier ``layout`` and the omitted compatibility keys.
    """

    name: str
    stage: str
    file: str
    sha256: str
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def path(self) -> pathlib.Path:
        """Absolute path of the weights file."""
        return WEIGHTS_DIR / self.file

    def verify(self) -> None:
        """Check that the file exists and matches the recorded sha256.

        Raises
        ------
        WeightsError
            If the file is missing or its checksum differs.
        """
        if not self.path.is_file():
            raise WeightsError(f"weights file {self.path} for {self.name}/{self.stage} is missing")
        got = sha256_file(self.path)
        if got != self.sha256:
            raise WeightsError(
                f"weights file {self.path} for {self.name}/{self.stage} has sha256 {got}, "
                f"but its record says {self.sha256}: the file is corrupt or was replaced"
            )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Verify, then load the state dict (fp32, omitted compatibility keys zero-filled).

        The file is read with ``torch.load(weights_only=True, map_location="cpu")``.
        """
        import torch

        self.verify()
        try:
            sd = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - any unpickling failure is a weights problem
            raise WeightsError(f"cannot load {self.path}: {err}") from None
        out = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
        for key, shape in self.meta.get("omitted", {}).items():
            out[key] = torch.zeros(shape, dtype=torch.float32)
        return out


def _records(name: str) -> dict[str, Weights] | None:
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    common = doc.get("meta", {})
    out = {}
    for stage, rec in doc.get("stages", {}).items():
        meta = {**common, **rec.get("meta", {})}
        out[stage] = Weights(doc.get("name", name), stage, rec["file"], rec["sha256"], meta)
    return out


def available() -> list[str]:
    """Model names with all three stages shipped (record and file present)."""
    names = []
    for p in sorted(WEIGHTS_DIR.glob("*.json")):
        recs = _records(p.stem)
        if recs and all(s in recs and recs[s].path.is_file() for s in STAGES):
            names.append(p.stem)
    return names


def get(name: str = "hsa") -> dict[str, Weights]:
    """Records of a shipped model, ``stage -> Weights``.

    Raises
    ------
    WeightsError
        If ``name`` is not shipped; the message lists the available names.
    """
    recs = _records(name) if name and "/" not in name else None
    if not recs or not all(s in recs for s in STAGES):
        avail = available()
        raise WeightsError(f"no shipped weights named {name!r}; available: {', '.join(avail) or 'none'}")
    return {s: recs[s] for s in STAGES}


def model_document(name: str) -> dict[str, Any]:
    """The raw JSON record document of a model (for the model card)."""
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"no record file {path}")
    return json.loads(path.read_text())


def export_state_dict(state: dict[str, torch.Tensor], stage: str, path: str | pathlib.Path) -> dict[str, Any]:
    """Write a compact state dict for shipping and describe what was left out.

    Parameters
    ----------
    state
        Full fp32 state dict of one stage.
    stage
        Stage name (selects the compatibility-only keys to omit).
    path
        Output ``.pt`` file.

    Returns
    -------
    dict
        ``{"file", "sha256", "bytes", "omitted": {key: shape}, "stored_params"}``.
    """
    import torch

    omit = UNUSED_PREFIXES[stage]
    keep, omitted = {}, {}
    for k, v in state.items():
        if k.startswith(omit):
            omitted[k] = list(v.shape)
            continue
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.float() if k.endswith(FP32_SUFFIXES) else v.half()
        keep[k] = v.contiguous()
    path = pathlib.Path(path)
    torch.save(keep, path)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "omitted": omitted,
        "stored_params": int(sum(v.numel() for v in keep.values())),
    }
