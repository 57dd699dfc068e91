"""The global demand LSTM (torch): encoder over the lookback, per-hour quantile head.

    past   (B, lookback, Fp) ──LSTM (layers x hidden)──► h (B, hidden)
    future (B, horizon, Ff)  ──concat h per hour──► MLP ──► (B, horizon, 3) scaled quantiles

The head emits the median and two positive gaps, so q10 <= q50 <= q90 by construction.
Outputs are in scaled units; ``features.decode`` turns them into sales units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from storecast.forecasting.features import FeatureSpec


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of ``DemandLSTM``; stored in the checkpoint to rebuild the model."""

    past_features: int = 11
    future_features: int = 23
    lookback: int = 168  # hours read by the encoder
    horizon: int = 24  # hours forecast
    n_quantiles: int = 3
    hidden: int = 64  # LSTM hidden size
    layers: int = 2  # stacked LSTM layers
    dropout: float = 0.0  # between LSTM layers
    head_hidden: int = 64  # width of the per-hour MLP
    patch: int = 4  # consecutive hours folded into one LSTM step (42 steps over 168 h)

    def __post_init__(self) -> None:
        if self.lookback % self.patch:
            raise ValueError("lookback must be a multiple of patch")
        if self.n_quantiles != 3:
            raise ValueError("the head emits exactly 3 quantiles (0.1, 0.5, 0.9)")

    @classmethod
    def for_features(cls, spec: FeatureSpec, **overrides: Any) -> ModelConfig:
        return cls(
            past_features=len(spec.past_channels),
            future_features=len(spec.future_channels),
            lookback=spec.lookback,
            horizon=spec.horizon,
            **overrides,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class QuantileHead(nn.Module):
    """Per-hour MLP emitting non-crossing quantiles (median plus softplus gaps)."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.net(x)  # (B, H, 3)
        median = raw[..., 1:2]
        low = median - F.softplus(raw[..., 0:1])
        high = median + F.softplus(raw[..., 2:3])
        return torch.cat([low, median, high], dim=-1)


class DemandLSTM(nn.Module):
    """One global model for every store; inputs are scaled per window."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.LSTM(
            input_size=config.past_features * config.patch,
            hidden_size=config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = QuantileHead(config.hidden + config.future_features, config.head_hidden)

    def forward(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """past (B, L, Fp), future (B, H, Ff) -> scaled quantiles (B, H, 3)."""
        b = past.shape[0]
        steps = past.reshape(b, self.config.lookback // self.config.patch, -1)
        _, (h_n, _) = self.encoder(steps)  # h_n: (layers, B, hidden)
        context = h_n[-1].unsqueeze(1).expand(-1, future.shape[1], -1)  # (B, H, hidden)
        return self.head(torch.cat([context, future], dim=-1))  # type: ignore[no-any-return]


def pinball_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    """Mean pinball loss over known targets; pred (B, H, Q), target and mask (B, H)."""
    diff = target.unsqueeze(-1) - pred  # (B, H, Q)
    loss = torch.maximum(quantiles * diff, (quantiles - 1.0) * diff)
    weights = mask.unsqueeze(-1).to(loss.dtype)
    return (loss * weights).sum() / weights.sum().clamp_min(1.0) / quantiles.numel()
