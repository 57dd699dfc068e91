"""The canary decision (pure): wait, promote, complete or roll back, gate by gate."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from storecast.analytics.evidence import ArmEvidence
from storecast.analytics.stats import WapeDifference
from storecast.registry.rollout import (
    CanaryPlan,
    Gates,
    Step,
    candidate_percent,
    decide,
    verdict,
    weights_for,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)
STEP = Step(percent=5, min_duration_s=3600, min_forecast_hours=24, min_inferences=100)
PLAN = CanaryPlan(
    steps=(STEP, replace(STEP, percent=25), replace(STEP, percent=50), replace(STEP, percent=100)),
    gates=Gates(max_error_rate=0.02, max_p99_ms=250, max_failed_activations=0, wape_margin=0.02),
)
FAST_HIST = (0,) * 6 + (200,) + (0,) * 6  # every request in the (5, 10] ms bucket
SLOW_HIST = (0,) * 11 + (200, 0)  # every request in the (250, 1000] ms bucket


def arm(name: str, wapes: list[float], **fields: object) -> ArmEvidence:
    """An arm whose stores sold 100 units each with these WAPEs."""
    per_store = tuple((100.0 * w, 100.0) for w in wapes)
    base = ArmEvidence(
        arm=name,
        model="demand-lstm",
        version=1 if name == "A" else 2,
        stores=len(wapes),
        forecast_hours=48,
        sum_actual=100.0 * len(wapes),
        sum_q50=100.0 * len(wapes),
        sum_abs_err=sum(e for e, _ in per_store),
        covered=40,
        inferences=200,
        errors=0,
        latency_hist=FAST_HIST,
        per_store=per_store,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


A = arm("A", [0.20, 0.22, 0.18, 0.21, 0.19, 0.20])
B_SAME = arm("B", [0.20, 0.21, 0.19, 0.20, 0.20, 0.19])
LATE = T0 + timedelta(hours=2)


def test_evidence_too_thin_waits():
    thin = replace(B_SAME, forecast_hours=3, inferences=10)
    decision = decide(PLAN, 0, T0, LATE, A, thin)
    assert decision.action == "wait"
    assert decision.percent == 5
    assert "3 of 24 forecast-hours" in decision.reason


def test_a_step_younger_than_its_minimum_duration_waits():
    decision = decide(PLAN, 0, T0, T0 + timedelta(minutes=30), A, B_SAME)
    assert decision.action == "wait" and "1800 s of 3600 s" in decision.reason


def test_every_gate_passing_promotes_to_the_next_step():
    decision = decide(PLAN, 0, T0, LATE, A, B_SAME)
    assert decision.action == "promote"
    assert decision.percent == 25
    assert all(g.passed for g in decision.gates)


def test_passing_the_step_before_100_completes():
    decision = decide(PLAN, 2, T0, LATE, A, B_SAME)
    assert (decision.action, decision.percent) == ("complete", 100.0)


@pytest.mark.parametrize(
    ("gate", "b"),
    [
        ("activations", replace(B_SAME, failed_activations=1)),
        ("error_rate", replace(B_SAME, errors=10)),
        ("latency_p99", replace(B_SAME, latency_hist=SLOW_HIST)),
        ("accuracy", arm("B", [0.40, 0.42, 0.38, 0.41, 0.39, 0.40])),
    ],
)
def test_each_failing_gate_rolls_back(gate, b):
    decision = decide(PLAN, 1, T0, LATE, A, b)
    assert decision.action == "rollback"
    assert decision.percent == 0
    failed = [g.name for g in decision.gates if g.passed is False]
    assert failed == [gate]
    assert f"{gate} failed" in decision.reason


def test_a_failed_activation_rolls_back_even_before_the_step_is_old_enough():
    b = replace(B_SAME, failed_activations=2, forecast_hours=0, inferences=0)
    assert decide(PLAN, 0, T0, T0 + timedelta(seconds=1), A, b).action == "rollback"


def test_inconclusive_accuracy_waits():
    # Noisy stores: the interval straddles the margin, so neither pass nor fail yet.
    noisy_a = arm("A", [0.05, 0.40, 0.10, 0.35])
    noisy_b = arm("B", [0.10, 0.45, 0.12, 0.40])
    decision = decide(PLAN, 0, T0, LATE, noisy_a, noisy_b)
    accuracy = next(g for g in decision.gates if g.name == "accuracy")
    assert accuracy.passed is None
    assert decision.action == "wait" and "accuracy" in decision.reason


def test_accuracy_needs_two_stores_per_arm():
    decision = decide(PLAN, 0, T0, LATE, A, arm("B", [0.2]))
    assert decision.action == "wait"
    assert "fewer than two stores" in decision.reason


@pytest.mark.parametrize(
    ("difference", "expected"),
    [
        (None, "inconclusive"),
        (WapeDifference(-0.05, -0.08, -0.02), "better"),
        (WapeDifference(0.05, 0.02, 0.08), "worse"),
        (WapeDifference(0.01, -0.02, 0.04), "inconclusive"),
    ],
)
def test_verdict_needs_an_interval_that_excludes_zero(difference, expected):
    assert verdict(difference) == expected


@pytest.mark.parametrize(
    ("status", "step", "percent"),
    [
        ("active", 0, 5),
        ("paused", 2, 50),
        ("completed", 2, 100),
        ("rolled_back", 1, 0),
        ("aborted", 0, 0),
    ],
)
def test_candidate_percent_follows_status_and_step(status, step, percent):
    assert candidate_percent(status, PLAN, step) == percent


def test_weights_for_gives_the_control_the_rest():
    assert weights_for(5) == [("A", 95.0), ("B", 5.0)]


@pytest.mark.parametrize("percents", [(), (5, 5, 100), (50, 25, 100), (5, 50), (0, 100)])
def test_a_plan_needs_increasing_steps_ending_at_100(percents):
    with pytest.raises(ValueError):
        CanaryPlan(tuple(Step(p) for p in percents))


def test_a_plan_round_trips_through_its_dict():
    assert CanaryPlan.from_dict(PLAN.to_dict()) == PLAN
