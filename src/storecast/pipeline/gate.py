"""The quality gate: may this candidate be published? A pure function over figures.

Two checks, both on the same hold-out backtest:

    vs_snaive       the candidate's WAPE is at least ``min_improvement`` (relative) lower
                    than the better of the seasonal-naive baselines (24 h, 168 h)
    vs_production   the candidate's WAPE is at most ``max_regression`` (absolute) higher
                    than the production model's; passes with a note when there is none
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from storecast.common.errors import StorecastError

BASELINES = ("snaive_24", "snaive_168")


@dataclass(frozen=True)
class Evidence:
    """The hold-out figures the gate decides on (WAPE as a fraction: 0.21 is 21 %)."""

    candidate_wape: float
    baseline_wape: Mapping[str, float | None]  # {"snaive_24": ..., "snaive_168": ...}
    production_wape: float | None = None  # None: no production model to compare with
    production_version: int | None = None
    production_note: str | None = None  # why there is no production figure


@dataclass(frozen=True)
class Check:
    """One check: its figure, its limit and a sentence a person can act on."""

    name: str
    passed: bool
    value: float | None  # improvement (vs_snaive) or regression (vs_production)
    limit: float
    detail: str


@dataclass(frozen=True)
class GateReport:
    """The gate's decision; ``failures`` are the details of the checks that failed."""

    passed: bool
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GateFailed(StorecastError):
    """The candidate did not pass the quality gate; nothing was published."""

    def __init__(
        self,
        report: GateReport,
        *,
        metrics: dict[str, Any] | None = None,
        production_metrics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__("quality gate failed: " + "; ".join(report.failures))
        self.report = report
        self.metrics = metrics  # the candidate's hold-out report
        self.production_metrics = production_metrics  # the production model's, same hold-out


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def check_vs_snaive(evidence: Evidence, min_improvement: float) -> Check:
    """The candidate beats the better seasonal naive by ``min_improvement`` (relative)."""
    name = "vs_snaive"
    baselines = {
        k: float(v) for k, v in evidence.baseline_wape.items() if v is not None and _finite(v) and v
    }
    cand = evidence.candidate_wape
    if not _finite(cand):
        return Check(name, False, None, min_improvement, f"candidate WAPE is {cand}")
    if not baselines:
        return Check(name, False, None, min_improvement, "no seasonal-naive WAPE to compare with")
    best, wape = min(baselines.items(), key=lambda kv: (kv[1], kv[0]))
    improvement = (wape - cand) / wape
    passed = improvement >= min_improvement
    need = (
        f"at least {_relative(min_improvement)}"
        if min_improvement >= 0
        else f"at most {_relative(min_improvement)}"
    )
    return Check(
        name,
        passed,
        improvement,
        min_improvement,
        f"WAPE {cand:.3f} vs {best} {wape:.3f}: {_relative(improvement)}, needs {need}",
    )


def _relative(improvement: float) -> str:
    return f"{improvement:.1%} lower" if improvement >= 0 else f"{-improvement:.1%} higher"


def check_vs_production(evidence: Evidence, max_regression: float) -> Check:
    """The candidate is not worse than production by more than ``max_regression``."""
    name = "vs_production"
    cand, prod = evidence.candidate_wape, evidence.production_wape
    if prod is None:
        note = evidence.production_note or "no production model"
        return Check(name, True, None, max_regression, f"{note}: nothing to compare with")
    label = (
        f"production v{evidence.production_version}"
        if evidence.production_version
        else ("production")
    )
    if not _finite(cand) or not _finite(prod):
        return Check(
            name, False, None, max_regression, f"WAPE {cand} vs {label} {prod}: not comparable"
        )
    regression = cand - prod
    passed = regression <= max_regression
    if regression > 0:
        how = f"worse by {regression:.3f} {'≤' if passed else '>'} {max_regression:.3f}"
    else:
        how = f"better by {-regression:.3f}"
    return Check(
        name, passed, regression, max_regression, f"WAPE {cand:.3f} vs {label} {prod:.3f}: {how}"
    )


def evaluate_gate(
    evidence: Evidence, *, min_improvement_vs_snaive: float, max_regression_vs_production: float
) -> GateReport:
    """Both checks; the gate passes when each does."""
    checks = (
        check_vs_snaive(evidence, min_improvement_vs_snaive),
        check_vs_production(evidence, max_regression_vs_production),
    )
    notes = (evidence.production_note,) if evidence.production_note else ()
    return GateReport(all(c.passed for c in checks), checks, notes)
