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
    "sales",
    "observed",
    "footfall",
    "temperature",
    "precip",
    "promo",
    "holiday",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)
FUTURE_CHANNELS = (
    "hour_sin",
    "hour_cos",
    "hour2_sin",
    "hour2_cos",
    "hour3_sin",
    "hour3_cos",
    "dow_sin",
    "dow_cos",
    "doy_sin",
    "doy_cos",
    "promo",
    "holiday",
    "temperature_fc",
    "precip_fc",
    "lag168",
    "lag168_observed",
    "lag168_promo",
    "lag168_holiday",
    "lag24",
    "lag24_observed",
    "hod_mean",
    "hod_open_share",
    "horizon",
)


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
        # Three harmonics of the hour: daily profiles have sharp lunch and evening peaks.
        self._cyclical = {
            "hour": cyclical(hour, 24),
            "hour2": cyclical(hour, 12),
            "hour3": cyclical(hour, 8),
            "dow": cyclical(dow, 7),
            "doy": cyclical(doy, 365.25),
        }
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

    def _calendar(self, idx: np.ndarray, parts: tuple[str, ...]) -> dict[str, np.ndarray]:
        out = {}
        for part in parts:
            sin, cos = self._cyclical[part]
            out[f"{part}_sin"], out[f"{part}_cos"] = sin[idx], cos[idx]
        return out

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
        lb, hz = spec.lookback, spec.horizon
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
        past = {
            "sales": self._sales[s, past_idx] / scale[:, None],
            "observed": obs_past,
            "footfall": ff_past / ff_scale[:, None],
            "temperature": (h.temperature_c[s, past_idx] - 15.0) / 10.0,
            "precip": np.log1p(np.maximum(h.precip_mm[s, past_idx], 0.0)) / 2.0,
            "promo": h.promo[s, past_idx],
            "holiday": h.is_holiday[s, past_idx],
            **self._calendar(past_idx, ("hour", "dow")),
        }

        temp_fc = h.temperature_c[s, fut_idx]
        precip_fc = np.maximum(h.precip_mm[s, fut_idx], 0.0)
        if rng is not None:
            temp_fc = temp_fc + rng.normal(0.0, spec.temp_forecast_sd, temp_fc.shape)
            precip_fc = precip_fc * np.exp(
                rng.normal(0.0, spec.precip_forecast_log_sd, precip_fc.shape)
            )
        lag168, lag24 = fut_idx - 168, fut_idx - 24
        # The same hour on each of the last 7 days (all inside the lookback).
        days_back = fut_idx[..., None] - 24 * np.arange(1, 8)[None, None, :]
        s3 = s[..., None]
        week_sales = self._sales[s3, days_back]
        future = {
            **self._calendar(fut_idx, ("hour", "hour2", "hour3", "dow", "doy")),
            "promo": h.promo[s, fut_idx],
            "holiday": h.is_holiday[s, fut_idx],
            "temperature_fc": (temp_fc - 15.0) / 10.0,
            "precip_fc": np.log1p(precip_fc) / 2.0,
            "lag168": self._sales[s, lag168] / scale[:, None],
            "lag168_observed": self._obs[s, lag168],
            "lag168_promo": h.promo[s, lag168],
            "lag168_holiday": h.is_holiday[s, lag168],
            "lag24": self._sales[s, lag24] / scale[:, None],
            "lag24_observed": self._obs[s, lag24],
            # a less noisy hourly profile than one lag
            "hod_mean": self._level(
                week_sales, self._regular[s3, days_back], self._obs[s3, days_back]
            )
            / scale[:, None],
            # a sharp open/closed signal, so forecasts do not smear across closing time
            "hod_open_share": (week_sales > 0).mean(axis=-1),
            "horizon": np.broadcast_to(np.arange(hz) / max(hz - 1, 1), fut_idx.shape),
        }

        target = np.where(h.observed[s, fut_idx], h.sales[s, fut_idx], np.nan)
        return Windows(
            past=_stack(past, spec.past_channels),
            future=_stack(future, spec.future_channels),
            scale=scale,
            target=target,
            stores=stores,
            origins=origins,
        )


def _stack(channels: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """Channels in the spec's order as one float32 array (..., len(names))."""
    missing = [n for n in names if n not in channels]
    if missing:
        raise ValueError(f"unknown feature channel(s) {missing}")
    return np.stack([channels[n] for n in names], axis=-1).astype(np.float32)


def decode(scaled_quantiles: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scaled model output (N, horizon, Q) to sales units: times the scale, never negative."""
    return np.asarray(np.maximum(scaled_quantiles.astype(np.float64), 0.0) * scale[:, None, None])
