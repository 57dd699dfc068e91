"""Canary rollouts as analytics sees them: arms by version, the rollouts panel, rollbacks.

The registry owns ``deployments`` (with a canary's ``strategy``, ``variants_json``,
``plan_json``, ``step_index``, ...) and ``rollout_decisions`` (one row per decision the
controller or an operator took); analytics reads both by name, like ``devices``, and
parses their JSON columns with the pure functions below (forgiving: a column it cannot
read shows as empty rather than failing the page).

    version_arms        (model, version) -> its arm in the newest canary in force
    rollouts            canaries in force, and the others decided on in a window
    rollout_incidents   rollbacks and aborts in a window, with the gates that failed
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, String, Text, column, func, select, table
from sqlalchemy.orm import Session

from storecast.analytics.schemas import (
    GateOut,
    RolloutArm,
    RolloutDecisionOut,
    RolloutIncident,
    RolloutList,
    RolloutOut,
    Window,
)
from storecast.common.db import UTCDateTime

__all__ = [
    "IN_FORCE",
    "ROLLBACK_ACTIONS",
    "current_percent",
    "parse_arms",
    "parse_gates",
    "plan_percents",
    "rollout_incidents",
    "rollouts",
    "version_arms",
]

CANARY = "canary"  # deployments.strategy of a staged A/B rollout
IN_FORCE = ("active", "paused")  # statuses whose arms still decide what stores run
ROLLBACK_ACTIONS = ("rollback", "abort")  # decisions that are incidents

# The registry's tables, as far as the rollout views read them.
_CANARIES = table(
    "deployments",
    column("id", Integer),
    column("model", String),
    column("strategy", String),
    column("variants_json", Text),
    column("plan_json", Text),
    column("step_index", Integer),
    column("step_started_at", UTCDateTime()),
    column("promote_alias", String),
    column("status", String),
    column("created_at", UTCDateTime()),
)
_DECISIONS = table(
    "rollout_decisions",
    column("id", Integer),
    column("deployment_id", Integer),
    column("step_index", Integer),
    column("action", String),
    column("percent_before", Float),
    column("percent_after", Float),
    column("reason", Text),
    column("gates_json", Text),
    column("decided_at", UTCDateTime()),
    column("decided_by", String),
)
_ALIASES = table(
    "aliases", column("name", String), column("alias", String), column("version", Integer)
)


# -- the JSON columns (pure) -------------------------------------------------------------------


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_arms(variants_json: str | None) -> list[RolloutArm]:
    """The arms of ``deployments.variants_json`` (``[{"arm", "version", "alias"}, ...]``)."""
    found = _loads(variants_json)
    if not isinstance(found, list):
        return []
    arms = []
    for item in found:
        if isinstance(item, dict) and isinstance(item.get("arm"), str):
            version = item.get("version")
            alias = item.get("alias")
            arms.append(
                RolloutArm(
                    arm=item["arm"],
                    version=version if isinstance(version, int) else None,
                    alias=alias if isinstance(alias, str) else None,
                )
            )
    return arms


def plan_percents(plan_json: str | None) -> list[float]:
    """B's share at each step of ``deployments.plan_json`` (``{"steps": [{"percent"}, ...]}``)."""
    plan = _loads(plan_json)
    steps = plan.get("steps") if isinstance(plan, dict) else None
    if not isinstance(steps, list):
        return []
    percents = [_number(s.get("percent")) if isinstance(s, dict) else None for s in steps]
    return [p for p in percents if p is not None]


def current_percent(status: str, steps: Sequence[float], step_index: int | None) -> float | None:
    """B's share of the stores now: its step's while in force, 100 once completed, else 0."""
    if status == "completed":
        return 100.0
    if status in ("rolled_back", "aborted"):
        return 0.0
    if step_index is not None and 0 <= step_index < len(steps):
        return steps[step_index]
    return None


def parse_gates(gates_json: str | None) -> list[GateOut]:
    """The gate results of ``rollout_decisions.gates_json`` (a list, or a decision's dict)."""
    found = _loads(gates_json)
    if isinstance(found, dict):
        found = found.get("gates")
    if not isinstance(found, list):
        return []
    gates = []
    for item in found:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        passed = item.get("passed")
        gates.append(
            GateOut(
                name=item["name"],
                passed=passed if isinstance(passed, bool) else None,
                value=_number(item.get("value")),
                limit=_number(item.get("limit")),
                detail=str(item.get("detail") or ""),
            )
        )
    return gates


# -- queries ------------------------------------------------------------------------------------


def _resolved(session: Session, model: str, arms: list[RolloutArm]) -> list[RolloutArm]:
    """``arms`` with an alias arm's version filled in from the alias as it points now."""
    wanted = [arm.alias for arm in arms if arm.version is None and arm.alias is not None]
    if not wanted:
        return arms
    a = _ALIASES.c
    rows = session.execute(select(a.alias, a.version).where(a.name == model, a.alias.in_(wanted)))
    versions: dict[str, int] = {alias: version for alias, version in rows}
    return [
        arm.model_copy(update={"version": versions.get(arm.alias)})
        if arm.version is None and arm.alias is not None
        else arm
        for arm in arms
    ]


def version_arms(
    session: Session, model_name: str | None = None
) -> dict[tuple[str, int], tuple[int, str]]:
    """``(model, version) -> (deployment id, arm)`` in the newest canary in force of each model."""
    d = _CANARIES.c
    stmt = (
        select(d.id, d.model, d.variants_json)
        .where(d.strategy == CANARY, d.status.in_(IN_FORCE), d.variants_json.is_not(None))
        .order_by(d.id.desc())
    )
    if model_name is not None:
        stmt = stmt.where(d.model == model_name)
    found: dict[tuple[str, int], tuple[int, str]] = {}
    seen: set[str] = set()
    for deployment_id, model, variants in session.execute(stmt):
        arms = parse_arms(variants)
        if model in seen or not arms:
            continue
        seen.add(model)
        for arm in _resolved(session, model, arms):
            if arm.version is not None:
                found.setdefault((model, arm.version), (deployment_id, arm.arm))
    return found


def _decision_out(row: Any) -> RolloutDecisionOut:
    return RolloutDecisionOut(
        action=row.action,
        step_index=row.step_index,
        percent_before=row.percent_before,
        percent_after=row.percent_after,
        reason=row.reason or "",
        gates=parse_gates(row.gates_json),
        decided_at=row.decided_at,
        decided_by=row.decided_by,
    )


def _latest_decisions(session: Session, ids: Iterable[int]) -> dict[int, RolloutDecisionOut]:
    r = _DECISIONS.c
    newest = select(func.max(r.id)).where(r.deployment_id.in_(list(ids))).group_by(r.deployment_id)
    rows = session.execute(select(_DECISIONS).where(r.id.in_(newest))).all()
    return {row.deployment_id: _decision_out(row) for row in rows}


def rollouts(session: Session, at: datetime, window: Window) -> RolloutList:
    """Canaries in force, and the other canaries with a decision in ``window``, newest first."""
    d, r = _CANARIES.c, _DECISIONS.c
    decided = select(r.deployment_id).where(r.decided_at >= window.start, r.decided_at < window.end)
    rows = session.execute(
        select(_CANARIES)
        .where(d.strategy == CANARY, d.status.in_(IN_FORCE) | d.id.in_(decided))
        .order_by(d.id.desc())
    ).all()
    latest = _latest_decisions(session, [row.id for row in rows]) if rows else {}
    found = []
    for row in rows:
        steps = plan_percents(row.plan_json)
        found.append(
            RolloutOut(
                deployment_id=row.id,
                model=row.model,
                status=row.status,
                arms=_resolved(session, row.model, parse_arms(row.variants_json)),
                steps=steps,
                step_index=row.step_index,
                percent=current_percent(row.status, steps, row.step_index),
                step_started_at=row.step_started_at,
                promote_alias=row.promote_alias,
                created_at=row.created_at,
                latest_decision=latest.get(row.id),
            )
        )
    return RolloutList(at=at, window=window, rollouts=found)


def rollout_incidents(session: Session, window: Window) -> list[RolloutIncident]:
    """Rollbacks and aborts decided in ``window``, newest first, with the gates that failed."""
    d, r = _CANARIES.c, _DECISIONS.c
    rows = session.execute(
        select(_DECISIONS, d.model, d.variants_json)
        .join(_CANARIES, d.id == r.deployment_id)
        .where(
            r.action.in_(ROLLBACK_ACTIONS),
            r.decided_at >= window.start,
            r.decided_at < window.end,
        )
        .order_by(r.decided_at.desc(), r.id.desc())
    ).all()
    found = []
    for row in rows:
        arms = _resolved(session, row.model, parse_arms(row.variants_json))
        found.append(
            RolloutIncident(
                deployment_id=row.deployment_id,
                model=row.model,
                action=row.action,
                control_version=arms[0].version if arms else None,
                candidate_version=arms[1].version if len(arms) > 1 else None,
                step_index=row.step_index,
                percent_before=row.percent_before,
                reason=row.reason or "",
                failed_gates=[g for g in parse_gates(row.gates_json) if g.passed is False],
                decided_at=row.decided_at,
                decided_by=row.decided_by,
            )
        )
    return found
