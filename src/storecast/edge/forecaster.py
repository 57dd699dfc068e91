"""Forecasts from the store's own readings: the active model, or a labelled fallback.

``ModelHolder`` is the one place the active model lives. A request takes the model
reference once and finishes on it, so a swap never fails a request in flight: requests
already running finish on the old model, new ones get the new one.

The model needs ``lookback`` hours of history before its origin. With less (a new
device, a long outage) the answer comes from ``seasonal_naive``: the same hour one week
earlier where known, else one day earlier, else the mean of that hour of day, labelled
``method = "seasonal_naive"`` so nobody mistakes it for the model's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from storecast.common.clock import Clock
from storecast.common.telemetry import hour_floor
from storecast.edge.runtime import LoadedModel
from storecast.edge.sensors import SensorStore, StoreWindow
from storecast.forecasting.features import WindowBuilder
from storecast.forecasting.schema import HORIZON, LOOKBACK

__all__ = ["Forecast", "Forecaster", "ModelHolder", "seasonal_naive"]

log = logging.getLogger(__name__)

METHOD_MODEL = "model"
METHOD_FALLBACK = "seasonal_naive"
_Z90 = 1.2816  # standard normal quantile of 0.9


class ModelHolder:
    """The active model, swapped atomically."""

    def __init__(self, model: LoadedModel | None = None) -> None:
        self._model = model
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._model  # one reference read: atomic

    def swap(self, model: LoadedModel | None) -> LoadedModel | None:
        """Make ``model`` active; return the one it replaced."""
        with self._lock:
            old, self._model = self._model, model
        return old


@dataclass(frozen=True)
class Forecast:
    """Quantile forecasts for ``origin`` .. ``origin + horizon - 1`` hours."""

    origin: datetime
    points: list[tuple[datetime, float, float, float]]  # (ts, q10, q50, q90), units
    method: str  # "model" or "seasonal_naive"
    model: LoadedModel | None  # the model that made it (None for the fallback)
    history_hours: int  # hours with sales in the lookback window
    failure: str | None = None  # why the model could not answer (the fallback did)

    def head(self, horizon: int) -> Forecast:
        """The first ``horizon`` hours of this forecast."""
        return Forecast(
            self.origin,
            self.points[:horizon],
            self.method,
            self.model,
            self.history_hours,
            self.failure,
        )


def seasonal_naive(window: StoreWindow, horizon: int) -> np.ndarray:
    """(horizon, 3) quantiles from the lookback alone: last week, else yesterday, else mean.

    The interval is a Poisson-like band around the point (sales are counts).
    """
    h = window.history
    lookback = h.n_hours - horizon if h.n_hours >= horizon else 0
    sales = np.where(h.observed[0], h.sales[0], np.nan)
    point = np.full(horizon, np.nan)
    for k in range(horizon):
        t = lookback + k
        for lag in (168, 24):
            if t - lag >= 0 and np.isfinite(sales[t - lag]):
                point[k] = sales[t - lag]
                break
    if np.isnan(point).any():
        past = sales[:lookback]
        hours = np.arange(lookback) % 24
        for j in np.flatnonzero(np.isnan(point)):
            same = past[hours == (lookback + j) % 24]
            same = same[np.isfinite(same)]
            if same.size:
                point[j] = same.mean()
            elif np.isfinite(past).any():
                point[j] = np.nanmean(past)
            else:
                point[j] = 0.0
    point = np.maximum(point, 0.0)
    spread = _Z90 * np.sqrt(point + 1.0)
    return np.stack([np.maximum(point - spread, 0.0), point, point + spread], axis=-1)


class Forecaster:
    """Answers forecasts for one store, from the sensor store and the active model.

    Forecasts are cached per (origin, model, data revision): a new complete hour, a late
    reading for a complete hour (``invalidate``) or a model swap makes a fresh one.
    """

    def __init__(
        self, sensors: SensorStore, holder: ModelHolder, store_id: str, clock: Clock
    ) -> None:
        self._sensors = sensors
        self._holder = holder
        self._store_id = store_id
        self._clock = clock
        self._revision = 0
        self._cache: tuple[tuple[object, ...], Forecast] | None = None

    @property
    def sensors(self) -> SensorStore:
        return self._sensors

    def invalidate(self) -> None:
        """Readings for hours already forecast from have changed."""
        self._revision += 1

    def origin(self) -> datetime:
        """The first hour to forecast: after the last complete hour of readings.

        With no readings at all it is the current hour of the device's clock.
        """
        origin = self._sensors.origin()
        return origin if origin is not None else hour_floor(self._clock.now())

    def forecast(self, horizon: int = HORIZON) -> Forecast:
        """The forecast from the current origin (the model's, else the fallback)."""
        model = self._holder.current
        origin = self.origin()
        key = (origin, model.digest if model else None, self._revision)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1].head(horizon)
        full = self.compute(origin, model)
        self._cache = (key, full)
        return full.head(horizon)

    def compute(self, origin: datetime, model: LoadedModel | None) -> Forecast:
        """A full-horizon forecast from ``origin`` (no cache)."""
        lookback = model.spec.lookback if model else LOOKBACK
        full = model.spec.horizon if model else HORIZON
        window = self._sensors.window(origin, lookback, full, self._store_id)
        hours = [origin + timedelta(hours=k) for k in range(full)]
        failure: str | None = None
        quantiles: np.ndarray | None = None
        if model is not None and has_full_lookback(window, lookback):
            try:
                builder = WindowBuilder(window.history, model.spec)
                quantiles = model.forecast(builder.build(np.array([0]), np.array([lookback])))[0]
                if not np.isfinite(quantiles).all():
                    raise ValueError("the model returned non-finite quantiles")
            except Exception as exc:  # the answer falls back; the failure is counted
                log.exception("model %s v%s failed to forecast", model.name, model.version)
                failure, quantiles = f"{type(exc).__name__}: {exc}", None
        if quantiles is not None:
            method = METHOD_MODEL
        else:
            quantiles, method, model = seasonal_naive(window, full), METHOD_FALLBACK, None
        q = np.sort(quantiles, axis=-1)  # q10 <= q50 <= q90 even where a model crosses them
        points = [(hours[k], float(q[k, 0]), float(q[k, 1]), float(q[k, 2])) for k in range(full)]
        return Forecast(origin, points, method, model, window.observed_hours, failure)


def has_full_lookback(window: StoreWindow, lookback: int) -> bool:
    """Whether the model may run: sales known in the first day and most of the lookback.

    The feature code fills short gaps from a week or a day earlier; a lookback that is
    mostly empty (a device younger than a week) gets the fallback instead.
    """
    observed = window.history.observed[0, :lookback]
    return bool(observed[:24].any()) and window.observed_hours >= 0.75 * lookback
