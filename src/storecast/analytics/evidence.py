"""What one arm of a deployment has shown in a window: the evidence rollouts are gated on.

``ArmEvidence`` is plain data read from the hourly rollups (accuracy, inference, model
events) for one model version over a set of stores, so the rollout decision
(``storecast.registry.rollout``) and the readout stay pure functions over it.
``arm_evidence`` reads one arm; ``arms_evidence`` reads several arms of a model at once.

Accuracy comes from ``accuracy_hourly``, the rollup ``/v1/analytics/models`` reads, so an
arm's WAPE and interval are the model-performance ones restricted to the arm's stores:
sums over every paired forecast point whatever its horizon (the rollup keeps no horizon),
and ``forecast_hours`` counts the store-hours holding at least one such point. Each query
groups by store and version over the window's hours and the arms' stores are picked from
the result in Python (no store list is sent to the database), so the cost follows the
(stores x hours) in the window, not the history stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storecast.analytics.queries import accuracy_sums, hist_sums, total
from storecast.analytics.stats import latency_summary, ratio, wape_interval
from storecast.analytics.tables import (
    AccuracyHourlyRow,
    InferenceHourlyRow,
    ModelEventRow,
)

__all__ = ["ArmEvidence", "ArmScope", "arm_evidence", "arms_evidence"]

ACTIVATED, REJECTED = "activated", "rejected"  # the model events an arm counts


@dataclass(frozen=True)
class ArmEvidence:
    """One arm's figures over a window (sums, so arms and windows add up)."""

    arm: str
    model: str
    version: int
    stores: int = 0  # stores of the arm that reported anything for this version
    forecast_hours: int = 0  # store-hours with a forecast paired with the hour's actual
    points: int = 0  # paired forecast points in them (every horizon)
    sum_actual: float = 0.0  # over the paired points
    sum_q50: float = 0.0
    sum_abs_err: float = 0.0  # sum |q50 - actual|
    covered: int = 0  # paired points whose actual fell inside [q10, q90]
    inferences: int = 0  # forecast requests answered on devices
    errors: int = 0  # of which failed
    latency_hist: tuple[int, ...] = ()  # counts per LATENCY_BOUNDS_MS bucket (+ overflow)
    activations: int = 0  # model events "activated" for this version
    failed_activations: int = 0  # model events "rejected" for this version
    per_store: tuple[tuple[float, float], ...] = field(default=())  # (sum_abs_err, sum_actual)

    @property
    def wape(self) -> float | None:
        """Σ|q50 − actual| / Σactual over the paired points."""
        return ratio(self.sum_abs_err, self.sum_actual)

    @property
    def bias(self) -> float | None:
        """(Σq50 − Σactual) / Σactual over the paired points."""
        return ratio(self.sum_q50 - self.sum_actual, self.sum_actual)

    @property
    def coverage(self) -> float | None:
        """Share of paired points whose actual fell inside [q10, q90]."""
        return ratio(self.covered, self.points)

    @property
    def error_rate(self) -> float | None:
        """Failed / answered forecast requests."""
        return ratio(self.errors, self.inferences)

    def latency_ms(self) -> tuple[float | None, float | None, float | None]:
        """p50, p95, p99 of on-device forecast latency."""
        if not self.latency_hist or not sum(self.latency_hist):
            return None, None, None
        return latency_summary(self.latency_hist)

    def wape_interval(self, confidence: float = 0.95) -> tuple[float, float] | None:
        """The arm's WAPE interval over stores (None with fewer than two stores)."""
        return wape_interval(self.per_store, confidence)


@dataclass(frozen=True)
class ArmScope:
    """Which figures belong to an arm: its model version, in its stores (None: anywhere)."""

    arm: str
    version: int
    stores: Collection[str] | None


@dataclass
class _Store:
    """One store's sums for one version, as the three queries find them."""

    hours: int = 0
    accuracy: tuple[float, ...] = (0, 0.0, 0.0, 0.0, 0)  # accuracy_sums order
    inferences: int = 0
    errors: int = 0
    hist: tuple[int, ...] = ()
    activations: int = 0
    failed_activations: int = 0


def arm_evidence(
    session: Session,
    *,
    arm: str,
    model: str,
    version: int,
    stores: Collection[str] | None,
    since: datetime,
    until: datetime,
) -> ArmEvidence:
    """What ``model`` v``version`` showed in ``stores`` (every store when None) over the
    hours starting in ``[since, until)``, and its model events in that span."""
    scope = ArmScope(arm, version, stores)
    return arms_evidence(session, model=model, arms=[scope], since=since, until=until)[arm]


def arms_evidence(
    session: Session,
    *,
    model: str,
    arms: Sequence[ArmScope],
    since: datetime,
    until: datetime,
) -> dict[str, ArmEvidence]:
    """``arm_evidence`` of several arms of one model, by arm name, reading each rollup once."""
    versions = sorted({scope.version for scope in arms})
    found: dict[tuple[str, int], _Store] = defaultdict(_Store)
    for store_id, version, hours, *sums in session.execute(
        _accuracy(model, versions, since, until)
    ):
        found[store_id, version].hours = int(hours)
        found[store_id, version].accuracy = tuple(sums)
    for store_id, version, count, errors, *hist in session.execute(
        _inference(model, versions, since, until)
    ):
        found[store_id, version].inferences = int(count)
        found[store_id, version].errors = int(errors)
        found[store_id, version].hist = tuple(int(n) for n in hist)
    for store_id, version, action, n in session.execute(
        _model_events(model, versions, since, until)
    ):
        if action == ACTIVATED:
            found[store_id, version].activations = int(n)
        else:
            found[store_id, version].failed_activations = int(n)
    evidence = {}
    for scope in arms:
        keep = None if scope.stores is None else frozenset(scope.stores)
        mine = {
            store_id: sums
            for (store_id, version), sums in found.items()
            if version == scope.version and (keep is None or store_id in keep)
        }
        evidence[scope.arm] = _evidence(scope.arm, model, scope.version, mine)
    return evidence


def _accuracy(model: str, versions: list[int], since: datetime, until: datetime) -> Any:
    a = AccuracyHourlyRow
    return (
        select(a.store_id, a.model_version, func.count(func.distinct(a.hour)), *accuracy_sums())
        .where(a.hour >= since, a.hour < until)
        .where(a.model_name == model, a.model_version.in_(versions))
        .group_by(a.store_id, a.model_version)
    )


def _inference(model: str, versions: list[int], since: datetime, until: datetime) -> Any:
    i = InferenceHourlyRow
    return (
        select(
            i.store_id, i.model_version, total(i.count), total(i.errors), *hist_sums(i.__table__)
        )
        .where(i.hour >= since, i.hour < until)
        .where(i.model_name == model, i.model_version.in_(versions))
        .group_by(i.store_id, i.model_version)
    )


def _model_events(model: str, versions: list[int], since: datetime, until: datetime) -> Any:
    m = ModelEventRow
    return (
        select(m.store_id, m.model_version, m.action, func.count())
        .where(m.ts >= since, m.ts < until, m.action.in_((ACTIVATED, REJECTED)))
        .where(m.model_name == model, m.model_version.in_(versions))
        .group_by(m.store_id, m.model_version, m.action)
    )


def _evidence(arm: str, model: str, version: int, found: dict[str, _Store]) -> ArmEvidence:
    """The arm's totals from its stores' sums."""
    stores = [found[store_id] for store_id in sorted(found)]
    points, actual, q50, abs_err, covered = (
        sum(float(s.accuracy[k]) for s in stores) for k in range(5)
    )
    hist = [sum(column) for column in zip(*(s.hist for s in stores if s.hist), strict=True)]
    return ArmEvidence(
        arm=arm,
        model=model,
        version=version,
        stores=len(stores),
        forecast_hours=sum(s.hours for s in stores),
        points=int(points),
        sum_actual=actual,
        sum_q50=q50,
        sum_abs_err=abs_err,
        covered=int(covered),
        inferences=sum(s.inferences for s in stores),
        errors=sum(s.errors for s in stores),
        latency_hist=tuple(hist),
        activations=sum(s.activations for s in stores),
        failed_activations=sum(s.failed_activations for s in stores),
        per_store=tuple((float(s.accuracy[3]), float(s.accuracy[1])) for s in stores if s.hours),
    )
