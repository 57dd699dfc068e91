"""The acceptance check a candidate model passes before it may become active.

``smoke_test`` runs a loaded candidate on real (or probe) inputs and checks, in order:
the output shape, that every value is finite, that quantiles are ordered, that the
forecast level is plausible against the store's recent sales, and that batch-1 latency
is within budget. It reads no files and opens no connections; the clock is injected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from storecast.forecasting.features import FeatureSpec, WindowBuilder, Windows, decode
from storecast.forecasting.synthetic import ChainConfig, generate_chain

__all__ = [
    "Candidate",
    "SmokeBudget",
    "SmokeResult",
    "probe_level",
    "probe_windows",
    "smoke_test",
]


class Candidate(Protocol):
    """What the smoke test needs of a model (``LoadedModel`` is one)."""

    @property
    def spec(self) -> FeatureSpec: ...

    def predict_scaled(self, past: np.ndarray, future: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SmokeBudget:
    """Limits a candidate must meet."""

    latency_ms: float = 50.0  # ms, p50 of `runs` predictions of batch 1
    runs: int = 5  # timed predictions
    max_scale_ratio: float = 5.0  # forecast level vs recent sales level: within [1/r, r]
    quantile_tolerance: float = 0.05  # scaled units a higher quantile may fall below a lower


@dataclass(frozen=True)
class SmokeResult:
    """The verdict; ``reason`` names the first failed check with its numbers."""

    ok: bool
    reason: str | None
    latency_ms: float  # p50, ms (NaN when the model could not run)
    checks: dict[str, Any] = field(default_factory=dict)


def smoke_test(
    model: Candidate,
    windows: Windows,
    recent_level: float | None,
    budget: SmokeBudget = SmokeBudget(),
    timer: Callable[[], float] = time.perf_counter,
) -> SmokeResult:
    """Check ``model`` on ``windows``.

    ``recent_level`` is the store's mean hourly sales over its recent history; when given
    and positive, the forecast level (the median across windows of each window's mean
    hourly q50, in units) must lie within ``max_scale_ratio`` of it.
    """
    spec = model.spec
    n = len(windows)
    if n == 0:
        return SmokeResult(False, "no input windows to test with", math.nan, {})
    try:
        out = np.asarray(model.predict_scaled(windows.past, windows.future))
    except Exception as exc:  # any failure to run is a verdict, not a crash of the caller
        return SmokeResult(False, f"prediction failed: {exc!r}", math.nan, {})
    checks: dict[str, Any] = {}
    failures: list[str] = []

    expected = (n, spec.horizon, len(spec.quantiles))
    checks["shape"] = {"got": list(out.shape), "expected": list(expected)}
    if out.shape != expected:
        failures.append(f"output shape {out.shape}, expected {expected}")
        # the value checks below need the right shape
    else:
        _check_values(out, windows, spec, recent_level, budget, checks, failures)

    latency = _p50_latency_ms(model, windows, budget.runs, timer)
    checks["latency_ms"] = {"p50": latency, "budget": budget.latency_ms, "runs": budget.runs}
    if not latency <= budget.latency_ms:
        failures.append(f"p50 latency {latency:.1f} ms over the {budget.latency_ms:g} ms budget")

    reason = failures[0] if failures else None
    return SmokeResult(ok=not failures, reason=reason, latency_ms=latency, checks=checks)


def _check_values(
    out: np.ndarray,
    windows: Windows,
    spec: FeatureSpec,
    recent_level: float | None,
    budget: SmokeBudget,
    checks: dict[str, Any],
    failures: list[str],
) -> None:
    bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    checks["finite"] = {"non_finite": bad, "values": int(np.size(out))}
    if bad:
        failures.append(f"{bad} of {np.size(out)} output values are not finite")
        return
    crossing = float(np.max(out[..., :-1] - out[..., 1:], initial=0.0))
    checks["quantile_order"] = {"max_crossing": crossing, "tolerance": budget.quantile_tolerance}
    if crossing > budget.quantile_tolerance:
        failures.append(
            f"quantiles out of order by up to {crossing:.3g} scaled units "
            f"(tolerance {budget.quantile_tolerance:g})"
        )
    if recent_level is None or recent_level <= 0:
        checks["scale"] = {"skipped": "no recent sales level"}
        return
    median = _median_quantile(spec)
    units = decode(out, windows.scale)[..., median]  # (N, H)
    level = float(np.median(units.mean(axis=1)))
    ratio = level / recent_level
    checks["scale"] = {
        "forecast_level": level,
        "recent_level": recent_level,
        "ratio": ratio,
        "max_ratio": budget.max_scale_ratio,
    }
    if not 1.0 / budget.max_scale_ratio <= ratio <= budget.max_scale_ratio:
        failures.append(
            f"forecast level {level:.3g} is {ratio:.3g}x the recent sales level "
            f"{recent_level:.3g} (allowed {1 / budget.max_scale_ratio:.3g}x to "
            f"{budget.max_scale_ratio:g}x)"
        )


def _median_quantile(spec: FeatureSpec) -> int:
    """Index of the quantile nearest 0.5."""
    return int(np.argmin([abs(q - 0.5) for q in spec.quantiles]))


def _p50_latency_ms(
    model: Candidate, windows: Windows, runs: int, timer: Callable[[], float]
) -> float:
    past, future = windows.past[:1], windows.future[:1]
    times = []
    for _ in range(max(runs, 1)):
        start = timer()
        model.predict_scaled(past, future)
        times.append((timer() - start) * 1000.0)
    return float(np.median(times))


def probe_windows(spec: FeatureSpec, *, seed: int = 0, stores: int = 2) -> Windows:
    """Inputs for a device with no history yet: the last full window of a small synthetic
    chain (``storecast.forecasting.synthetic``), one per store, built by ``WindowBuilder``.

    Synthetic stores behave like real ones, so a sound model forecasts them at a plausible
    level; pair with ``probe_level`` for the scale check.
    """
    days = math.ceil((spec.lookback + spec.horizon) / 24) + 1
    chain = generate_chain(ChainConfig(stores=stores, days=days, seed=seed))
    builder = WindowBuilder(chain.history, spec)
    _, end = builder.valid_origins()
    return builder.build(np.arange(stores), np.full(stores, end - 1))


def probe_level(windows: Windows) -> float:
    """The mean hourly sales level of ``windows``' lookbacks (their mean scale, in units)."""
    return float(np.mean(windows.scale))
