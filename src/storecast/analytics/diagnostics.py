"""Root-cause diagnostics and incidents: rollup sums handed to ``rootcause`` (pure) to rank.

A metric is a ratio compared between a window and a baseline (``rootcause`` explains how):

    error_rate    inference_hourly errors / count; error kinds from error_hourly
    wape          accuracy_hourly sum_abs_err / sum_actual
    latency_p95   inferences slower than the baseline p95's bucket / all inferences; the
                  reported window and baseline values are the p95 itself (ms)

Cells are built in two groupings that share the same totals: (model version, agent
version, hour of day) and (store, with its region), so neither crosses stores with hours.
Findings of both are merged into one ranking (at most ``TOP``). For error_rate, error kinds
(``rootcause.explain_counts`` over error events) follow it, ranked among themselves: they
explain a different count, so their shares do not compete with the others'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, extract, func, literal, select
from sqlalchemy.orm import Session

from storecast.analytics import queries_rollouts, rootcause, stats
from storecast.analytics.queries import (
    DEVICES,
    agent_label,
    hist_sums,
    model_label,
    total,
)
from storecast.analytics.queries_usage import (
    CHANGE_ACTIONS,
    deployments_in,
    model_event_summary,
    model_events,
)
from storecast.analytics.schemas import (
    Finding,
    Incident,
    IncidentList,
    Metric,
    RolloutIncident,
    RootCause,
    Window,
)
from storecast.analytics.tables import (
    BUCKET_COLUMNS,
    AccuracyHourlyRow,
    ErrorHourlyRow,
    InferenceHourlyRow,
)
from storecast.common.telemetry import LATENCY_BOUNDS_MS

__all__ = [
    "BASELINE_SPAN",
    "DIMENSIONS",
    "METRICS",
    "baseline_before",
    "incidents",
    "root_cause",
]

METRICS: tuple[Metric, ...] = ("error_rate", "wape", "latency_p95")
DIMENSIONS = ("model_version", "store", "region", "agent_version", "hour_of_day", "error_kind")
BASELINE_SPAN = timedelta(days=7)  # the default baseline: this long, just before the window
TOP = 10  # findings per answer
EVENTS_LISTED = 100  # newest model events a root-cause answer lists

_INFERENCE = InferenceHourlyRow.__table__
_UNKNOWN_REGION = "(unknown)"


def baseline_before(window: Window) -> Window:
    """The ``BASELINE_SPAN`` just before ``window``."""
    return Window(start=window.start - BASELINE_SPAN, end=window.start)


@dataclasses.dataclass
class _Totals:
    """One window's fleet-wide sums, enough to value every metric."""

    count: int
    errors: int
    hist: list[int]
    abs_err: float
    actual: float

    def value(self, metric: Metric) -> float | None:
        if metric == "error_rate":
            return stats.ratio(self.errors, self.count)
        if metric == "wape":
            return stats.ratio(self.abs_err, self.actual)
        return stats.latency_summary(self.hist)[1]


def _totals(session: Session, window: Window) -> _Totals:
    i, a = InferenceHourlyRow, AccuracyHourlyRow
    count, errors, *hist = session.execute(
        select(total(i.count), total(i.errors), *hist_sums(_INFERENCE)).where(
            i.hour >= window.start, i.hour < window.end
        )
    ).one()
    abs_err, actual = session.execute(
        select(total(a.sum_abs_err), total(a.sum_actual)).where(
            a.hour >= window.start, a.hour < window.end
        )
    ).one()
    return _Totals(int(count), int(errors), [int(n) for n in hist], float(abs_err), float(actual))


def _ratio_parts(metric: Metric, slow_bucket: int | None) -> tuple[Any, Any, Any]:
    """(table, numerator, denominator) of ``metric`` as SQL expressions."""
    if metric == "wape":
        a = AccuracyHourlyRow
        return a, a.sum_abs_err, a.sum_actual
    i = InferenceHourlyRow
    if metric == "error_rate":
        return i, i.errors, i.count
    slow: ColumnElement[Any] = literal(0)
    for name in BUCKET_COLUMNS[(slow_bucket or 0) + 1 :]:
        slow = slow + _INFERENCE.c[name]
    return i, slow, i.count


def _grouped(
    session: Session, parts: tuple[Any, Any, Any], keys: list[Any], window: Window
) -> dict[tuple[Any, ...], tuple[float, float]]:
    t, num, den = parts
    rows = session.execute(
        select(*keys, total(num), total(den))
        .where(t.hour >= window.start, t.hour < window.end)
        .group_by(*keys)
    )
    return {tuple(row[:-2]): (float(row[-2]), float(row[-1])) for row in rows}


def _cells(
    window: dict[tuple[Any, ...], tuple[float, float]],
    baseline: dict[tuple[Any, ...], tuple[float, float]],
    dims: Callable[[tuple[Any, ...]], dict[str, str]],
) -> Iterable[rootcause.Cell]:
    for key in window.keys() | baseline.keys():
        w_num, w_den = window.get(key, (0.0, 0.0))
        b_num, b_den = baseline.get(key, (0.0, 0.0))
        yield rootcause.Cell(dims(key), w_num, w_den, b_num, b_den)


def _error_kinds(session: Session, window: Window) -> dict[str, float]:
    e = ErrorHourlyRow
    rows = session.execute(
        select(e.kind, total(e.count))
        .where(e.hour >= window.start, e.hour < window.end)
        .group_by(e.kind)
    )
    return {kind: float(n) for kind, n in rows}


def _explain(
    session: Session,
    metric: Metric,
    window: Window,
    baseline: Window,
    totals: tuple[_Totals, _Totals],
) -> tuple[rootcause.Explanation, float | None]:
    """The ranked explanation of ``metric``, and the latency bound "slow" starts after."""
    slow_bucket = rootcause.slow_share_threshold(totals[1].hist)
    if metric == "latency_p95" and slow_bucket is None:
        return rootcause.Explanation(None, None, 0.0), None
    parts = _ratio_parts(metric, slow_bucket)
    t = parts[0]
    mixed = [t.model_name, t.model_version, t.agent_version, extract("hour", t.hour)]
    by_mix = rootcause.explain(
        _cells(
            _grouped(session, parts, mixed, window),
            _grouped(session, parts, mixed, baseline),
            lambda key: {
                "model_version": model_label(key[0], key[1]),
                "agent_version": agent_label(key[2]),
                "hour_of_day": str(int(key[3])),
            },
        ),
        ("model_version", "agent_version", "hour_of_day"),
        top=TOP,
    )
    regions = dict(
        session.execute(
            select(DEVICES.c.store_id, func.max(DEVICES.c.region)).group_by(DEVICES.c.store_id)
        ).all()
    )
    by_store = rootcause.explain(
        _cells(
            _grouped(session, parts, [t.store_id], window),
            _grouped(session, parts, [t.store_id], baseline),
            lambda key: {"store": key[0], "region": regions.get(key[0]) or _UNKNOWN_REGION},
        ),
        ("store", "region"),
        top=TOP,
    )
    ranked = rootcause.rank_findings(
        [*by_mix.findings, *by_store.findings], top=TOP, dimensions=DIMENSIONS
    )
    if metric == "error_rate":
        # Error kinds count error events, not failed inferences: their shares are of another
        # excess, so they follow the ranking instead of competing with it.
        kinds = rootcause.explain_counts(
            _error_kinds(session, window),
            _error_kinds(session, baseline),
            totals[0].count,
            totals[1].count,
            top=TOP,
        )
        ranked += kinds.findings
    slow_after = None if metric != "latency_p95" else LATENCY_BOUNDS_MS[slow_bucket or 0]
    return dataclasses.replace(by_mix, findings=ranked), slow_after


def _findings(explanation: rootcause.Explanation) -> list[Finding]:
    return [Finding(**dataclasses.asdict(f)) for f in explanation.findings]


def root_cause(session: Session, metric: Metric, window: Window, baseline: Window) -> RootCause:
    """What explains ``metric``'s change from ``baseline`` to ``window``, and what changed then."""
    totals = (_totals(session, window), _totals(session, baseline))
    explanation, slow_after = _explain(session, metric, window, baseline, totals)
    return RootCause(
        metric=metric,
        window=window,
        baseline=baseline,
        window_value=totals[0].value(metric),
        baseline_value=totals[1].value(metric),
        excess=explanation.excess,
        slow_after_ms=slow_after,
        findings=_findings(explanation),
        model_events=model_events(
            session, window, actions=CHANGE_ACTIONS, limit=EVENTS_LISTED
        ).events,
        model_event_summary=model_event_summary(session, window),
        deployments=deployments_in(session, window),
    )


def incidents(session: Session, at: datetime, window_hours: int) -> IncidentList:
    """Each metric over the ``window_hours`` before ``at`` that ``rootcause.detect`` flags
    against the week before, with its findings; then the canaries rolled back or aborted
    in that window."""
    window = Window(start=at - timedelta(hours=window_hours), end=at)
    baseline = baseline_before(window)
    totals = (_totals(session, window), _totals(session, baseline))
    found: list[Incident | RolloutIncident] = []
    for metric in METRICS:
        now, before = totals[0].value(metric), totals[1].value(metric)
        limit = rootcause.threshold(metric, before)
        if limit is None or not rootcause.detect(metric, now, before):
            continue
        explanation, _ = _explain(session, metric, window, baseline, totals)
        found.append(
            Incident(
                metric=metric,
                window=window,
                window_value=now,
                baseline_value=before,
                threshold=limit,
                findings=_findings(explanation),
            )
        )
    found.extend(queries_rollouts.rollout_incidents(session, window))
    return IncidentList(at=at, incidents=found)
