"""Rolling-origin backtests: forecasts from several origins over a history's tail, scored.

Pure functions over arrays: a *forecaster* maps a ``Windows`` batch to quantile forecasts
in sales units, shape (N, horizon, 3). The seasonal-naive baselines and the oracle are
forecasters here; the LSTM's lives with the torch code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from storecast.common.errors import DataError
from storecast.forecasting import metrics, schema
from storecast.forecasting.features import FUTURE_CHANNELS, FeatureSpec, WindowBuilder, Windows
from storecast.forecasting.history import StoreHistory, iso_hour

Forecaster = Callable[[Windows], np.ndarray]
TRADING_WEEKS = 4  # weeks of history that decide whether an hour-of-week slot trades


def backtest_origins(
    n_hours: int,
    *,
    weeks: int = 4,
    step: int = 24,
    horizon: int = schema.HORIZON,
    lookback: int = schema.LOOKBACK,
) -> np.ndarray:
    """Origins every ``step`` hours whose forecasts cover the last ``weeks`` weeks."""
    first = n_hours - weeks * 168
    if first < lookback:
        need = (lookback + weeks * 168) // 24
        raise DataError(
            f"a {weeks}-week backtest needs at least {need} days of history; got {n_hours // 24}"
        )
    origins = np.arange(first, n_hours - horizon + 1, step)
    if origins.size < 3:
        raise DataError("a rolling-origin backtest needs at least 3 origins")
    return origins


def seasonal_naive(lag: int) -> Forecaster:
    """The forecast 'same hour ``lag`` hours ago', as a degenerate quantile forecast."""
    channel = {24: "lag24", 168: "lag168"}[lag]

    def forecast(w: Windows) -> np.ndarray:
        point = w.future[..., FUTURE_CHANNELS.index(channel)] * w.scale[:, None]
        return np.repeat(point[..., None].astype(np.float64), len(schema.QUANTILES), axis=2)

    return forecast


def oracle_forecaster(history: StoreHistory) -> Forecaster | None:
    """The true conditional quantiles, where the history knows them (synthetic data)."""
    oracle = history.oracle
    if oracle is None:
        return None

    def forecast(w: Windows) -> np.ndarray:
        idx = w.origins[:, None] + np.arange(w.target.shape[1])[None, :]
        return np.asarray(oracle.quantiles[w.stores[:, None], idx], dtype=np.float64)

    return forecast


def trading_mask(history: StoreHistory, w: Windows) -> np.ndarray:
    """(N, H) True where the store sold something in that hour-of-week in recent weeks."""
    idx = w.origins[:, None] + np.arange(w.target.shape[1])[None, :]
    traded = np.zeros(idx.shape, dtype=bool)
    for k in range(1, TRADING_WEEKS + 1):
        past = idx - 168 * k
        ok = past >= 0
        vals = history.sales[w.stores[:, None], np.clip(past, 0, None)]
        traded |= ok & (np.nan_to_num(vals) > 0)
    return traded


def score(
    y: np.ndarray, q: np.ndarray, naive_mae: np.ndarray, trading: np.ndarray, *, point_only: bool
) -> dict[str, Any]:
    """All metrics of one method; interval metrics are None for point forecasts."""
    median = q[..., 1]
    result: dict[str, Any] = {
        "wape": metrics.wape(y, median),
        "bias": metrics.bias(y, median),
        "mase": metrics.mase(y, median, naive_mae),
        "pinball": {
            f"q{round(t * 100)}": metrics.pinball(y, q[..., i], t)
            for i, t in enumerate(schema.QUANTILES)
        },
        "coverage_80": None,
        "coverage_80_all_hours": None,
    }
    if not point_only:
        y_trading = np.where(trading, y, np.nan)
        result["coverage_80"] = metrics.coverage(y_trading, q[..., 0], q[..., 2])
        result["coverage_80_all_hours"] = metrics.coverage(y, q[..., 0], q[..., 2])
    return result


def run_backtest(
    history: StoreHistory,
    forecasters: Mapping[str, Forecaster],
    *,
    origins: np.ndarray | None = None,
    seed: int = 0,
    spec: FeatureSpec | None = None,
    point_only: frozenset[str] = frozenset({"snaive_24", "snaive_168"}),
) -> dict[str, Any]:
    """Score every forecaster on every store from each origin; the metrics report.

    The report maps each metric to ``{method: value}``. The seasonal-naive baselines
    (24 h and 168 h) and, when the history knows it, the oracle are always included.
    ``coverage_80`` counts trading hours only (slots that sold in the previous
    ``TRADING_WEEKS`` weeks), because an always-closed hour is covered trivially.
    """
    if origins is None:
        origins = backtest_origins(history.n_hours)
    builder = WindowBuilder(history, spec or FeatureSpec())
    stores = np.repeat(np.arange(history.n_stores), origins.size)
    origin_grid = np.tile(origins, history.n_stores)
    windows = builder.build(stores, origin_grid, rng=np.random.default_rng(seed))

    first = int(origins.min())
    per_store = np.array(
        [
            metrics.seasonal_naive_mae(history.sales[s, :first], schema.SEASON)
            for s in range(history.n_stores)
        ]
    )
    naive_mae = per_store[stores]
    trading = trading_mask(history, windows)

    methods: dict[str, Forecaster] = dict(forecasters)
    methods.setdefault("snaive_24", seasonal_naive(24))
    methods.setdefault("snaive_168", seasonal_naive(168))
    oracle = oracle_forecaster(history)
    scores: dict[str, dict[str, Any] | None] = {}
    for name, forecaster in methods.items():
        q = forecaster(windows)
        scores[name] = score(windows.target, q, naive_mae, trading, point_only=name in point_only)
    scores["oracle"] = (
        score(windows.target, oracle(windows), naive_mae, trading, point_only=False)
        if oracle
        else None
    )

    report: dict[str, Any] = {}
    for metric in ("wape", "bias", "mase", "coverage_80", "coverage_80_all_hours", "pinball"):
        report[metric] = {name: (s[metric] if s else None) for name, s in scores.items()}
    stamps = history.hours[origins]
    report["backtest"] = {
        "origins": int(origins.size),
        "first_origin": iso_hour(stamps[0]),
        "last_origin": iso_hour(stamps[-1]),
        "horizon_hours": int(windows.target.shape[1]),
        "stores": history.n_stores,
        "forecast_hours_scored": int(windows.mask.sum()),
        "source": history.source,
    }
    return report
