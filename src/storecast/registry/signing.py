"""The registry's TUF repository kept in the database, signed with the online keys.

Every change (publish, withdraw, expiry refresh) runs inside one write transaction that
first locks the single ``registry_state`` row, so concurrent publishers from any number of
workers or replicas produce one linear history of targets, snapshot and timestamp.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from storecast.common.clock import Clock
from storecast.common.cloud import Database
from storecast.registry.config import RegistryConfig
from storecast.registry.tables import RegistryStateRow, TufMetadataRow
from storecast.registry.tuf_repo import Expiry, OnlineKeys, TufRepository

log = logging.getLogger(__name__)


class SqlMetadataStore:
    """TUF metadata versions in the ``tuf_metadata`` table (a ``MetadataStore``)."""

    def __init__(self, session: Session, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    def latest(self, role: str) -> bytes | None:
        return self._session.execute(
            select(TufMetadataRow.data)
            .where(TufMetadataRow.role == role)
            .order_by(TufMetadataRow.version.desc())
            .limit(1)
        ).scalar_one_or_none()

    def get(self, role: str, version: int) -> bytes | None:
        row = self._session.get(TufMetadataRow, (role, version))
        return None if row is None else row.data

    def put(self, role: str, version: int, data: bytes) -> None:
        self._session.add(
            TufMetadataRow(role=role, version=version, data=data, created_at=self._clock.now())
        )
        self._session.flush()


def lock_state(session: Session) -> RegistryStateRow:
    """Take the registry-wide write lock (row lock on PostgreSQL; SQLite is already locked)."""
    return session.execute(
        select(RegistryStateRow).where(RegistryStateRow.id == 1).with_for_update()
    ).scalar_one()


def bump_generation(session: Session) -> None:
    """Tell pollers that assignments may have changed."""
    lock_state(session).generation += 1


def expiry_of(config: RegistryConfig) -> Expiry:
    return Expiry(
        targets=config.targets_expiry,
        snapshot=config.snapshot_expiry,
        timestamp=config.timestamp_expiry,
    )


def repository(session: Session, config: RegistryConfig, keys: OnlineKeys) -> TufRepository:
    """The TUF repository as of now, backed by ``session`` (call ``lock_state`` first)."""
    clock = config.clock
    return TufRepository(SqlMetadataStore(session, clock), keys, clock.now(), expiry_of(config))


def _expires_soon(data: bytes, now: datetime, period: timedelta) -> bool:
    expires = json.loads(data)["signed"]["expires"]
    return datetime.fromisoformat(expires.replace("Z", "+00:00")) - now < period / 2


def serve_metadata(
    db: Database, config: RegistryConfig, keys: OnlineKeys, role: str, version: int | None
) -> bytes | None:
    """Signed metadata for a client; the timestamp (and, through it, snapshot and targets)
    is re-signed first when it is within half its lifetime of expiring."""
    with db.transaction() as session:
        store = SqlMetadataStore(session, config.clock)
        data = store.latest(role) if version is None else store.get(role, version)
    if role != "timestamp" or data is None:
        return data
    if not _expires_soon(data, config.clock.now(), config.timestamp_expiry):
        return data
    try:
        with db.transaction(write=True) as session:
            lock_state(session)
            repository(session, config, keys).refresh()
            return SqlMetadataStore(session, config.clock).latest("timestamp")
    except Exception:
        # The stored timestamp is still valid for a while and clients check expiry
        # themselves: serving it beats taking every device offline.
        log.exception("could not re-sign the TUF timestamp; serving the current one")
        return data


def refresh(db: Database, config: RegistryConfig, keys: OnlineKeys) -> bool:
    """Re-sign whatever metadata is close to expiry (for a scheduler or the CLI)."""
    with db.transaction(write=True) as session:
        lock_state(session)
        return repository(session, config, keys).refresh()
