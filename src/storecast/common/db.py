"""The cloud database: one SQLAlchemy engine per app, a session per request.

Registry and analytics tables share one ``Base`` and one URL (SQLite by default,
PostgreSQL at scale). Schema changes go through Alembic (``storecast.migrations``);
``upgrade(url)`` brings any database to the newest revision.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from storecast.common.errors import ConfigError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


WRITE_OPTION = "storecast_write"


class Base(DeclarativeBase):
    """Declarative base of every cloud table."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored naive-UTC and always read back timezone-aware (SQLite forgets zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class _WriterQueue:
    """Makes SQLite writers of every process queue in the kernel, not in SQLite's busy loop.

    SQLite lets a writer that finds the database locked sleep and retry (1, 2, 5, 10 ...
    ms), so under steady concurrent writes the lock often sits free while every waiter
    sleeps. Writers here first take an exclusive ``flock`` on a file beside the database
    (one per process, shared by its threads through a mutex), which wakes the next writer
    the moment the previous one releases it.
    """

    def __init__(self, database: str) -> None:
        self._path = f"{database}.writer-lock"
        self._mutex = threading.RLock()  # re-entrant: a nested writer fails in SQLite, not here
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._mutex:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


_WRITER_QUEUES: dict[str, _WriterQueue] = {}
_WRITER_QUEUES_LOCK = threading.Lock()


def _writer_queue(engine: Engine) -> _WriterQueue | None:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    with _WRITER_QUEUES_LOCK:
        return _WRITER_QUEUES.setdefault(database, _WriterQueue(database))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write transactions.

    On SQLite a transaction opened with ``transaction(..., write=True)`` begins with
    ``BEGIN IMMEDIATE``, so two writers never both read and then fail to upgrade their
    lock: the second one waits its turn instead. Readers are never blocked (WAL).
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # Checkpoint every ~40 MB of WAL, not SQLite's 4 MB: hot rollup pages rewritten
            # by every telemetry batch are then copied back to the database once per
            # checkpoint instead of once per few batches (ingest ran ~20% faster).
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            write = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], *, write: bool = False) -> Iterator[Session]:
    """A session whose work commits when the block ends and rolls back when it raises.

    ``write=True`` takes SQLite's write lock up front (no effect on PostgreSQL, where
    writers serialise on row locks instead).
    """
    queue = _writer_queue(factory.kw["bind"]) if write else None
    held = queue.held() if queue is not None else nullcontext()
    with held, factory() as session, session.begin():
        if write:
            session.connection(execution_options={WRITE_OPTION: True})
        yield session


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the database at ``url`` to the newest schema (Alembic ``head``), or
    to ``revision``."""
    from alembic import command

    with _alembic(url) as config:
        command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` back to ``revision``."""
    from alembic import command

    with _alembic(url) as config:
        command.downgrade(config, revision)


@contextmanager
def _alembic(url: str) -> Iterator[Any]:
    """Alembic's configuration for storecast's migrations, over an engine for ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("storecast") / "migrations"))
    config.attributes["engine"] = make_engine(url)
    try:
        yield config
    finally:
        config.attributes["engine"].dispose()
