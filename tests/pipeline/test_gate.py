"""The quality gate as a table: figures in, decision and its sentence out."""

from __future__ import annotations

import math

import pytest

from storecast.pipeline.gate import Evidence, GateFailed, evaluate_gate

NAIVE = {"snaive_24": 0.40, "snaive_168": 0.30}  # the better baseline is snaive_168


def decide(candidate: float, production: float | None = None, **limits: float):
    evidence = Evidence(
        candidate_wape=candidate,
        baseline_wape=NAIVE,
        production_wape=production,
        production_version=3 if production is not None else None,
        production_note=None if production is not None else "no model at the 'production' alias",
    )
    return evaluate_gate(
        evidence,
        min_improvement_vs_snaive=limits.get("min_improvement", 0.05),
        max_regression_vs_production=limits.get("max_regression", 0.0),
    )


@pytest.mark.parametrize(
    ("candidate", "production", "limits", "passed", "failed"),
    [
        # beats the better naive by 10 % (>= 5 %), no production: passes with a note
        (0.27, None, {}, True, []),
        # exactly the required margin passes
        (0.285, None, {}, True, []),
        # beats snaive_24 but only 3.3 % better than snaive_168: refused
        (0.29, None, {}, False, ["vs_snaive"]),
        # better than production
        (0.20, 0.214, {}, True, []),
        # equal to production: not worse
        (0.214, 0.214, {}, True, []),
        # worse than production by 0.017 with no regression allowed
        (0.231, 0.214, {}, False, ["vs_production"]),
        # the same regression within an allowed 0.02
        (0.231, 0.214, {"max_regression": 0.02}, True, []),
        # worse on both counts: both reported
        (0.31, 0.214, {}, False, ["vs_snaive", "vs_production"]),
        # a negative margin allows being a little worse than naive (10 % here)
        (0.32, None, {"min_improvement": -0.10}, True, []),
        # a candidate WAPE that is not a number never passes
        (math.nan, None, {}, False, ["vs_snaive"]),
        (0.20, math.nan, {}, False, ["vs_production"]),
    ],
)
def test_gate_table(candidate, production, limits, passed, failed):
    report = decide(candidate, production, **limits)
    assert report.passed is passed
    assert [c.name for c in report.checks if not c.passed] == failed


def test_failed_vs_production_check_states_the_figures():
    report = decide(0.231, 0.214)
    assert report.failures == ["WAPE 0.231 vs production v3 0.214: worse by 0.017 > 0.000"]
    assert str(GateFailed(report)) == (
        "quality gate failed: WAPE 0.231 vs production v3 0.214: worse by 0.017 > 0.000"
    )


def test_failed_vs_snaive_check_names_the_better_baseline_and_the_margin():
    [check] = [c for c in decide(0.29).checks if not c.passed]
    assert check.detail == "WAPE 0.290 vs snaive_168 0.300: 3.3% lower, needs at least 5.0% lower"
    assert check.value == pytest.approx(1 / 30)


def test_without_production_the_production_half_passes_with_a_note():
    report = decide(0.27)
    assert report.passed
    assert report.notes == ("no model at the 'production' alias",)
    assert report.checks[1].detail == "no model at the 'production' alias: nothing to compare with"


def test_without_any_usable_baseline_the_candidate_is_refused():
    evidence = Evidence(candidate_wape=0.2, baseline_wape={"snaive_24": None, "snaive_168": 0.0})
    report = evaluate_gate(
        evidence, min_improvement_vs_snaive=0.05, max_regression_vs_production=0.0
    )
    assert not report.passed
    assert report.failures == ["no seasonal-naive WAPE to compare with"]


def test_report_serialises_to_plain_data():
    data = decide(0.231, 0.214).to_dict()
    assert data["passed"] is False
    assert data["checks"][1]["name"] == "vs_production"
