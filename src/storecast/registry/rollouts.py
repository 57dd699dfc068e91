"""The rollout controller and the operators' actions: the I/O around ``rollout.decide``.

``tick`` visits every active canary: it reads what arms A and B have shown since the step
began (``storecast.analytics.evidence.arms_evidence`` over the stores now in each arm),
asks ``decide`` and applies what it answers: promote (next step), complete (B takes every
store, ``promote_alias`` moves to B's version) or rollback (B's stores go back to A).

Evidence is read without any lock; the change is then made in one write transaction that
takes the registry lock and the deployment's row lock (``SELECT ... FOR UPDATE`` on
PostgreSQL, the write lock on SQLite) and first checks that the deployment is still
active at the step the decision was taken in. A second replica deciding the same step
finds it moved on and does nothing, and the unique (deployment_id, step_index, kind)
constraint of ``rollout_decisions`` backs that up: one step-ending decision per step.

Every applied change writes a ``rollout_decisions`` row, an audit record, bumps the
assignment generation (pollers see the new arms at once), drops the deployment's readout
snapshot and logs a line; operators' actions do the same. After deciding, the tick also
stores a fresh readout snapshot of every canary still in progress (active or paused) and
of any it just ended (``readout.refresh``: the heavy read outside any lock, one short
write), so ``GET .../readout`` answers from it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storecast.common import audit
from storecast.common.cloud import Database
from storecast.common.web import ApiError
from storecast.registry import readout
from storecast.registry.arms import EvidenceQuery, analytics_evidence, arms_now, evidence_for
from storecast.registry.catalog import point_alias
from storecast.registry.deployments import (
    ABORTED,
    ACTIVE,
    CANARY,
    COMPLETED,
    IN_PROGRESS,
    PAUSED,
    ROLLED_BACK,
    candidate_weight,
    load_aliases,
    plan_of,
    variants_of,
)
from storecast.registry.rollout import CanaryPlan, Decision, decide
from storecast.registry.signing import bump_generation, lock_state
from storecast.registry.tables import DeploymentReadoutRow, DeploymentRow, RolloutDecisionRow

log = logging.getLogger(__name__)

CONTROLLER, SYSTEM = "controller", "system"  # actor and role of the controller's decisions
STEP = "step"  # rollout_decisions.kind of a decision that ends a step


# -- the controller ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticked:
    """One canary at one tick: the decision, and whether this tick applied it."""

    deployment_id: int
    decision: Decision
    applied: bool


_CANARIES_IN_PROGRESS = (
    select(DeploymentRow.id)
    .where(DeploymentRow.strategy == CANARY, DeploymentRow.status.in_(IN_PROGRESS))
    .order_by(DeploymentRow.id)
)


def tick(
    db: Database,
    now: datetime | None = None,
    *,
    evidence: EvidenceQuery | None = None,
    snapshots: bool = True,
) -> list[Ticked]:
    """Decide every active canary once and apply promotions, completions and rollbacks;
    then (``snapshots``) store the readout of every canary that was active or paused."""
    now = now or db.clock.now()
    query = evidence or analytics_evidence()
    with db.transaction() as session:
        ids = list(session.execute(_CANARIES_IN_PROGRESS).scalars())
    done = []
    for deployment_id in ids:
        try:
            ticked = _tick_one(db, deployment_id, now, query)
        except Exception:  # one broken canary must not stop the others
            log.exception("rollout controller: deployment %d could not be decided", deployment_id)
            continue
        if ticked is not None:
            done.append(ticked)
        if snapshots:
            try:
                readout.refresh(db, deployment_id, now, query)
            except Exception:  # the next tick or a reader computes it again
                log.exception("rollout controller: no readout snapshot for %d", deployment_id)
    return done


def _tick_one(
    db: Database, deployment_id: int, now: datetime, query: EvidenceQuery
) -> Ticked | None:
    with db.transaction() as session:
        row = session.get(DeploymentRow, deployment_id)
        plan = None if row is None else plan_of(row)
        if row is None or plan is None or row.status != ACTIVE:
            return None
        step, started = row.step_index or 0, row.step_started_at or row.created_at
        a, b = evidence_for(session, row.model, arms_now(session, row), started, now, query)
    decision = decide(plan, step, started, now, a, b)
    if decision.action == "wait":
        log.debug("deployment %d: wait (%s)", deployment_id, decision.reason)
        return Ticked(deployment_id, decision, False)
    try:
        applied = _apply(db, deployment_id, step, decision, now)
    except IntegrityError:  # another replica recorded this step's decision first
        applied = False
    if applied:
        log.info(
            "deployment %d: %s at step %d (%s)",
            deployment_id,
            decision.action,
            step + 1,
            decision.reason,
        )
    return Ticked(deployment_id, decision, applied)


def _apply(
    db: Database, deployment_id: int, step_index: int, decision: Decision, now: datetime
) -> bool:
    """Apply the controller's ``decision`` unless the step was decided meanwhile."""
    with db.transaction(write=True) as session:
        row = _locked(session, deployment_id)
        if row.status != ACTIVE or row.step_index != step_index:
            return False
        before, who = candidate_weight(row), (CONTROLLER, SYSTEM)
        _audit(session, now, who, f"rollout.{decision.action}", row, decision.to_dict())
        if decision.action == "promote":
            _next_step(row, now)
        elif decision.action == "complete":
            _complete(session, row, now, who, "-")  # the alias move's audit record follows
        else:
            row.status = ROLLED_BACK
        row.updated_at = now
        _record(
            session,
            row,
            step_index,
            decision.action,
            before,
            decision.reason,
            now,
            CONTROLLER,
            json.dumps(decision.to_dict()),
        )
        _drop_snapshot(session, row.id)
        return True


# -- operators ----------------------------------------------------------------------------------

OPERATOR_ACTIONS = ("promote", "pause", "resume", "abort")


def operate(
    db: Database,
    deployment_id: int,
    action: str,
    actor: str,
    reason: str | None = None,
    *,
    role: str = "-",
    request_id: str = "-",
) -> DeploymentRow:
    """An operator's ``promote`` (next step now), ``pause``, ``resume`` or ``abort`` (back
    to A); 404 for no such deployment, 409 when the deployment cannot make that move."""
    if action not in OPERATOR_ACTIONS:
        raise ValueError(f"unknown rollout action {action!r}")
    now = db.clock.now()
    with db.transaction(write=True) as session:
        row = _locked(session, deployment_id)
        _check_move(row, action)
        plan = plan_of(row)
        step, before = row.step_index or 0, candidate_weight(row)
        kind: str | None = None
        recorded = action
        if action == "promote":
            kind, recorded = STEP, "operator_promote"
            if _last_before_full(plan, step):
                _complete(session, row, now, (actor, role), request_id)
            else:
                _next_step(row, now)
        elif action == "pause":
            row.status = PAUSED
        elif action == "resume":
            row.status = ACTIVE
        else:
            kind, row.status = STEP, ABORTED
        row.updated_at = now
        why = reason or f"operator {action}"
        _record(session, row, step, recorded, before, why, now, actor, None, kind)
        _drop_snapshot(session, row.id)
        log.info("deployment %d: %s by %s at step %d", deployment_id, recorded, actor, step + 1)
        return row


def _check_move(row: DeploymentRow, action: str) -> None:
    if row.strategy != CANARY:
        raise ApiError(
            409,
            "not_a_rollout",
            f"deployment {row.id} is immediate: it has no rollout to {action}",
        )
    allowed = {"promote": IN_PROGRESS, "pause": (ACTIVE,), "resume": (PAUSED,)}
    if row.status not in allowed.get(action, IN_PROGRESS):
        wanted = " or ".join(allowed.get(action, IN_PROGRESS))
        raise ApiError(
            409,
            "invalid_transition",
            f"deployment {row.id} is {row.status.replace('_', ' ')}: only {wanted} canaries "
            f"can be {_past(action)}",
        )


def _past(action: str) -> str:
    return {"promote": "promoted", "pause": "paused", "resume": "resumed"}.get(action, "aborted")


# -- shared steps ---------------------------------------------------------------------------------


def _locked(session: Session, deployment_id: int) -> DeploymentRow:
    """The deployment under the registry lock and its own row lock (404 if missing)."""
    lock_state(session)  # first, as every registry writer does: no lock-order deadlocks
    row = session.get(DeploymentRow, deployment_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise ApiError(404, "not_found", f"no deployment {deployment_id}")
    return row


def _drop_snapshot(session: Session, deployment_id: int) -> None:
    """Forget the readout snapshot: the arms or the status it was computed for changed."""
    session.execute(
        delete(DeploymentReadoutRow).where(DeploymentReadoutRow.deployment_id == deployment_id)
    )


def _last_before_full(plan: CanaryPlan | None, step: int) -> bool:
    steps = plan.steps if plan else ()
    return step + 1 >= len(steps) or steps[step + 1].percent >= 100


def _next_step(row: DeploymentRow, now: datetime) -> None:
    row.step_index = (row.step_index or 0) + 1
    row.step_started_at = now


def _complete(
    session: Session,
    row: DeploymentRow,
    now: datetime,
    who: tuple[str, str],
    request_id: str,
) -> None:
    """B takes every store; ``promote_alias`` moves to B's version (audited)."""
    row.status = COMPLETED  # step_index stays: the step B completed from
    if row.promote_alias is None:
        return
    candidate = variants_of(row)[-1]
    version = candidate.version
    if version is None:
        version = load_aliases(session).get((row.model, candidate.alias or ""))
    if version is None:
        raise ApiError(409, "alias_unset", f"the candidate's alias {candidate.alias!r} is unset")
    point_alias(session, row.model, row.promote_alias, version, who[0], now)
    detail = {"version": version, "deployment_id": row.id}
    resource = f"model:{row.model}@{row.promote_alias}"
    _audit(session, now, who, "model.alias", row, detail, resource, request_id)


def _record(
    session: Session,
    row: DeploymentRow,
    step_index: int,
    action: str,
    before: float,
    reason: str,
    now: datetime,
    actor: str,
    gates_json: str | None,
    kind: str | None = STEP,
) -> None:
    session.add(
        RolloutDecisionRow(
            deployment_id=row.id,
            step_index=step_index,
            kind=kind,
            action=action,
            percent_before=before,
            percent_after=candidate_weight(row),
            reason=reason,
            gates_json=gates_json,
            decided_at=now,
            decided_by=actor,
        )
    )
    session.flush()  # the unique constraint speaks here, inside the transaction
    bump_generation(session)


def _audit(
    session: Session,
    now: datetime,
    who: tuple[str, str],
    action: str,
    row: DeploymentRow,
    detail: dict[str, Any],
    resource: str | None = None,
    request_id: str = "-",
) -> None:
    entry = audit.AuditEntry(
        ts=now,
        actor=who[0],
        role=who[1],
        action=action,
        resource=resource or f"deployment:{row.id}",
        outcome="ok",
        status=200,
        request_id=request_id if request_id != "-" else os.urandom(16).hex(),
        client_addr="-",
        detail=detail,
    )
    audit.append(session, entry)
