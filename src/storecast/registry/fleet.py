"""Devices and deployments: enrolment, the assignment poll, pointing selectors at models."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storecast.common.auth import Principal, Role, TokenRow, mint_token
from storecast.common.web import ApiError
from storecast.registry import schemas
from storecast.registry.catalog import actor_name, get_version, load_catalog
from storecast.registry.context import Registry
from storecast.registry.resolver import (
    Assignment,
    Catalog,
    DeploymentSpec,
    DeviceFacts,
    Selector,
    SelectorKind,
    resolve,
)
from storecast.registry.signing import bump_generation
from storecast.registry.tables import DeploymentRow, DeviceRow, RegistryStateRow


def device_out(row: DeviceRow) -> schemas.DeviceOut:
    return schemas.DeviceOut(
        device_id=row.device_id,
        store_id=row.store_id,
        region=row.region,
        tags=json.loads(row.tags_json),
        enrolled_at=row.enrolled_at,
        last_seen_at=row.last_seen_at,
        reported_model=row.reported_model,
        reported_version=row.reported_version,
        decommissioned=row.decommissioned_at is not None,
    )


def enrol(registry: Registry, body: schemas.EnrolBody, who: Principal) -> schemas.Enrolled:
    """Register a device and mint its token (409 if the id is taken)."""
    token = mint_token()
    with registry.db.transaction(write=True) as session:
        if session.get(DeviceRow, body.device_id) is not None:
            raise ApiError(409, "device_exists", f"device {body.device_id!r} is already enrolled")
        now = registry.config.clock.now()
        row = DeviceRow(
            device_id=body.device_id,
            store_id=body.store_id,
            region=body.region,
            tags_json=json.dumps(sorted(set(body.tags))),
            enrolled_at=now,
            enrolled_by=actor_name(who),
        )
        session.add(row)
        session.add(
            TokenRow(
                id=token.token_id,
                name=f"device:{body.device_id}",
                role=Role.DEVICE.value,
                device_id=body.device_id,
                secret_sha256=token.secret_sha256,
                created_at=now,
                created_by=who.token_id,
            )
        )
        bump_generation(session)
    return schemas.Enrolled(device=device_out(row), token=token.secret, token_id=token.token_id)


def decommission(registry: Registry, device_id: str) -> DeviceRow:
    """Retire a device: its tokens stop working, its history stays."""
    with registry.db.transaction(write=True) as session:
        row = get_device(session, device_id)
        now = registry.config.clock.now()
        if row.decommissioned_at is None:
            row.decommissioned_at = now
        session.execute(
            update(TokenRow)
            .where(TokenRow.device_id == device_id, TokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return row


def get_device(session: Session, device_id: str) -> DeviceRow:
    row = session.get(DeviceRow, device_id)
    if row is None:
        raise ApiError(404, "not_found", f"no device {device_id!r}")
    return row


def selector_of(row: DeploymentRow) -> Selector:
    data = json.loads(row.selector_json)
    return Selector(SelectorKind(data["kind"]), frozenset(data.get("values", [])))


def deployment_out(row: DeploymentRow) -> schemas.DeploymentOut:
    return schemas.DeploymentOut(
        id=row.id,
        model=row.model,
        version=row.version,
        alias=row.alias,
        selector=json.loads(row.selector_json),
        status=row.status,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def create_deployment(
    registry: Registry, body: schemas.DeploymentBody, who: Principal
) -> DeploymentRow:
    """Point a selector at a model version or alias (the version must be live)."""
    with registry.db.transaction(write=True) as session:
        if body.version is not None:
            version = get_version(session, body.model, body.version)
            if version.withdrawn_at is not None:
                raise ApiError(
                    409, "version_withdrawn", f"{body.model} v{body.version} was withdrawn"
                )
        elif (
            body.alias is not None
            and load_catalog(session).aliases.get((body.model, body.alias)) is None
        ):
            raise ApiError(404, "not_found", f"model {body.model!r} has no alias {body.alias!r}")
        row = DeploymentRow(
            model=body.model,
            version=body.version,
            alias=body.alias,
            selector_json=json.dumps(
                {"kind": body.selector.kind.value, "values": sorted(set(body.selector.values))}
            ),
            status="active",
            created_at=registry.config.clock.now(),
            created_by=actor_name(who),
        )
        session.add(row)
        session.flush()
        bump_generation(session)
        return row


@dataclass(frozen=True)
class _Snapshot:
    generation: int
    deployments: tuple[DeploymentSpec, ...]
    catalog: Catalog


class AssignmentCache:
    """Active deployments and the catalog, reloaded only when the generation moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    def get(self, session: Session, generation: int) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.generation == generation:
            return snapshot
        rows = session.execute(
            select(DeploymentRow).where(DeploymentRow.status == "active")
        ).scalars()
        fresh = _Snapshot(
            generation,
            tuple(
                DeploymentSpec(row.id, row.model, selector_of(row), row.version, row.alias)
                for row in rows
            ),
            load_catalog(session),
        )
        with self._lock:
            self._snapshot = fresh
        return fresh


def assignment_for(
    registry: Registry, cache: AssignmentCache, device_id: str
) -> tuple[DeviceRow, Assignment | None]:
    """The device row and its current assignment."""
    with registry.db.transaction() as session:
        device = get_device(session, device_id)
        generation = session.execute(
            select(RegistryStateRow.generation).where(RegistryStateRow.id == 1)
        ).scalar_one()
        snapshot = cache.get(session, generation)
    facts = DeviceFacts(
        device.device_id, device.store_id, device.region, frozenset(json.loads(device.tags_json))
    )
    return device, resolve(facts, snapshot.deployments, snapshot.catalog)


def record_seen(
    registry: Registry,
    device: DeviceRow,
    now: datetime,
    model: str | None,
    version: int | None,
) -> None:
    """Store last-seen time and reported version, at most once per ``last_seen_every``
    unless the reported version changed (keeps the poll cheap for big fleets)."""
    if model is None and version is None:  # the device did not say: keep what it said last
        model, version = device.reported_model, device.reported_version
    changed = (model, version) != (device.reported_model, device.reported_version)
    fresh = (
        device.last_seen_at is not None
        and now - device.last_seen_at < registry.config.last_seen_every
    )
    if fresh and not changed:
        return
    with registry.db.transaction() as session:
        session.execute(
            update(DeviceRow)
            .where(DeviceRow.device_id == device.device_id)
            .values(last_seen_at=now, reported_model=model, reported_version=version)
        )
