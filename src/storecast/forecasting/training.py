"""Training the demand LSTM (torch): time-based split, AdamW, early stopping, checkpoints.

The history is split by time. The last ``test_days`` are the hold-out tail: never trained
on and never used for early stopping; the backtest scores it. The ``val_days`` before
it drive early stopping. Training windows are sampled from everything earlier, with a
fresh simulated weather-forecast error each time (see ``features.WindowBuilder.build``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from storecast.common.clock import Clock, SystemClock
from storecast.common.errors import DataError
from storecast.forecasting.features import FeatureSpec, WindowBuilder, Windows
from storecast.forecasting.history import StoreHistory
from storecast.forecasting.model import DemandLSTM, ModelConfig, pinball_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How to train; stored in the checkpoint as lineage."""

    max_epochs: int = 45
    steps_per_epoch: int = 40  # batches per epoch
    batch_size: int = 256  # windows per batch
    lr: float = 3e-3  # AdamW learning rate (cosine-decayed to 10% over max_epochs)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 8  # epochs without a better validation loss before stopping
    seed: int = 0
    test_days: int = 28  # hold-out tail, never seen in training or early stopping
    val_days: int = 14  # validation span just before the tail
    val_origin_step: int = 6  # hours between validation origins
    max_seconds: float | None = 170.0  # wall-clock safety net of the fitting loop
    threads: int | None = None  # torch intra-op threads (None: torch's default)

    @classmethod
    def quick(cls) -> TrainConfig:
        """A small budget for tests and the demo."""
        return cls(max_epochs=40, steps_per_epoch=20, batch_size=128, patience=5, max_seconds=40.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK_MODEL = {"hidden": 32, "layers": 1, "head_hidden": 32, "patch": 4}


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    improved: bool
    seconds: float  # since training started


@dataclass
class TrainResult:
    model: DemandLSTM
    best_epoch: int
    best_val_loss: float
    epochs: list[EpochStats] = field(default_factory=list)
    stopped: str = "max_epochs"  # max_epochs | early_stopping | time_budget | interrupted
    seconds: float = 0.0


@dataclass(frozen=True)
class Split:
    """Grid indices of the time-based split."""

    train_origins: tuple[int, int]  # [lo, hi) origins whose targets end before validation
    val_origins: np.ndarray
    test_start: int  # first hour of the hold-out tail

    @classmethod
    def of(cls, n_hours: int, spec: FeatureSpec, cfg: TrainConfig) -> Split:
        test_start = n_hours - cfg.test_days * 24
        val_start = test_start - cfg.val_days * 24
        lo, hi = spec.lookback, val_start - spec.horizon + 1
        if hi - lo < 24 * 7:
            need = (spec.lookback + 24 * 7 + spec.horizon) // 24 + cfg.val_days + cfg.test_days
            raise DataError(f"training needs at least {need} days of history; got {n_hours // 24}")
        val = np.arange(val_start, test_start - spec.horizon + 1, cfg.val_origin_step)
        return cls(train_origins=(lo, hi), val_origins=val, test_start=test_start)


def _tensors(w: Windows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    scaled = np.nan_to_num(w.target / w.scale[:, None]).astype(np.float32)
    return (
        torch.from_numpy(w.past),
        torch.from_numpy(w.future),
        torch.from_numpy(scaled),
        torch.from_numpy(w.mask),
    )


class Trainer:
    """Fits a ``DemandLSTM`` on a history; reports progress through callbacks."""

    def __init__(
        self,
        history: StoreHistory,
        model_config: ModelConfig,
        config: TrainConfig,
        spec: FeatureSpec | None = None,
        *,
        on_step: Callable[[int, int], None] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        on_best: Callable[[DemandLSTM, EpochStats], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.history = history
        self.spec = spec or FeatureSpec()
        self.model_config = model_config
        self.config = config
        self.split = Split.of(history.n_hours, self.spec, config)
        self.on_step, self.on_epoch, self.on_best = on_step, on_epoch, on_best
        self.clock = clock or SystemClock()

    def fit(self) -> TrainResult:
        """Train until early stopping, the epoch limit, the time budget or Ctrl-C.

        The returned model holds the best validation weights. Ctrl-C ends training
        cleanly (``stopped == "interrupted"``) instead of raising.
        """
        cfg = self.config
        threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)

    def _fit(self) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        builder = WindowBuilder(self.history, self.spec)
        val = _tensors(
            builder.build(
                np.repeat(np.arange(self.history.n_stores), self.split.val_origins.size),
                np.tile(self.split.val_origins, self.history.n_stores),
                rng=np.random.default_rng(cfg.seed + 1),
            )
        )
        model = DemandLSTM(self.model_config)
        quantiles = torch.tensor(self.spec.quantiles, dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=cfg.max_epochs * cfg.steps_per_epoch, eta_min=cfg.lr * 0.1
        )
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
        result = TrainResult(model=model, best_epoch=0, best_val_loss=float("inf"))
        started = self.clock.monotonic()
        lo, hi = self.split.train_origins
        total = cfg.max_epochs * cfg.steps_per_epoch
        try:
            for epoch in range(1, cfg.max_epochs + 1):
                model.train()
                losses = []
                for step in range(cfg.steps_per_epoch):
                    stores = rng.integers(0, self.history.n_stores, cfg.batch_size)
                    origins = rng.integers(lo, hi, cfg.batch_size)
                    past, future, target, mask = _tensors(builder.build(stores, origins, rng))
                    loss = pinball_loss(model(past, future), target, mask, quantiles)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                    if self.on_step:
                        self.on_step((epoch - 1) * cfg.steps_per_epoch + step + 1, total)
                val_loss = self._validate(model, val, quantiles)
                improved = val_loss < result.best_val_loss
                stats = EpochStats(
                    epoch,
                    float(np.mean(losses)),
                    val_loss,
                    improved,
                    self.clock.monotonic() - started,
                )
                result.epochs.append(stats)
                if improved:
                    result.best_epoch, result.best_val_loss = epoch, val_loss
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
                    if self.on_best:
                        self.on_best(model, stats)
                if self.on_epoch:
                    self.on_epoch(stats)
                if epoch - result.best_epoch >= cfg.patience:
                    result.stopped = "early_stopping"
                    break
                if cfg.max_seconds is not None and stats.seconds > cfg.max_seconds:
                    result.stopped = "time_budget"
                    break
        except KeyboardInterrupt:
            result.stopped = "interrupted"
            log.warning(
                "training interrupted; keeping the best weights (epoch %d)", result.best_epoch
            )
        model.load_state_dict(best_state)
        model.eval()
        result.seconds = self.clock.monotonic() - started
        return result

    @staticmethod
    def _validate(
        model: DemandLSTM,
        val: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        quantiles: torch.Tensor,
    ) -> float:
        model.eval()
        past, future, target, mask = val
        total, weight = 0.0, 0.0
        with torch.inference_mode():
            for i in range(0, past.shape[0], 2048):
                sl = slice(i, i + 2048)
                m = mask[sl]
                total += float(
                    pinball_loss(model(past[sl], future[sl]), target[sl], m, quantiles)
                ) * float(m.sum())
                weight += float(m.sum())
        return total / max(weight, 1.0)


def quick_model_config(spec: FeatureSpec) -> ModelConfig:
    """The small architecture ``--quick`` trains."""
    return ModelConfig.for_features(spec, **QUICK_MODEL)


def with_overrides(cfg: TrainConfig, **overrides: Any) -> TrainConfig:
    """``cfg`` with the given fields replaced (None values ignored)."""
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
