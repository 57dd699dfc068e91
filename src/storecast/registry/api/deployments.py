"""``/v1/deployments``: point a selector of devices at a model version or alias, at once
or as a canary (control A, candidate B, steps with gates); a canary's readout and the
operators' promote / pause / resume / abort."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from storecast.common.auth import Role
from storecast.common.cloud import audited, authorize, principal, set_audit_resource
from storecast.common.web import ApiError, endpoint, parse_body, parse_query, request_id
from storecast.registry import deployments, rollouts, schemas
from storecast.registry.context import current_registry
from storecast.registry.readout import readout as build_readout
from storecast.registry.schemas_rollouts import ActionBody, Readout, ReadoutQuery
from storecast.registry.tables import DeploymentRow

bp = Blueprint("deployments", __name__, url_prefix="/v1/deployments")


@bp.post("")
@endpoint(
    "Deploy a model version or alias to a selector (newest deployment wins), at once or as "
    "a canary: control and candidate, steps growing the candidate's share, health and "
    "accuracy gates",
    tag="deployments",
    roles=("publisher",),
    body=schemas.DeploymentBody,
    responses={201: schemas.DeploymentOut},
)
@audited("deployment.create")
@authorize(Role.PUBLISHER)
def create() -> tuple[dict[str, Any], int]:
    body = parse_body(schemas.DeploymentBody)
    chosen = body.candidate or body
    target = f"v{chosen.version}" if chosen.version is not None else f"@{chosen.alias}"
    set_audit_resource(
        f"deployment:{body.model}/{target}",
        selector=body.selector.model_dump(mode="json"),
        strategy=body.strategy.kind,
    )
    registry = current_registry()
    row = deployments.create_deployment(registry, body, principal())
    set_audit_resource(f"deployment:{row.id}", model=row.model, target=target)
    return _out(row), 201


@bp.get("")
@endpoint(
    "List deployments, newest first",
    tag="deployments",
    roles=("viewer", "publisher"),
    responses={200: schemas.DeploymentList},
)
@authorize(Role.VIEWER, Role.PUBLISHER)
def list_deployments() -> dict[str, Any]:
    with current_registry().db.transaction() as session:
        rows = session.execute(select(DeploymentRow).order_by(DeploymentRow.id.desc())).scalars()
        aliases = deployments.load_aliases(session)
        out = [deployments.deployment_out(row, aliases) for row in rows]
    return schemas.DeploymentList(deployments=out).model_dump(mode="json")


@bp.get("/<int(max=2147483647):deployment_id>")
@endpoint(
    "A deployment: its arms and their weights, strategy, step and status",
    tag="deployments",
    roles=("viewer", "publisher"),
    responses={200: schemas.DeploymentOut},
)
@authorize(Role.VIEWER, Role.PUBLISHER)
def show(deployment_id: int) -> dict[str, Any]:
    with current_registry().db.transaction() as session:
        row = session.get(DeploymentRow, deployment_id)
        if row is None:
            raise ApiError(404, "not_found", f"no deployment {deployment_id}")
    return _out(row)


def _out(row: DeploymentRow) -> dict[str, Any]:
    with current_registry().db.transaction() as session:
        aliases = deployments.load_aliases(session)
    out: dict[str, Any] = deployments.deployment_out(row, aliases).model_dump(mode="json")
    return out


@bp.get("/<int(max=2147483647):deployment_id>/readout")
@endpoint(
    "A deployment's A/B readout since it started: per arm stores, forecast-hours, WAPE "
    "with its interval, bias, coverage, latency, errors, activations; WAPE B − A with its "
    "95% interval and a verdict; the gates as the controller would see them now; decisions. "
    "The evidence comes from the snapshot the controller stores at each tick while it is "
    "recent (`as_of`, `source`); `fresh=true` computes it now, and `since`/`until` compute "
    "it over another window",
    tag="deployments",
    roles=("viewer", "publisher"),
    query=ReadoutQuery,
    responses={200: Readout},
)
@authorize(Role.VIEWER, Role.PUBLISHER)
def readout(deployment_id: int) -> dict[str, Any]:
    query = parse_query(ReadoutQuery)
    registry = current_registry()
    found = build_readout(
        registry.db,
        deployment_id,
        registry.config.clock.now(),
        max_age=registry.config.readout_max_age,
        fresh=query.fresh,
        since=query.since,
        until=query.until,
    )
    out: dict[str, Any] = found.model_dump(mode="json")
    return out


def _act(deployment_id: int, action: str) -> dict[str, Any]:
    set_audit_resource(f"deployment:{deployment_id}")
    body = parse_body(ActionBody)
    if body.reason:
        set_audit_resource(f"deployment:{deployment_id}", reason=body.reason)
    who = principal()
    row = rollouts.operate(
        current_registry().db,
        deployment_id,
        action,
        who.actor,
        body.reason,
        role=who.role.value,
        request_id=request_id(),
    )
    set_audit_resource(f"deployment:{deployment_id}", status=row.status, step_index=row.step_index)
    return _out(row)


_ACTION_ROLES = ("publisher",)


@bp.post("/<int(max=2147483647):deployment_id>/promote")
@endpoint(
    "Move a canary to its next step now (operator override); from the last step it "
    "completes and the promote alias moves to the candidate",
    tag="deployments",
    roles=_ACTION_ROLES,
    body=ActionBody,
    responses={200: schemas.DeploymentOut},
)
@audited("rollout.promote")
@authorize(Role.PUBLISHER)
def promote(deployment_id: int) -> dict[str, Any]:
    return _act(deployment_id, "promote")


@bp.post("/<int(max=2147483647):deployment_id>/pause")
@endpoint(
    "Freeze a canary where it stands (weights stay; the controller leaves it alone)",
    tag="deployments",
    roles=_ACTION_ROLES,
    body=ActionBody,
    responses={200: schemas.DeploymentOut},
)
@audited("rollout.pause")
@authorize(Role.PUBLISHER)
def pause(deployment_id: int) -> dict[str, Any]:
    return _act(deployment_id, "pause")


@bp.post("/<int(max=2147483647):deployment_id>/resume")
@endpoint(
    "Let the controller move a paused canary again",
    tag="deployments",
    roles=_ACTION_ROLES,
    body=ActionBody,
    responses={200: schemas.DeploymentOut},
)
@audited("rollout.resume")
@authorize(Role.PUBLISHER)
def resume(deployment_id: int) -> dict[str, Any]:
    return _act(deployment_id, "resume")


@bp.post("/<int(max=2147483647):deployment_id>/abort")
@endpoint(
    "Stop a canary: every store goes back to the control (status aborted)",
    tag="deployments",
    roles=_ACTION_ROLES,
    body=ActionBody,
    responses={200: schemas.DeploymentOut},
)
@audited("rollout.abort")
@authorize(Role.PUBLISHER)
def abort(deployment_id: int) -> dict[str, Any]:
    return _act(deployment_id, "abort")
