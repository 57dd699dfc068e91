"""``/v1/devices``: enrolment, listing, decommissioning, and the assignment poll."""

from __future__ import annotations

from typing import Any, cast

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from storecast.common.auth import Role, allows
from storecast.common.cloud import (
    audited,
    authenticate,
    authorize,
    principal,
    set_audit_resource,
)
from storecast.common.web import ApiError, endpoint, parse_body, parse_query
from storecast.registry import fleet, schemas
from storecast.registry.context import current_registry
from storecast.registry.tables import DeviceRow

bp = Blueprint("devices", __name__, url_prefix="/v1/devices")

_POLLERS = frozenset({Role.DEVICE})


def _cache() -> fleet.AssignmentCache:
    return cast(fleet.AssignmentCache, current_app.extensions[fleet.CACHE_EXTENSION])


def _own_device_or_staff(device_id: str, staff: tuple[Role, ...]) -> None:
    who = principal()
    if who.role is Role.DEVICE:
        if who.device_id != device_id:
            raise ApiError(403, "forbidden", "a device may only see its own resources")
        return
    if who.role is not Role.ADMIN and who.role not in staff:
        raise ApiError(403, "forbidden", f"role {who.role.value!r} may not call this endpoint")


@bp.post("")
@endpoint(
    "Enrol a device; its token is returned once",
    tag="devices",
    roles=("admin",),
    body=schemas.EnrolBody,
    responses={201: schemas.Enrolled},
)
@audited("device.enrol")
@authorize(Role.ADMIN)
def enrol() -> tuple[dict[str, Any], int]:
    body = parse_body(schemas.EnrolBody)
    set_audit_resource(f"device:{body.device_id}", store_id=body.store_id, region=body.region)
    enrolled = fleet.enrol(current_registry(), body, principal())
    set_audit_resource(f"device:{body.device_id}", token_id=enrolled.token_id)
    return enrolled.model_dump(mode="json"), 201


@bp.get("")
@endpoint("List devices", tag="devices", roles=("viewer",), responses={200: schemas.DeviceList})
@authorize(Role.VIEWER)
def list_devices() -> dict[str, Any]:
    with current_registry().db.transaction() as session:
        rows = session.execute(select(DeviceRow).order_by(DeviceRow.device_id)).scalars().all()
    return schemas.DeviceList(devices=[fleet.device_out(r) for r in rows]).model_dump(mode="json")


@bp.get("/<device_id>")
@endpoint(
    "A device (a device token sees only itself)",
    tag="devices",
    roles=("viewer", "device"),
    responses={200: schemas.DeviceOut},
)
@authorize(Role.VIEWER, Role.DEVICE)
def show_device(device_id: str) -> dict[str, Any]:
    _own_device_or_staff(device_id, (Role.VIEWER,))
    with current_registry().db.transaction() as session:
        row = fleet.get_device(session, device_id)
    return fleet.device_out(row).model_dump(mode="json")


@bp.delete("/<device_id>")
@endpoint(
    "Decommission a device and revoke its tokens",
    tag="devices",
    roles=("admin",),
    responses={200: schemas.DeviceOut},
)
@audited("device.decommission")
@authorize(Role.ADMIN)
def decommission(device_id: str) -> dict[str, Any]:
    set_audit_resource(f"device:{device_id}")
    row = fleet.decommission(current_registry(), device_id)
    return fleet.device_out(row).model_dump(mode="json")


@bp.post("/<device_id>/token")
@endpoint(
    "Replace a device's token (the old ones stop working); the new one is returned once",
    tag="devices",
    roles=("admin",),
    responses={201: schemas.Enrolled},
)
@audited("device.token_rotate")
@authorize(Role.ADMIN)
def rotate_token(device_id: str) -> tuple[dict[str, Any], int]:
    set_audit_resource(f"device:{device_id}")
    rotated = fleet.rotate_token(current_registry(), device_id, principal())
    set_audit_resource(f"device:{device_id}", token_id=rotated.token_id)
    return rotated.model_dump(mode="json"), 201


@bp.get("/<device_id>/assignment")
@endpoint(
    "The device's poll: what it should run (ETag; 304 when unchanged)",
    tag="devices",
    roles=("device",),
    query=schemas.AssignmentQuery,
    responses={200: schemas.AssignmentOut, 304: None},
)
def assignment(device_id: str) -> Response:
    registry = current_registry()
    # The hot path of a fleet: one query reads the token, the device and the generation,
    # so this does ``authorize(Role.DEVICE)``'s work (same 401 and 403) by itself.
    poll = fleet.AssignmentPoll(registry, _cache(), device_id)
    who = authenticate(poll)
    if not allows(who.role, _POLLERS):
        raise ApiError(403, "forbidden", f"role {who.role.value!r} may not call this endpoint")
    _own_device_or_staff(device_id, ())
    query = parse_query(schemas.AssignmentQuery)
    device, assigned = poll.assignment()
    if device.decommissioned_at is not None:
        raise ApiError(410, "decommissioned", f"device {device_id!r} was decommissioned")
    if who.role is Role.DEVICE:
        fleet.record_seen(
            registry,
            device,
            registry.config.clock.now(),
            query.current_model,
            query.current_version,
        )
    etag = fleet.etag_for(assigned)
    if etag in fleet.if_none_match(request.headers.get("If-None-Match", "")):
        response = Response(status=304)
    else:
        response = jsonify(fleet.assignment_out(device_id, assigned).model_dump(mode="json"))
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "no-cache"
    return response
