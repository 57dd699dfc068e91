"""Canary deployments and rollout decisions, written as the registry writes them (its rows,
migration ``0003``), for the analytics views that read them by table name."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from storecast.registry.tables import DeploymentRow, RolloutDecisionRow

STEP_ENDING = ("promote", "complete", "rollback", "operator_promote", "abort")

PLAN = {
    "steps": [
        {"percent": 5.0, "min_duration_s": 3600.0},
        {"percent": 25.0, "min_duration_s": 3600.0},
        {"percent": 100.0, "min_duration_s": 3600.0},
    ],
    "gates": {"max_error_rate": 0.02, "wape_margin": 0.02},
}


def add_canary(
    session: Session,
    *,
    model: str = "demand-lstm",
    arms: list[dict[str, Any]],
    status: str = "active",
    step_index: int = 0,
    created_at: datetime,
    plan: dict[str, Any] | None = None,
) -> int:
    """A canary deployment row; its id."""
    found = session.execute(
        insert(DeploymentRow)
        .values(
            model=model,
            version=arms[-1]["version"],
            alias=arms[-1]["alias"],
            selector_json=json.dumps({"kind": "all", "values": []}),
            status=status,
            created_at=created_at,
            created_by="tok_x:ops",
            strategy="canary",
            salt="salt-1",
            variants_json=json.dumps(arms),
            plan_json=json.dumps(plan or PLAN),
            step_index=step_index,
            step_started_at=created_at,
            promote_alias="production",
        )
        .returning(DeploymentRow.id)
    ).scalar_one()
    return int(found)


def add_decision(
    session: Session,
    deployment_id: int,
    *,
    action: str,
    decided_at: datetime,
    step_index: int = 0,
    percent_before: float = 5.0,
    percent_after: float = 0.0,
    reason: str = "",
    gates: list[dict[str, Any]] | None = None,
) -> None:
    """A rollout decision row (``gates`` as ``GateResult.to_dict`` writes them)."""
    session.execute(
        insert(RolloutDecisionRow).values(
            deployment_id=deployment_id,
            step_index=step_index,
            kind="step" if action in STEP_ENDING else None,
            action=action,
            percent_before=percent_before,
            percent_after=percent_after,
            reason=reason,
            gates_json=json.dumps(gates or []),
            decided_at=decided_at,
            decided_by="controller",
        )
    )
