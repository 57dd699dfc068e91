"""A deployment's readout: what each arm has shown since the deployment began, B − A with
its confidence interval and a verdict, the gates as they stand now, and the decisions so far.

Arms are counted with the stores they cover at the canary's current step (its last one
once rolled back, aborted or completed, so a post-mortem still sees both arms). The gates
are ``rollout.decide`` over the evidence since the step began, exactly as the controller
would see it at this moment, and are not acted on.

The evidence (arms, difference, verdict, gates) aggregates the rollups of every store of
the deployment over its whole life: seconds at 10,000 stores. It is therefore kept as a
snapshot (``deployment_readouts``), stored by the controller's tick and by any reader
that had to compute it, and served while younger than ``max_age`` and computed at the
deployment's present status and step (``snapshot_usable``). Status, step and decisions
are cheap and read at every request, so they are never stale.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storecast.analytics.evidence import ArmEvidence
from storecast.analytics.stats import wape_difference_interval
from storecast.common.cloud import Database
from storecast.common.web import ApiError
from storecast.registry.arms import (
    ArmStores,
    EvidenceQuery,
    analytics_evidence,
    arms_now,
    evidence_for,
)
from storecast.registry.config import MIN_READOUT_MAX_AGE_S
from storecast.registry.deployments import IN_PROGRESS, plan_of, weights_of
from storecast.registry.rollout import CanaryPlan, decide, verdict
from storecast.registry.schemas_rollouts import (
    ArmReadout,
    DecisionOut,
    DifferenceOut,
    GateCheck,
    GateOut,
    Readout,
    ReadoutEvidence,
    ReadoutWindow,
    Source,
    StepOut,
)
from storecast.registry.tables import DeploymentReadoutRow, DeploymentRow, RolloutDecisionRow

log = logging.getLogger(__name__)

BASIS = "since the deployment started; arms as of the current (or last) step"
CUSTOM = "the window asked for (since/until); arms as of the current (or last) step"


@dataclass(frozen=True)
class Snapshot:
    """A stored evidence part and when it was computed."""

    computed_at: datetime
    evidence: ReadoutEvidence


def snapshot_usable(
    snapshot: Snapshot,
    status: str,
    step_index: int | None,
    now: datetime,
    max_age: timedelta,
) -> bool:
    """Whether ``snapshot`` may stand for the evidence of a deployment now at ``status``
    and ``step_index``: computed at that status and step, at most ``max_age`` ago."""
    same_state = (snapshot.evidence.status, snapshot.evidence.step_index) == (status, step_index)
    return same_state and now - snapshot.computed_at <= max_age


def readout(
    db: Database,
    deployment_id: int,
    now: datetime,
    *,
    max_age: timedelta = timedelta(seconds=MIN_READOUT_MAX_AGE_S),
    fresh: bool = False,
    query: EvidenceQuery | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Readout:
    """The readout of deployment ``deployment_id`` at ``now`` (404 when there is none):
    the evidence from its snapshot when usable, else (and with ``fresh``) computed now
    and stored. ``since``/``until`` ask for another window (e.g. simulated time): computed
    now, never stored."""
    row, decisions, snapshot = _current(db, deployment_id)
    if since is not None or until is not None:
        evidence = compute_evidence(db, deployment_id, now, query, since=since, until=until)
        return assemble(row, decisions, evidence, now, "live")
    if (
        not fresh
        and snapshot is not None
        and snapshot_usable(snapshot, row.status, row.step_index, now, max_age)
    ):
        return assemble(row, decisions, snapshot.evidence, snapshot.computed_at, "snapshot")
    evidence = compute_evidence(db, deployment_id, now, query)
    store(db, deployment_id, now, evidence)
    row, decisions, _ = _current(db, deployment_id)  # decisions taken meanwhile show
    return assemble(row, decisions, evidence, now, "live")


def refresh(
    db: Database, deployment_id: int, now: datetime, query: EvidenceQuery | None = None
) -> ReadoutEvidence:
    """Compute deployment ``deployment_id``'s evidence at ``now`` and store it."""
    evidence = compute_evidence(db, deployment_id, now, query)
    store(db, deployment_id, now, evidence)
    return evidence


def store(
    db: Database, deployment_id: int, computed_at: datetime, evidence: ReadoutEvidence
) -> None:
    """Keep ``evidence`` as the deployment's snapshot unless a newer one is stored already
    (one short write; a replica storing one at the same instant wins)."""
    body = evidence.model_dump_json()
    try:
        with db.transaction(write=True) as session:
            found = session.get(
                DeploymentReadoutRow, deployment_id, with_for_update=True, populate_existing=True
            )
            if found is None:
                session.add(
                    DeploymentReadoutRow(
                        deployment_id=deployment_id, computed_at=computed_at, body_json=body
                    )
                )
            elif found.computed_at <= computed_at:
                found.computed_at, found.body_json = computed_at, body
    except IntegrityError:  # another replica inserted the first snapshot meanwhile
        log.debug("deployment %d: a concurrent readout snapshot was kept", deployment_id)


def compute_evidence(
    db: Database,
    deployment_id: int,
    now: datetime,
    query: EvidenceQuery | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ReadoutEvidence:
    """The costly part of the readout, read from the rollups now (404 for no deployment);
    the window is since the deployment started, unless ``since``/``until`` say otherwise."""
    query = query or analytics_evidence()
    with db.transaction() as session:
        row = _deployment(session, deployment_id)
        plan = plan_of(row)
        arms = arms_now(session, row, as_of_step=True)
        custom = since is not None or until is not None
        since = since or row.created_at
        end = until or now
        evidence = evidence_for(session, row.model, arms, since, end, query)
        gates_now = None
        if plan is not None and row.status in IN_PROGRESS:
            gates_now = _gates_now(session, row, plan, arms, evidence, now, query)
    confidence = plan.gates.confidence if plan else 0.95
    diff = None
    if len(evidence) == 2:
        diff = wape_difference_interval(evidence[0].per_store, evidence[1].per_store, confidence)
    weights = [weight for _, weight in weights_of(row)]
    return ReadoutEvidence(
        status=row.status,
        step_index=row.step_index,
        window=ReadoutWindow(since=since, until=end, basis=CUSTOM if custom else BASIS),
        arms=[
            _arm_out(arm, ev, weight, confidence)
            for arm, ev, weight in zip(arms, evidence, weights, strict=True)
        ],
        difference=None
        if diff is None
        else DifferenceOut(
            estimate=diff.estimate, low=diff.low, high=diff.high, confidence=confidence
        ),
        verdict=verdict(diff),
        gates_now=gates_now,
    )


def assemble(
    row: DeploymentRow,
    decisions: list[DecisionOut],
    evidence: ReadoutEvidence,
    as_of: datetime,
    source: Source,
) -> Readout:
    """The readout: the deployment and its decisions as they are, the evidence as of ``as_of``."""
    return Readout(
        deployment_id=row.id,
        model=row.model,
        strategy=row.strategy,
        status=row.status,
        as_of=as_of,
        source=source,
        window=evidence.window,
        step=_step_out(row, plan_of(row)),
        arms=evidence.arms,
        difference=evidence.difference,
        verdict=evidence.verdict,
        gates_now=evidence.gates_now,
        decisions=decisions,
    )


def _deployment(session: Session, deployment_id: int) -> DeploymentRow:
    row = session.get(DeploymentRow, deployment_id)
    if row is None:
        raise ApiError(404, "not_found", f"no deployment {deployment_id}")
    return row


def _current(
    db: Database, deployment_id: int
) -> tuple[DeploymentRow, list[DecisionOut], Snapshot | None]:
    """The deployment, its decisions and its snapshot as they are (cheap reads)."""
    with db.transaction() as session:
        row = _deployment(session, deployment_id)
        decisions = [
            _decision_out(d)
            for d in session.execute(
                select(RolloutDecisionRow)
                .where(RolloutDecisionRow.deployment_id == deployment_id)
                .order_by(RolloutDecisionRow.id)
            ).scalars()
        ]
        stored = session.get(DeploymentReadoutRow, deployment_id)
        snapshot = None if stored is None else _snapshot_of(stored)
    return row, decisions, snapshot


def _snapshot_of(stored: DeploymentReadoutRow) -> Snapshot | None:
    try:
        evidence = ReadoutEvidence.model_validate_json(stored.body_json)
    except ValidationError:  # written by another release: compute it again
        log.warning("deployment %d: unreadable readout snapshot", stored.deployment_id)
        return None
    return Snapshot(stored.computed_at, evidence)


def _gates_now(
    session: Session,
    row: DeploymentRow,
    plan: CanaryPlan,
    arms: list[ArmStores],
    evidence: list[ArmEvidence],
    now: datetime,
    query: EvidenceQuery,
) -> GateCheck:
    started = row.step_started_at or row.created_at
    if started != row.created_at:  # else the deployment's window is the step's
        evidence = evidence_for(session, row.model, arms, started, now, query)
    decision = decide(plan, row.step_index or 0, started, now, evidence[0], evidence[1])
    return GateCheck(
        action=decision.action,
        reason=decision.reason,
        since=started,
        gates=[GateOut(**g.to_dict()) for g in decision.gates],
    )


def _step_out(row: DeploymentRow, plan: CanaryPlan | None) -> StepOut | None:
    if plan is None:
        return None
    index = row.step_index or 0
    step = plan.steps[index]
    return StepOut(
        index=index,
        of=len(plan.steps),
        percent=step.percent,
        started_at=row.step_started_at,
        min_duration_s=step.min_duration_s,
        min_forecast_hours=step.min_forecast_hours,
        min_inferences=step.min_inferences,
    )


def _arm_out(arm: ArmStores, ev: ArmEvidence, weight: float, confidence: float) -> ArmReadout:
    p50, p95, p99 = ev.latency_ms()
    interval = ev.wape_interval(confidence)
    return ArmReadout(
        arm=arm.arm,
        version=arm.version,
        alias=arm.alias,
        weight=weight,
        stores=len(arm.stores),
        reporting_stores=ev.stores,
        forecast_hours=ev.forecast_hours,
        wape=ev.wape,
        wape_low=interval[0] if interval else None,
        wape_high=interval[1] if interval else None,
        bias=ev.bias,
        coverage=ev.coverage,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        inferences=ev.inferences,
        errors=ev.errors,
        error_rate=ev.error_rate,
        activations=ev.activations,
        failed_activations=ev.failed_activations,
    )


def _decision_out(row: RolloutDecisionRow) -> DecisionOut:
    gates = json.loads(row.gates_json).get("gates", []) if row.gates_json else []
    return DecisionOut(
        id=row.id,
        step_index=row.step_index,
        action=row.action,
        percent_before=row.percent_before,
        percent_after=row.percent_after,
        reason=row.reason,
        gates=[GateOut(**g) for g in gates],
        decided_at=row.decided_at,
        decided_by=row.decided_by,
    )
