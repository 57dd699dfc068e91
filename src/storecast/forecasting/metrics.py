"""Forecast accuracy metrics over plain arrays (numpy only).

Every function takes actuals ``y`` and forecasts of the same shape; cells where ``y`` is NaN
(missing hours) are left out. Errors are *forecast minus actual*, so a positive bias means
over-forecasting.
"""

from __future__ import annotations

import numpy as np


def _valid(y: np.ndarray, *forecasts: np.ndarray) -> np.ndarray:
    mask: np.ndarray = np.isfinite(y)
    for f in forecasts:
        mask &= np.isfinite(f)
    return mask


def wape(y: np.ndarray, point: np.ndarray) -> float:
    """Weighted absolute percentage error: sum |forecast - actual| / sum |actual|."""
    m = _valid(y, point)
    denom = np.abs(y[m]).sum()
    return float(np.abs(point[m] - y[m]).sum() / denom) if denom > 0 else float("nan")


def bias(y: np.ndarray, point: np.ndarray) -> float:
    """Sum of errors over sum of actuals; 0 is unbiased, > 0 over-forecasts."""
    m = _valid(y, point)
    denom = np.abs(y[m]).sum()
    return float((point[m] - y[m]).sum() / denom) if denom > 0 else float("nan")


def mase(y: np.ndarray, point: np.ndarray, naive_mae: np.ndarray) -> float:
    """Mean absolute error scaled by each series' in-sample seasonal-naive MAE.

    ``y`` and ``point`` are (N, H); ``naive_mae`` is (N,), the MAE of the seasonal-naive
    forecast on the history before each forecast (see ``seasonal_naive_mae``).
    """
    scaled = np.abs(point - y) / naive_mae[:, None]
    m = _valid(y, point) & np.isfinite(scaled)
    return float(scaled[m].mean()) if m.any() else float("nan")


def seasonal_naive_mae(series: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast ``y[t - season]`` (NaN cells skipped)."""
    if series.size <= season:
        return float("nan")
    diff = np.abs(series[season:] - series[:-season])
    diff = diff[np.isfinite(diff)]
    return float(diff.mean()) if diff.size else float("nan")


def pinball(y: np.ndarray, q: np.ndarray, tau: float) -> float:
    """Mean pinball (quantile) loss of forecast quantile ``q`` at level ``tau``."""
    m = _valid(y, q)
    diff = y[m] - q[m]
    return float(np.maximum(tau * diff, (tau - 1.0) * diff).mean()) if m.any() else float("nan")


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside the closed interval [lower, upper]."""
    m = _valid(y, lower, upper)
    inside = (y[m] >= lower[m]) & (y[m] <= upper[m])
    return float(inside.mean()) if m.any() else float("nan")
