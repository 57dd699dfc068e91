"""``/v1/deployments``: point a selector of devices at a model version or alias."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from storecast.common.auth import Role
from storecast.common.cloud import audited, authorize, principal, set_audit_resource
from storecast.common.web import ApiError, endpoint, parse_body
from storecast.registry import fleet, schemas
from storecast.registry.context import current_registry
from storecast.registry.tables import DeploymentRow

bp = Blueprint("deployments", __name__, url_prefix="/v1/deployments")


@bp.post("")
@endpoint(
    "Deploy a model version or alias to a selector (newest deployment wins)",
    tag="deployments",
    roles=("publisher",),
    body=schemas.DeploymentBody,
    responses={201: schemas.DeploymentOut},
)
@audited("deployment.create")
@authorize(Role.PUBLISHER)
def create() -> tuple[dict[str, Any], int]:
    body = parse_body(schemas.DeploymentBody)
    target = f"v{body.version}" if body.version is not None else f"@{body.alias}"
    set_audit_resource(
        f"deployment:{body.model}/{target}", selector=body.selector.model_dump(mode="json")
    )
    row = fleet.create_deployment(current_registry(), body, principal())
    set_audit_resource(f"deployment:{row.id}", model=row.model, target=target)
    return fleet.deployment_out(row).model_dump(mode="json"), 201


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
        out = [fleet.deployment_out(row) for row in rows]
    return schemas.DeploymentList(deployments=out).model_dump(mode="json")


@bp.get("/<int(max=2147483647):deployment_id>")
@endpoint(
    "A deployment",
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
        return fleet.deployment_out(row).model_dump(mode="json")
