"""The three networks of the miRe2e cascade, layer for layer.

The layer tables are those of the miRe2e supplementary material (Raad et al.,
Bioinformatics 2022). Module and parameter names are chosen so that every
``state_dict`` is key- and shape-compatible with the reference implementation
(PyPI ``mire2e`` 0.17): the original ``.pkl`` files load strictly.

Two modules exist only for that compatibility and are never called:
``encoder_layer`` in the structure predictor and the classifier (the template
layer that ``nn.TransformerEncoder`` copies) and the classifier's ``med2tag``.
They are part of the published parameter counts.

Tensor conventions: a batch of windows is ``onehot`` of shape ``(B, L, 4)``
(A, C, G, U; zero vector for N), a pairing ``profile`` of shape ``(B, L)`` in
[-1, 1], and a raw MFE value of shape ``(B,)`` (|MFE| per nucleotide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .encoding import classifier_pe

Layout = Literal["fixed", "reference"]


class ResidualBlock(nn.Module):
    """Pre-activation residual block: 2 × (ReLU → BatchNorm → Conv1d k=3), plus identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            nn.Conv1d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            nn.Conv1d(channels, channels, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x


class ConvEncoder(nn.Module):
    """Input stem (ReLU → BatchNorm → Conv1d) then ``n_blocks`` groups of residual blocks.

    Parameters
    ----------
    in_channels, width
        Input and working channel counts.
    n_resnets
        Residual blocks per group.
    n_blocks
        Number of groups.
    pool
        Halve the length (``AvgPool1d(2)``) after each group.
    """

    def __init__(self, in_channels: int, width: int, n_resnets: int, n_blocks: int, pool: bool):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReLU(),
            nn.BatchNorm1d(in_channels),
            nn.Conv1d(in_channels, width, kernel_size=3, padding=1),
        ]
        for _ in range(n_blocks):
            layers.extend(ResidualBlock(width) for _ in range(n_resnets))
            if pool:
                layers.append(nn.AvgPool1d(2))
        self.conv_layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x)


def _transformer(d_model: int, nhead: int, ff: int, n_layers: int) -> tuple[nn.Module, nn.Module]:
    layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=ff, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
    return layer, encoder


def attention_scores(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product scores ``(B, heads, L, L)`` of a batch-first self-attention."""
    b, n, d = x.shape
    h = attn.num_heads
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    q = F.linear(x, w[:d], bias[:d]).view(b, n, h, d // h).transpose(1, 2)
    k = F.linear(x, w[d : 2 * d], bias[d : 2 * d]).view(b, n, h, d // h).transpose(1, 2)
    return q @ k.transpose(-1, -2) / math.sqrt(d // h)


class StructurePredictor(nn.Module):
    """Stage 1: per-nucleotide pairing value in [-1, 1] ('(' = 1, '.' = 0, ')' = -1).

    Conv ResNet (4 → 111 channels, 3 residual blocks, no pooling); its output
    is concatenated with 111 positional features (:func:`~mire2e_viz.encoding.structure_pe`)
    into 222 channels for a 6-layer Transformer encoder (2 heads, FF 888),
    then a per-position MLP 222 → 100 → 10 → 1 with ELU and a final tanh.
    """

    feature_dim = 111

    def __init__(self) -> None:
        super().__init__()
        d = self.feature_dim * 2
        self.conv_in = ConvEncoder(4, self.feature_dim, 1, 3, pool=False)
        self.encoder_layer, self.transformer_encoder = _transformer(d, 2, d * 4, 6)
        self.hidden2first = nn.Linear(d, 100)
        self.first2med = nn.Linear(100, 10)
        self.med2tag = nn.Linear(10, 1)
        self.act = nn.ELU()

    def forward(self, onehot: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        """Return the pairing profile, shape ``(B, L)``.

        Parameters
        ----------
        onehot
            ``(B, L, 4)`` encoded windows.
        pe
            ``(B, L, 111)`` positional features (zero beyond each real length).
        """
        return self._head(self.transformer_encoder(self._tokens(onehot, pe)))

    def _tokens(self, onehot: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        """Conv features (111) concatenated with the positional features (111): ``(B, L, 222)``."""
        x = self.conv_in(onehot.transpose(1, 2)).transpose(1, 2)
        return torch.cat([x, pe.to(x.dtype)], dim=2)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first2med(self.act(self.hidden2first(x)))
        return torch.tanh(self.med2tag(self.act(x))).squeeze(-1)

    def forward_with_attention(self, onehot: torch.Tensor, pe: torch.Tensor,
                               layers: Sequence[int] = (0,)) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Profile plus the pre-softmax attention scores of some encoder layers.

        Used in training to supervise attention with RNAfold's base pairs
        (``pair_attention`` in :mod:`mire2e_viz.train`). The profile equals
        :meth:`forward`'s output.

        Returns
        -------
        profile, scores
            ``(B, L)`` profile and, per requested layer, ``(B, heads, L, L)``
            scaled dot-product scores (query position by key position).
        """
        x = self._tokens(onehot, pe)
        scores: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.transformer_encoder.layers):
            if i in layers:
                scores[i] = attention_scores(layer.self_attn, x)
            x = layer(x)
        return self._head(x), scores


class MFEEstimator(nn.Module):
    """Stage 2: folding energy as |MFE| per nucleotide (the network's raw output).

    Conv ResNet over sequence + profile (5 → 64 channels, 3 groups of one
    residual block, each followed by average pooling: 100 → 12 positions),
    then an MLP 768 → 100 → 30 → 1 with ELU and BatchNorm. Multiply the raw
    value by the sequence length and negate it to get kcal/mol.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvEncoder(5, 64, 1, 3, pool=True)
        self.hidden2first = nn.Linear(12 * 64, 100)
        self.first2med = nn.Linear(100, 30)
        self.FF1 = nn.Linear(30, 1)
        self.bn1 = nn.BatchNorm1d(100)
        self.bn2 = nn.BatchNorm1d(30)
        self.act = nn.ELU()

    def forward(self, onehot: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        """Return the raw per-nucleotide |MFE|, shape ``(B,)``."""
        x = torch.cat([onehot, profile.unsqueeze(-1).to(onehot.dtype)], dim=2)
        x = self.conv1(x.transpose(1, 2)).flatten(1)
        x = self.act(self.first2med(self.bn1(self.act(self.hidden2first(x)))))
        return self.act(self.FF1(self.bn2(x))).squeeze(-1)


class PositionalEncoder(nn.Module):
    """Scale by sqrt(d) and add a fixed sinusoidal table (a buffer, saved as ``PE.pe``)."""

    def __init__(self, d_model: int = 64, n_positions: int = 6):
        super().__init__()
        self.d_model = d_model
        self.register_buffer("pe", torch.from_numpy(classifier_pe(n_positions, d_model)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * math.sqrt(self.d_model) + self.pe[:, : x.size(1)].to(x.dtype)


class Classifier(nn.Module):
    """Stage 3: pre-miRNA probability from sequence, profile and MFE.

    Conv ResNet (5 → 64 channels, 4 groups of 3 residual blocks with pooling:
    100 → 6 positions), positional encoder, 3-layer Transformer encoder
    (4 heads, FF 256), then BatchNorm over the 6 × 64 features plus the raw
    MFE (385) and an MLP 385 → 1000 → 1000 → 1000 → 2 with ELU; softmax.

    Parameters
    ----------
    layout
        ``"fixed"`` (default): each window's 6 × 64 feature map is transposed
        to 6 tokens of 64 features, so the Transformer attends within a window
        and a score never depends on the rest of the batch.
        ``"reference"``: reproduce miRe2e 0.17, which reshapes with ``.view``
        where a transpose belongs, both inside a window and, before the
        Transformer, across the batch. Scores then depend on batch
        composition. Use it only with the original weights.
    """

    feature_dim = 64

    def __init__(self, layout: Layout = "fixed") -> None:
        super().__init__()
        if layout not in ("fixed", "reference"):
            raise ValueError(f"layout must be 'fixed' or 'reference', not {layout!r}")
        self.layout = layout
        d = self.feature_dim
        self.PE = PositionalEncoder(d, 6)
        self.conv1 = ConvEncoder(5, d, 3, 4, pool=True)
        self.encoder_layer, self.transformer_encoder = _transformer(d, 4, d * 4, 3)
        self.hidden2first = nn.Linear(6 * d + 1, 1000)
        self.first2med = nn.Linear(1000, 1000)
        self.FF1 = nn.Linear(1000, 1000)
        self.FF2 = nn.Linear(1000, 2)
        self.med2tag = nn.Linear(5, 2)  # unused: kept for state_dict compatibility
        self.bn1 = nn.BatchNorm1d(6 * d + 1)
        self.bn2 = nn.BatchNorm1d(1000)
        self.dp2 = nn.Dropout(0.5)
        self.act = nn.ELU()

    def logits(self, onehot: torch.Tensor, profile: torch.Tensor, mfe_raw: torch.Tensor) -> torch.Tensor:
        """Two-class logits ``(B, 2)``; column 0 is the pre-miRNA class."""
        b, d = onehot.size(0), self.feature_dim
        x = torch.cat([onehot, profile.unsqueeze(-1).to(onehot.dtype)], dim=2)
        x = self.conv1(x.transpose(1, 2))  # (B, 64, 6)
        if self.layout == "fixed":
            x = self.transformer_encoder(self.PE(x.transpose(1, 2)))
        else:
            x = self.PE(x.reshape(b, -1, d))
            # the reference feeds (B, 6, 64) memory as a sequence-first (6, B, 64) tensor
            x = x.reshape(-1, b, d).transpose(0, 1)
            x = self.transformer_encoder(x).transpose(0, 1)
        x = torch.cat([x.reshape(b, -1), mfe_raw.reshape(b, 1).to(x.dtype)], dim=1)
        x = self.hidden2first(self.bn1(x))
        x = self.first2med(self.dp2(self.bn2(self.act(x))))
        return self.FF2(self.act(self.FF1(self.act(x))))

    def forward(self, onehot: torch.Tensor, profile: torch.Tensor, mfe_raw: torch.Tensor) -> torch.Tensor:
        """Pre-miRNA probability, shape ``(B,)``."""
        return torch.softmax(self.logits(onehot, profile, mfe_raw).float(), dim=1)[:, 0]


STAGES = {"structure": StructurePredictor, "mfe": MFEEstimator, "classifier": Classifier}


def build(stage: str, layout: Layout = "fixed") -> nn.Module:
    """Instantiate one stage by name (``structure``, ``mfe`` or ``classifier``)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
    return Classifier(layout) if stage == "classifier" else STAGES[stage]()


def n_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers excluded), as the reference counts them."""
    return sum(p.numel() for p in module.parameters())

