"""The miRe2e cascade: structure → MFE → classifier, with every stage's output exposed."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import encoding
from .errors import WeightsError
from .model import Classifier, Layout, MFEEstimator, StructurePredictor, n_parameters

STAGE_NAMES = ("structure", "mfe", "classifier")


@dataclass
class Window:
    """Every stage's output for one window.

    Attributes
    ----------
    sequence
        The window as an RNA string (its real length, without padding).
    profile
        Predicted pairing value per nucleotide, in [-1, 1]
        ('(' = 1, '.' = 0, ')' = -1); same length as ``sequence``.
    mfe
        Estimated minimum free energy, kcal/mol (≤ 0).
    mfe_raw
        The MFE network's raw output, |MFE| per nucleotide.
    score
        Pre-miRNA probability.
    name, start, end, strand
        Where the window comes from, when known (0-based half-open,
        + strand coordinates).
    """

    sequence: str
    profile: np.ndarray
    mfe: float
    mfe_raw: float
    score: float
    name: str = ""
    start: int | None = None
    end: int | None = None
    strand: str = "+"

    def __repr__(self) -> str:
        loc = f" {self.name}:{self.start}-{self.end}({self.strand})" if self.start is not None else ""
        return f"<Window{loc} len={len(self.sequence)} score={self.score:.3f} mfe={self.mfe:.1f} kcal/mol>"


@dataclass
class CascadeResult:
    """Outputs of :meth:`Cascade.run` for N windows (numpy arrays).

    Attributes
    ----------
    sequences
        The input sequences.
    lengths
        Real length of each, shape ``(N,)``.
    profile
        Pairing profile, shape ``(N, 100)``; zero beyond each real length.
    mfe
        MFE estimate in kcal/mol, shape ``(N,)``: ``-max(mfe_raw, 0) * length``.
    mfe_raw
        The MFE network's raw output, |MFE| per nucleotide, shape ``(N,)``.
    score
        Pre-miRNA probability, shape ``(N,)``.
    untrained
        Names of the stages that run with random weights.
    """

    sequences: list[str]
    lengths: np.ndarray
    profile: np.ndarray
    mfe: np.ndarray
    mfe_raw: np.ndarray
    score: np.ndarray
    untrained: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, i: int) -> Window:
        n = int(self.lengths[i])
        return Window(
            sequence=self.sequences[i].upper().replace("T", "U"),
            profile=self.profile[i, :n].copy(),
            mfe=float(self.mfe[i]),
            mfe_raw=float(self.mfe_raw[i]),
            score=float(self.score[i]),
            name=f"sequence {i + 1}",
        )

    def to_frame(self):
        """Tidy DataFrame: one row per sequence (sequence, length, score, mfe, mfe_raw)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "sequence": self.sequences,
                "length": self.lengths,
                "score": self.score,
                "mfe": self.mfe,
                "mfe_raw": self.mfe_raw,
            }
        )


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_state_dict(path: str | os.PathLike, module: torch.nn.Module, stage: str) -> None:
    """Load a ``.pkl``/``.pt`` state dict into ``module`` safely and strictly.

    The file is read with ``torch.load(weights_only=True)``, so no arbitrary
    object is ever unpickled.

    Raises
    ------
    WeightsError
        If the file is missing or unreadable, or if keys are missing, extra,
        or of the wrong shape; the message names them.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    try:
        sd = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported in one line
        raise WeightsError(f"{path}: not a loadable weights file ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state_dict (dict of tensors), found {type(sd).__name__}")
    check_state_dict(sd, module, f"{path} ({stage})")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})


def check_state_dict(sd: dict, module: torch.nn.Module, what: str) -> None:
    """Raise :class:`WeightsError` naming missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = []

    def short(keys: list[str]) -> str:
        return ", ".join(keys[:6]) + (f" … (+{len(keys) - 6} more)" if len(keys) > 6 else "")

    if missing:
        problems.append(f"missing keys: {short(missing)}")
    if extra:
        problems.append(f"unexpected keys: {short(extra)}")
    if shapes:
        problems.append(f"wrong shapes: {short(shapes)}")
    if problems:
        raise WeightsError(f"{what}: does not match the {type(module).__name__} layout; " + "; ".join(problems))


class Cascade:
    """The three miRe2e stages, run together in eval and inference mode.

    Parameters
    ----------
    structure, mfe, classifier
        The stage modules.
    device
        ``"cuda"``, ``"cpu"`` or a :class:`torch.device`; default CUDA if
        available, else CPU.
    untrained
        Names of stages that carry random weights (shown in every summary,
        and scores are then labelled untrained).
    name
        A label for the weights (``"hsa"``, ``"untrained"``, a file name …).
    bf16
        Shortcut for ``precision="bf16"``.
    precision
        ``"fp32"`` (default) or ``"bf16"``: bfloat16 autocast, for GPUs and
        CPUs with bf16 units (elsewhere it is slower). ``bench/scan_throughput.py``
        checks it against fp32 on every score and profile value.
    batch_size
        Windows per forward pass.

    Examples
    --------
    >>> from mire2e_viz import Cascade
    >>> cascade = Cascade.pretrained()                     # doctest: +SKIP
    >>> out = cascade.run(["UGAGGUAGUAGGUUGUAUAGUUUUAGGGUCACACCCACCACUGGGAGAUAACUAUACAAUCUACUGUCUUUCC"])
    >>> out.score, out.mfe, out.profile.shape              # doctest: +SKIP
    """

    def __init__(
        self,
        structure: StructurePredictor,
        mfe: MFEEstimator,
        classifier: Classifier,
        device: str | torch.device | None = None,
        untrained: Sequence[str] = (),
        name: str = "custom",
        bf16: bool = False,
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.structure = structure.to(self.device).eval()
        self.mfe = mfe.to(self.device).eval()
        self.classifier = classifier.to(self.device).eval()
        self.untrained = tuple(s for s in STAGE_NAMES if s in set(untrained))
        self.name = name
        if bf16:
            precision = "bf16"
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
        self.precision = precision
        self.bf16 = precision == "bf16"
        self.batch_size = int(batch_size or (64 if self.device.type == "cpu" else 1024))
        self._pe_full = torch.from_numpy(encoding.structure_pe(np.array([encoding.WINDOW])))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_files(
        cls,
        structure: str | os.PathLike | None = None,
        mfe: str | os.PathLike | None = None,
        classifier: str | os.PathLike | None = None,
        layout: Layout = "reference",
        device: str | torch.device | None = None,
        seed: int = 0,
        **kwargs,
    ) -> Cascade:
        """Build a cascade from state-dict files (e.g. the original miRe2e ``.pkl`` files).

        Parameters
        ----------
        structure, mfe, classifier
            Paths to each stage's state dict. A stage that is not given is
            randomly initialised (seeded) and flagged as untrained.
        layout
            Classifier layout: ``"reference"`` (default here) reproduces
            miRe2e 0.17's batch-mixing reshape, needed for its original
            weights; ``"fixed"`` is batch-independent.
        device
            Where to run.
        seed
            Seed for the random initialisation of missing stages.
        """
        torch.manual_seed(seed)
        modules = {"structure": StructurePredictor(), "mfe": MFEEstimator(), "classifier": Classifier(layout)}
        paths = {"structure": structure, "mfe": mfe, "classifier": classifier}
        untrained = []
        for stage, path in paths.items():
            if path is None:
                untrained.append(stage)
            else:
                load_state_dict(path, modules[stage], stage)
        given = [Path(p).name for p in paths.values() if p is not None]
        name = "+".join(given) if given else "untrained"
        return cls(**modules, device=device, untrained=untrained, name=name, **kwargs)

    @classmethod
    def untrained_model(cls, seed: int = 0, layout: Layout = "fixed", **kwargs) -> Cascade:
        """A cascade with random weights, for demos and tests. Its scores mean nothing."""
        torch.manual_seed(seed)
        return cls(
            StructurePredictor(), MFEEstimator(), Classifier(layout),
            untrained=STAGE_NAMES, name=f"untrained (random, seed {seed})", **kwargs,
        )

    @classmethod
    def pretrained(cls, name: str = "hsa", device: str | torch.device | None = None, **kwargs) -> Cascade:
        """Load mire2e-viz's own shipped weights (sha256-verified, ``weights_only=True``).

        Parameters
        ----------
        name
            Weights set, e.g. ``"hsa"`` (human). See :func:`mire2e_viz.weights.available`.
        device
            Where to run.
        """
        from . import weights as W

        records = W.get(name)
        layout = records["classifier"].meta.get("layout", "fixed")
        modules = {"structure": StructurePredictor(), "mfe": MFEEstimator(), "classifier": Classifier(layout)}
        for stage, module in modules.items():
            sd = records[stage].state_dict()
            check_state_dict(sd, module, f"{records[stage].file} ({stage})")
            module.load_state_dict(sd)
        cascade = cls(**modules, device=device, name=name, **kwargs)
        cascade.weights = records
        return cascade

    # ------------------------------------------------------------------ properties
    @property
    def is_trained(self) -> bool:
        """True when every stage carries trained weights."""
        return not self.untrained

    @property
    def recommended_threshold(self) -> float:
        """Score threshold for calling candidates: the shipped weights' measured operating point.

        For shipped weights this is the threshold at which 90 % of held-out
        human hairpins, each placed in real genomic background, score at or
        above it (``metrics.genomic.threshold_recall90`` of the weights
        record, rounded down to two decimals so that the recall stays at
        least 90 %). The genomic false-positive rate at that threshold is in
        ``MODEL_CARD.md``. Scores are not calibrated probabilities, so this
        operating point differs between weight sets. Cascades without a
        record (state-dict files, untrained models) use 0.5.
        """
        records = getattr(self, "weights", None)
        if records and self.is_trained:
            try:
                thr = float(next(iter(records.values())).meta["metrics"]["genomic"]["threshold_recall90"])
            except (KeyError, TypeError, ValueError, StopIteration):
                thr = None
            if thr is not None and 0.0 < thr < 1.0:
                return math.floor(thr * 100 + 1e-9) / 100
        return 0.5

    def describe(self) -> str:
        """One-line summary, saying loudly when stages are untrained."""
        parts = [f"miRe2e cascade '{self.name}' on {self.device}"]
        parts.append(f"classifier layout '{self.classifier.layout}'")
        if self.precision != "fp32":
            parts.append(f"precision {self.precision}")
        if self.untrained:
            parts.append("UNTRAINED stages: " + ", ".join(self.untrained) + " (scores are not predictions)")
        n = sum(n_parameters(m) for m in (self.structure, self.mfe, self.classifier))
        parts.append(f"{n:,} parameters")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"<Cascade {self.describe()}>"

    def to(self, device: str | torch.device) -> Cascade:
        """Move every stage to ``device`` and return self."""
        self.device = torch.device(device)
        for m in (self.structure, self.mfe, self.classifier):
            m.to(self.device)
        return self

    # ------------------------------------------------------------------ running
    def _autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def run_codes(self, codes: np.ndarray, lengths: np.ndarray | None = None, batch_size: int | None = None,
                  progress: bool = False) -> dict[str, np.ndarray]:
        """Run the cascade on encoded windows.

        Parameters
        ----------
        codes
            ``uint8`` codes, shape ``(N, 100)`` (see :mod:`mire2e_viz.encoding`).
        lengths
            Real lengths, shape ``(N,)``; default all 100.
        batch_size
            Windows per forward pass (default ``self.batch_size``).
        progress
            Show a ``tqdm.auto`` progress bar.

        Returns
        -------
        dict
            ``profile`` (N, 100) float32, ``mfe_raw``, ``mfe`` and ``score`` (N,) float32.
        """
        codes = np.asarray(codes, dtype=np.uint8)
        n = codes.shape[0]
        full = lengths is None
        if full:
            lengths = np.full(n, encoding.WINDOW, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        bs = int(batch_size or self.batch_size)
        profile = np.empty((n, encoding.WINDOW), np.float32)
        raw = np.empty(n, np.float32)
        score = np.empty(n, np.float32)
        eye = torch.from_numpy(encoding.EYE).to(self.device)
        starts = range(0, n, bs)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=(n + bs - 1) // bs, desc="cascade", unit="batch")
        with torch.inference_mode(), self._autocast():
            for s in starts:
                c = torch.from_numpy(codes[s : s + bs]).to(self.device, non_blocking=True)
                x = eye[c.long()]
                ln = lengths[s : s + bs]
                if full or (ln == encoding.WINDOW).all():
                    pe = self._pe_full.to(self.device).expand(len(ln), -1, -1)
                else:
                    pe = torch.from_numpy(encoding.structure_pe(ln)).to(self.device)
                p = self.structure(x, pe).float()
                m = self.mfe(x, p).float()
                sc = self.classifier(x, p, m).float()
                profile[s : s + bs] = p.cpu().numpy()
                raw[s : s + bs] = m.cpu().numpy()
                score[s : s + bs] = sc.cpu().numpy()
        # positions beyond a short sequence's real length carry no prediction
        pad = np.arange(encoding.WINDOW)[None, :] >= lengths[:, None]
        profile[pad] = 0.0
        mfe = -np.clip(raw, 0.0, None) * lengths.astype(np.float32)
        return {"profile": profile, "mfe_raw": raw, "mfe": mfe, "score": score}

    def run(self, sequences: Sequence[str] | str, batch_size: int | None = None, progress: bool = False) -> CascadeResult:
        """Run every stage on windows of at most 100 nt.

        A sequence shorter than 100 nt is scored as one zero-padded window,
        with its real length in the structure stage's positional features,
        as the reference trains. Longer sequences are refused with a clear
        error: use :func:`mire2e_viz.scan` for them.

        Parameters
        ----------
        sequences
            RNA/DNA strings (ACGU/T, any case; N and IUPAC codes allowed).
        batch_size
            Windows per forward pass.
        progress
            Show a progress bar.

        Returns
        -------
        CascadeResult
            ``.profile`` (N, 100), ``.mfe`` (N,) in kcal/mol, ``.mfe_raw`` and ``.score`` (N,).
        """
        if isinstance(sequences, str):
            sequences = [sequences]
        sequences = list(sequences)
        if not sequences:
            raise ValueError("no sequences given")
        codes, lengths = encoding.pad_codes(sequences)
        if self.untrained:
            warnings.warn(
                f"cascade '{self.name}' has untrained stages ({', '.join(self.untrained)}): "
                "its outputs are not predictions", UserWarning, stacklevel=2,
            )
        out = self.run_codes(codes, lengths, batch_size=batch_size, progress=progress)
        return CascadeResult(sequences=sequences, lengths=lengths, untrained=self.untrained, **out)

    def window(self, sequence: str, name: str = "", start: int | None = None, strand: str = "+") -> Window:
        """Run one window and return a :class:`Window` with every stage's output."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            w = self.run([sequence])[0]
        w.name, w.start, w.strand = name or "window", start, strand
        w.end = None if start is None else start + len(sequence)
        return w
