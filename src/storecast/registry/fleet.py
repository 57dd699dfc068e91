"""Devices: enrolment, tokens, and the assignment poll (resolved from cached deployments)."""

from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from storecast.common.auth import Principal, Role, TokenRow, hash_secret, mint_token
from storecast.common.cloud import Database
from storecast.common.rawsql import RawQuery, utc
from storecast.common.web import ApiError
from storecast.registry import schemas
from storecast.registry.catalog import load_catalog
from storecast.registry.context import Registry
from storecast.registry.deployments import IN_FORCE, spec_of
from storecast.registry.resolver import (
    Assignment,
    Catalog,
    DeploymentSpec,
    DeviceFacts,
    etag_of,
    resolve,
)
from storecast.registry.signing import bump_generation, lock_state
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
        lock_state(session)  # before reading: concurrent enrolments queue here
        if session.get(DeviceRow, body.device_id) is not None:
            raise ApiError(409, "device_exists", f"device {body.device_id!r} is already enrolled")
        now = registry.config.clock.now()
        row = DeviceRow(
            device_id=body.device_id,
            store_id=body.store_id,
            region=body.region,
            tags_json=json.dumps(sorted(set(body.tags))),
            enrolled_at=now,
            enrolled_by=who.actor,
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
        row = get_device(session, device_id, for_update=True)  # vs a token rotation
        now = registry.config.clock.now()
        if row.decommissioned_at is None:
            row.decommissioned_at = now
        session.execute(
            update(TokenRow)
            .where(TokenRow.device_id == device_id, TokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return row


def rotate_token(registry: Registry, device_id: str, who: Principal) -> schemas.Enrolled:
    """Give an enrolled device a new token and revoke its old ones (a lost or leaked token)."""
    token = mint_token()
    with registry.db.transaction(write=True) as session:
        row = get_device(session, device_id, for_update=True)  # vs a decommission
        if row.decommissioned_at is not None:
            raise ApiError(410, "decommissioned", f"device {device_id!r} was decommissioned")
        now = registry.config.clock.now()
        session.execute(
            update(TokenRow)
            .where(TokenRow.device_id == device_id, TokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        session.add(
            TokenRow(
                id=token.token_id,
                name=f"device:{device_id}",
                role=Role.DEVICE.value,
                device_id=device_id,
                secret_sha256=token.secret_sha256,
                created_at=now,
                created_by=who.token_id,
            )
        )
    return schemas.Enrolled(device=device_out(row), token=token.secret, token_id=token.token_id)


def get_device(session: Session, device_id: str, *, for_update: bool = False) -> DeviceRow:
    """The device row (404 when unknown); ``for_update`` locks it on PostgreSQL."""
    row = session.get(DeviceRow, device_id, with_for_update=for_update)
    if row is None:
        raise ApiError(404, "not_found", f"no device {device_id!r}")
    return row


@dataclass(frozen=True)
class _Snapshot:
    generation: int
    deployments: tuple[DeploymentSpec, ...]
    catalog: Catalog


@dataclass(frozen=True)
class PolledDevice:
    """What the assignment poll reads of a device."""

    device_id: str
    store_id: str
    region: str
    tags: frozenset[str]
    last_seen_at: datetime | None
    reported_model: str | None
    reported_version: int | None
    decommissioned_at: datetime | None


# The poll's statements are built once: building and cache-keying a statement costs more
# than running it. One query answers the whole poll: the caller's token (unknown or
# revoked: no row), the device (NULLs when there is none) and the generation.
_GENERATION = select(RegistryStateRow.generation).where(RegistryStateRow.id == 1)
_POLL = (
    select(
        TokenRow.id.label("token_id"),
        TokenRow.name.label("token_name"),
        TokenRow.role.label("token_role"),
        TokenRow.device_id.label("token_device_id"),
        DeviceRow.device_id,
        DeviceRow.store_id,
        DeviceRow.region,
        DeviceRow.tags_json,
        DeviceRow.last_seen_at,
        DeviceRow.reported_model,
        DeviceRow.reported_version,
        DeviceRow.decommissioned_at,
        _GENERATION.scalar_subquery().label("generation"),
    )
    .select_from(TokenRow)
    .outerjoin(DeviceRow, DeviceRow.device_id == bindparam("device_id"))
    .where(TokenRow.secret_sha256 == bindparam("secret_sha256"), TokenRow.revoked_at.is_(None))
)
_DEVICE_ID = re.compile(schemas.ID_PATTERN)
_IN_FORCE_DEPLOYMENTS = select(DeploymentRow).where(DeploymentRow.status.in_(IN_FORCE))
_RECORD_SEEN = (
    update(DeviceRow)
    .where(DeviceRow.device_id == bindparam("polled"))
    .values(
        last_seen_at=bindparam("seen"),
        reported_model=bindparam("model"),
        reported_version=bindparam("version"),
    )
)


CACHE_EXTENSION = "storecast.assignments"  # where the app keeps its AssignmentCache


class AssignmentCache:
    """In-force deployments and the catalog, reloaded only when the generation moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._poll: RawQuery | None = None

    def poll_query(self, db: Database) -> RawQuery:
        """The poll's one query, compiled for this database once."""
        if self._poll is None:
            self._poll = RawQuery(_POLL, db.engine)
        return self._poll

    def get(self, db: Database, generation: int) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.generation == generation:
            return snapshot
        with db.transaction() as session:  # labelled with the generation it was read at
            fresh = _Snapshot(
                session.execute(_GENERATION).scalar_one(),
                tuple(spec_of(row) for row in session.execute(_IN_FORCE_DEPLOYMENTS).scalars()),
                load_catalog(session),
            )
        with self._lock:
            self._snapshot = fresh
        return fresh


class AssignmentPoll:
    """One device poll, answered by a single query.

    Called with the bearer secret (as ``cloud.authenticate``'s ``lookup``) it reads the
    token, the device and the generation at once and returns the caller; ``assignment``
    then resolves what the device should run without another query while the
    generation stays put.
    """

    def __init__(self, registry: Registry, cache: AssignmentCache, device_id: str) -> None:
        self._registry = registry
        self._cache = cache
        self._device_id = device_id
        self._row: dict[str, Any] | None = None

    def __call__(self, secret: str) -> Principal | None:
        # An id no device can have (one with a NUL byte would make PostgreSQL raise) joins
        # no device, as the empty id does.
        device_id = self._device_id if _DEVICE_ID.match(self._device_id) else ""
        params = {"secret_sha256": hash_secret(secret), "device_id": device_id}
        self._row = row = self._cache.poll_query(self._registry.db).first(params)
        if row is None:
            return None
        return Principal(
            row["token_id"], row["token_name"], Role(row["token_role"]), row["token_device_id"]
        )

    def assignment(self) -> tuple[PolledDevice, Assignment | None]:
        """The device (404 when there is none) and its current assignment."""
        row = self._row
        if row is None:
            raise RuntimeError("authenticate the poll before asking for its assignment")
        if row["device_id"] is None:
            raise ApiError(404, "not_found", f"no device {self._device_id!r}")
        snapshot = self._cache.get(self._registry.db, row["generation"])
        device = PolledDevice(
            row["device_id"],
            row["store_id"],
            row["region"],
            frozenset(json.loads(row["tags_json"])),
            utc(row["last_seen_at"]),
            row["reported_model"],
            row["reported_version"],
            utc(row["decommissioned_at"]),
        )
        facts = DeviceFacts(device.device_id, device.store_id, device.region, device.tags)
        return device, resolve(facts, snapshot.deployments, snapshot.catalog)


def assignment_out(device_id: str, assigned: Assignment | None) -> schemas.AssignmentOut:
    """The poll's answer body."""
    return schemas.AssignmentOut(
        device_id=device_id,
        model=assigned.model if assigned else None,
        version=assigned.version if assigned else None,
        target_path=assigned.target_path if assigned else None,
        sha256=assigned.sha256 if assigned else None,
        length=assigned.length if assigned else None,
        deployment_id=assigned.deployment_id if assigned else None,
        arm=assigned.arm if assigned else None,
    )


def if_none_match(header: str) -> set[str]:
    """The ETags of an ``If-None-Match`` header (weak ones compared as strong)."""
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


@functools.lru_cache(maxsize=256)
def etag_for(assignment: Assignment | None) -> str:
    """``etag_of``, remembered: a fleet shares a handful of assignments."""
    return etag_of(assignment)


def record_seen(
    registry: Registry,
    device: PolledDevice,
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
    with registry.db.engine.begin() as conn:
        conn.execute(
            _RECORD_SEEN,
            {"polled": device.device_id, "seen": now, "model": model, "version": version},
        )
