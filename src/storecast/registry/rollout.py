"""Canary rollouts: the plan, its gates, and the decision at each tick (pure).

A canary deployment moves the candidate arm (B) through steps of its share of stores
(e.g. 5, 25, 50, 100 %). At each tick ``decide`` looks at what the two arms have shown
since the current step began and answers one of:

    wait       the step is younger than its minimum duration, or B has too little
               evidence (forecast-hours with actuals, inference count), or the accuracy
               comparison is still inconclusive
    promote    every gate passed: B grows to the next step's share
    complete   every gate passed and the next step is 100 %: B takes every store and the
               alias (e.g. ``production``) moves to B's version
    rollback   a gate failed: B's stores go back to A

Gates (B's figures over the step):
    activations  failed activations (``model`` events ``rejected``) <= max_failed_activations
                 — checked at once, whatever the evidence: a model that does not install
                 needs no more proof
    error_rate   errors / inferences <= max_error_rate
    latency_p99  on-device p99 <= max_p99_ms
    accuracy     non-inferiority: WAPE(B) − WAPE(A) over stores, with its 95% interval
                 (stores as clusters, ``analytics.stats.wape_difference_interval``):
                 fails when the whole interval lies above ``wape_margin`` (B is worse by
                 more than the margin with 95% confidence), passes when the upper end is
                 at most ``wape_margin``, and is inconclusive otherwise
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from storecast.analytics.evidence import ArmEvidence
from storecast.analytics.stats import WapeDifference, wape_difference_interval

__all__ = [
    "CanaryPlan",
    "Decision",
    "GateResult",
    "Gates",
    "Step",
    "candidate_percent",
    "decide",
    "verdict",
    "weights_for",
]

Action = Literal["wait", "promote", "complete", "rollback"]
Verdict = Literal["better", "worse", "inconclusive"]


@dataclass(frozen=True)
class Step:
    """One step of a canary: B's share and what it must show before the next one."""

    percent: float  # share of the deployment's stores in B, (0, 100]
    min_duration_s: float = 3600.0  # seconds the step lasts at least
    min_forecast_hours: int = 24  # B store-hours with a forecast and its actual
    min_inferences: int = 100  # B forecast requests answered on devices


@dataclass(frozen=True)
class Gates:
    """Limits B must stay within (all checked on B's figures over the current step)."""

    max_error_rate: float = 0.02  # failed / answered forecast requests
    max_p99_ms: float = 250.0  # on-device forecast latency, p99
    max_failed_activations: int = 0  # devices that rejected B's bundle
    wape_margin: float = 0.02  # B's WAPE may exceed A's by at most this (absolute)
    confidence: float = 0.95  # of the accuracy interval


@dataclass(frozen=True)
class CanaryPlan:
    """Steps in increasing order, the last one 100 %."""

    steps: tuple[Step, ...]
    gates: Gates = field(default_factory=Gates)

    def __post_init__(self) -> None:
        percents = [s.percent for s in self.steps]
        if not percents:
            raise ValueError("a canary needs at least one step")
        if any(not 0 < p <= 100 for p in percents):
            raise ValueError("step percentages must lie in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError(f"step percentages must increase: {percents}")
        if percents[-1] != 100:
            raise ValueError("the last step must be 100 %")

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [asdict(s) for s in self.steps], "gates": asdict(self.gates)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanaryPlan:
        return cls(
            steps=tuple(Step(**s) for s in data["steps"]),
            gates=Gates(**data.get("gates", {})),
        )


@dataclass(frozen=True)
class GateResult:
    """One gate at one tick: passed True/False, or None while it cannot tell yet."""

    name: str
    passed: bool | None
    value: float | None
    limit: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What to do at this tick, and why."""

    action: Action
    step_index: int  # the step the decision was taken in
    percent: float  # B's share after the decision (0 after a rollback)
    reason: str
    gates: tuple[GateResult, ...] = ()
    difference: WapeDifference | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "step_index": self.step_index,
            "percent": self.percent,
            "reason": self.reason,
            "gates": [g.to_dict() for g in self.gates],
            "difference": asdict(self.difference) if self.difference else None,
        }


def _health_gates(gates: Gates, b: ArmEvidence, step: Step) -> list[GateResult]:
    enough = b.inferences >= step.min_inferences
    rate = b.error_rate
    p99 = b.latency_ms()[2]
    return [
        GateResult(
            "activations",
            b.failed_activations <= gates.max_failed_activations,
            float(b.failed_activations),
            float(gates.max_failed_activations),
            f"{b.failed_activations} device(s) rejected v{b.version}",
        ),
        GateResult(
            "error_rate",
            None if not enough or rate is None else rate <= gates.max_error_rate,
            rate,
            gates.max_error_rate,
            f"{b.errors} of {b.inferences} forecast requests failed",
        ),
        GateResult(
            "latency_p99",
            None if not enough or p99 is None else p99 <= gates.max_p99_ms,
            p99,
            gates.max_p99_ms,
            "on-device forecast latency, ms",
        ),
    ]


def _accuracy_gate(
    gates: Gates, a: ArmEvidence, b: ArmEvidence, step: Step
) -> tuple[GateResult, WapeDifference | None]:
    diff = wape_difference_interval(a.per_store, b.per_store, gates.confidence)
    if b.forecast_hours < step.min_forecast_hours or diff is None:
        detail = (
            f"B has {b.forecast_hours} of {step.min_forecast_hours} forecast-hours"
            if b.forecast_hours < step.min_forecast_hours
            else "fewer than two stores with sales in an arm"
        )
        return GateResult("accuracy", None, None, gates.wape_margin, detail), diff
    margin = gates.wape_margin
    passed: bool | None = None
    if diff.low > margin:
        passed = False
    elif diff.high <= margin:
        passed = True
    detail = (
        f"WAPE B − A = {diff.estimate:+.4f}, {gates.confidence:.0%} interval "
        f"[{diff.low:+.4f}, {diff.high:+.4f}], margin {margin:+.4f}"
    )
    return GateResult("accuracy", passed, diff.estimate, margin, detail), diff


def decide(
    plan: CanaryPlan,
    step_index: int,
    step_started_at: datetime,
    now: datetime,
    a: ArmEvidence,
    b: ArmEvidence,
) -> Decision:
    """The decision for the step ``step_index`` given both arms' evidence over it."""
    step = plan.steps[step_index]
    health = _health_gates(plan.gates, b, step)
    accuracy, diff = _accuracy_gate(plan.gates, a, b, step)
    results = (*health, accuracy)
    failed = [g for g in results if g.passed is False]
    if failed:
        reason = "; ".join(f"{g.name} failed: {g.detail}" for g in failed)
        return Decision("rollback", step_index, 0.0, reason, results, diff)
    elapsed = (now - step_started_at).total_seconds()
    if elapsed < step.min_duration_s:
        reason = f"step {step_index + 1} has run {elapsed:.0f} s of {step.min_duration_s:.0f} s"
        return Decision("wait", step_index, step.percent, reason, results, diff)
    pending = [g for g in results if g.passed is None]
    if pending:
        reason = "; ".join(f"{g.name}: {g.detail}" for g in pending)
        return Decision("wait", step_index, step.percent, reason, results, diff)
    if step_index + 1 >= len(plan.steps) or plan.steps[step_index + 1].percent >= 100:
        return Decision("complete", step_index, 100.0, "every gate passed", results, diff)
    following = plan.steps[step_index + 1].percent
    reason = f"every gate passed: B grows to {following:g} %"
    return Decision("promote", step_index, following, reason, results, diff)


def verdict(difference: WapeDifference | None) -> Verdict:
    """``better``, ``worse`` or ``inconclusive``: B against A on WAPE, at the interval's
    confidence (the interval must exclude zero for a verdict)."""
    if difference is None or not difference.significant:
        return "inconclusive"
    return "better" if difference.high < 0 else "worse"


def candidate_percent(status: str, plan: CanaryPlan, step_index: int) -> float:
    """B's share of the stores: its step's while active or paused, 100 once completed, 0
    once rolled back or aborted."""
    if status == "completed":
        return 100.0
    if status in ("rolled_back", "aborted"):
        return 0.0
    return plan.steps[min(max(step_index, 0), len(plan.steps) - 1)].percent


def weights_for(percent: float, arms: Sequence[str] = ("A", "B")) -> list[tuple[str, float]]:
    """Arm weights with B at ``percent`` (control A takes the rest)."""
    return [(arms[0], 100.0 - percent), (arms[1], percent)]
