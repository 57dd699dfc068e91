"""Model inputs from store-hour history: the one feature code training and devices share.

numpy only: importing this never imports torch, so an edge device builds its inputs with
exactly the code the model was trained with (train/serve parity).

A forecast made at *origin* ``t`` (the first hour to forecast) reads the ``lookback`` hours
``[t - lookback, t)`` and the known-future inputs of ``[t, t + horizon)``: calendar, promo
plan, holidays and the weather forecast. Sales at or after ``t`` never reach the inputs.

Scaling is per window: sales and footfall are divided by their mean over the window's
lookback (sales: observed hours that are not holidays; at least ``min_scale``), so a store
never seen in training is forecast from its own recent level (cold start). ``decode`` turns
scaled quantiles back into units.

Missing hours (``observed`` False): their sales enter the inputs filled with the same hour
one week (else one day) earlier, and the ``observed`` channel tells the model which hours
were filled; they are masked out of the loss and of every metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from storecast.forecasting import schema
from storecast.forecasting.calendar import cyclical, time_parts
from storecast.forecasting.history import StoreHistory

PAST_CHANNELS = (
    "sales", "observed", "footfall", "temperature", "precip", "promo", "holiday",
    "hour_sin", "hour_cos", "dow_sin", "dow_cos",
)  # fmt: skip
FUTURE_CHANNELS = (
    "hour_sin", "hour_cos", "dow_sin", "dow_cos", "doy_sin", "doy_cos", "promo", "holiday",
    "temperature_fc", "precip_fc", "lag168", "lag168_observed", "lag168_promo",
    "lag168_holiday", "lag24", "lag24_observed", "hod_mean", "horizon",
)  # fmt: skip


@dataclass(frozen=True)
class FeatureSpec:
    """How inputs are built; stored in every checkpoint and bundle."""

    lookback: int = schema.LOOKBACK  # hours
    horizon: int = schema.HORIZON  # hours
    quantiles: tuple[float, ...] = schema.QUANTILES
    past_channels: tuple[str, ...] = PAST_CHANNELS
    future_channels: tuple[str, ...] = FUTURE_CHANNELS
    min_scale: float = 1.0  # units; floor of the per-window sales scale
    temp_forecast_sd: float = 1.0  # degrees C; weather-forecast error simulated in training
    precip_forecast_log_sd: float = 0.3  # log-normal error of the precipitation forecast
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("quantiles", "past_channels", "future_channels"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        known = {f for f in cls.__dataclass_fields__}
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        spec = cls(**kwargs)
        if spec.version != cls.version:
            raise ValueError(f"feature spec version {spec.version} is not supported")
        return spec


@dataclass(frozen=True)
class Windows:
    """A batch of model inputs, with targets where the history has them."""

    past: np.ndarray  # (N, lookback, len(past_channels)) float32
    future: np.ndarray  # (N, horizon, len(future_channels)) float32
    scale: np.ndarray  # (N,) float64 units per scaled unit
    target: np.ndarray  # (N, horizon) float64 sales units, NaN where unknown
    stores: np.ndarray  # (N,) store index
    origins: np.ndarray  # (N,) grid index of the first forecast hour

    @property
    def mask(self) -> np.ndarray:
        """(N, horizon) True where the target is known."""
        return np.asarray(~np.isnan(self.target))

    def __len__(self) -> int:
        return int(self.past.shape[0])


def _seasonal_fill(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Fill unobserved cells from one week, else one day, earlier (past only), else 0."""
    out = np.where(observed, values, np.nan)
    for lag in (168, 24, 168, 24, 168):
        if out.shape[1] <= lag:
            continue
        gap = np.isnan(out[:, lag:])
        out[:, lag:] = np.where(gap, out[:, :-lag], out[:, lag:])
    return np.nan_to_num(out, nan=0.0)


@dataclass
class WindowBuilder:
    """Builds ``Windows`` for (store, origin) pairs of one history; precomputes once."""

    history: StoreHistory
    spec: FeatureSpec = field(default_factory=FeatureSpec)

    def __post_init__(self) -> None:
        h = self.history
        hour, dow, doy = time_parts(h.hours)
        self._hour = cyclical(hour, 24)
        self._dow = cyclical(dow, 7)
        self._doy = cyclical(doy, 365.25)
        self._sales = _seasonal_fill(h.sales, h.observed)
        has_footfall = h.observed & np.isfinite(h.footfall)
        self._footfall = _seasonal_fill(h.footfall, has_footfall)
        self._obs = h.observed.astype(np.float64)
        self._regular = (h.observed & (h.is_holiday == 0)).astype(np.float64)

    @staticmethod
    def _level(values: np.ndarray, regular: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Mean over the last axis of regular (observed, non-holiday) hours.

        Holidays are left out so a closure does not drag the level down; with no regular
        hour the observed ones count, and with none of those the level is 0.
        """

        def mean(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = weights.sum(axis=-1)
            total = (values * weights).sum(axis=-1)
            return np.divide(total, n, out=np.zeros_like(total), where=n > 0), n

        level, n_regular = mean(regular)
        fallback, _ = mean(observed)
        return np.where(n_regular > 0, level, fallback)

    def valid_origins(self) -> tuple[int, int]:
        """The first and one-past-last origin for which a full window exists."""
        return self.spec.lookback, self.history.n_hours - self.spec.horizon + 1

    def build(
        self,
        stores: np.ndarray,
        origins: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> Windows:
        """Inputs for each (store, origin); ``rng`` adds weather-forecast error to the future.

        Without ``rng`` the future weather is taken as given (the grid already holds a
        forecast there, as on a device); with it, realised weather is turned into a
        simulated forecast, as in training and backtests.
        """
        spec, h = self.spec, self.history
        stores = np.asarray(stores, dtype=np.int64)
        origins = np.asarray(origins, dtype=np.int64)
        lo, hi = self.valid_origins()
        if origins.size and (origins.min() < lo or origins.max() >= hi):
            raise ValueError(f"origins must lie in [{lo}, {hi}) for this history")
        n, lb, hz = origins.size, spec.lookback, spec.horizon
        s = stores[:, None]
        past_idx = origins[:, None] + np.arange(-lb, 0)[None, :]
        fut_idx = origins[:, None] + np.arange(hz)[None, :]

        obs_past = self._obs[s, past_idx]
        scale = np.maximum(
            self._level(self._sales[s, past_idx], self._regular[s, past_idx], obs_past),
            spec.min_scale,
        )
        ff_past = self._footfall[s, past_idx]
        ff_scale = np.maximum(ff_past.mean(axis=1), spec.min_scale)

        past = np.empty((n, lb, len(spec.past_channels)), dtype=np.float32)
        past[..., 0] = self._sales[s, past_idx] / scale[:, None]
        past[..., 1] = obs_past
        past[..., 2] = ff_past / ff_scale[:, None]
        past[..., 3] = (h.temperature_c[s, past_idx] - 15.0) / 10.0
        past[..., 4] = np.log1p(np.maximum(h.precip_mm[s, past_idx], 0.0)) / 2.0
        past[..., 5] = h.promo[s, past_idx]
        past[..., 6] = h.is_holiday[s, past_idx]
        past[..., 7], past[..., 8] = self._hour[0][past_idx], self._hour[1][past_idx]
        past[..., 9], past[..., 10] = self._dow[0][past_idx], self._dow[1][past_idx]

        temp_fc = h.temperature_c[s, fut_idx]
        precip_fc = np.maximum(h.precip_mm[s, fut_idx], 0.0)
        if rng is not None:
            temp_fc = temp_fc + rng.normal(0.0, spec.temp_forecast_sd, temp_fc.shape)
            precip_fc = precip_fc * np.exp(
                rng.normal(0.0, spec.precip_forecast_log_sd, precip_fc.shape)
            )
        lag168, lag24 = fut_idx - 168, fut_idx - 24
        future = np.empty((n, hz, len(spec.future_channels)), dtype=np.float32)
        future[..., 0], future[..., 1] = self._hour[0][fut_idx], self._hour[1][fut_idx]
        future[..., 2], future[..., 3] = self._dow[0][fut_idx], self._dow[1][fut_idx]
        future[..., 4], future[..., 5] = self._doy[0][fut_idx], self._doy[1][fut_idx]
        future[..., 6] = h.promo[s, fut_idx]
        future[..., 7] = h.is_holiday[s, fut_idx]
        future[..., 8] = (temp_fc - 15.0) / 10.0
        future[..., 9] = np.log1p(precip_fc) / 2.0
        future[..., 10] = self._sales[s, lag168] / scale[:, None]
        future[..., 11] = self._obs[s, lag168]
        future[..., 12] = h.promo[s, lag168]
        future[..., 13] = h.is_holiday[s, lag168]
        future[..., 14] = self._sales[s, lag24] / scale[:, None]
        future[..., 15] = self._obs[s, lag24]
        # Same hour of day over the last 7 days: a less noisy profile than one lag.
        days_back = fut_idx[..., None] - 24 * np.arange(1, 8)[None, None, :]
        s3 = s[..., None]
        future[..., 16] = (
            self._level(
                self._sales[s3, days_back], self._regular[s3, days_back], self._obs[s3, days_back]
            )
            / scale[:, None]
        )
        future[..., 17] = np.arange(hz)[None, :] / max(hz - 1, 1)

        target = np.where(h.observed[s, fut_idx], h.sales[s, fut_idx], np.nan)
        return Windows(
            past=past, future=future, scale=scale, target=target, stores=stores, origins=origins
        )


def decode(scaled_quantiles: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scaled model output (N, horizon, Q) to sales units: times the scale, never negative."""
    return np.asarray(np.maximum(scaled_quantiles.astype(np.float64), 0.0) * scale[:, None, None])
