"""Prebuilt statements run straight on the DBAPI cursor, for the few hottest paths.

SQLAlchemy's execution path (connection wrapper, parameter processing, result objects)
costs several times what SQLite spends answering a primary-key lookup. ``RawQuery``
compiles a Core statement once per engine and runs it on a pooled DBAPI connection;
``RawStatement`` runs one (``executemany`` too) on the cursor of a session's current
transaction; on SQLite, ``executemany`` of an INSERT sends its rows in a few multi-row
statements, not one step per row (each step gives up the GIL and must win it back, while
the caller may hold the database's only write lock). Callers convert the few non-string
values themselves (``utc`` to read a timestamp, ``timestamp_binder`` to write one as
``UTCDateTime`` would).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


class RawQuery:
    """``first(params)``: the first row of a compiled ``select`` as a dict, or None."""

    def __init__(self, statement: Select[Any] | Any, engine: Engine) -> None:
        self._engine = engine
        self._statement = RawStatement(statement, engine.dialect)

    def first(self, params: dict[str, Any]) -> dict[str, Any] | None:
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._statement.sql, self._statement.bind(params))
                row = cursor.fetchone()
                names = [column[0] for column in cursor.description or ()]
            finally:
                cursor.close()
        finally:
            connection.close()
        return None if row is None else dict(zip(names, row, strict=True))


def utc(value: Any) -> datetime | None:
    """A timestamp column as read by the driver (SQLite: text) → aware UTC datetime."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class RawStatement:
    """A Core statement compiled once for ``dialect``, run on a session's DBAPI cursor.

    Rows are dicts keyed by parameter name; values must already be what the driver takes
    (see ``timestamp_binder``). The statement runs inside the session's transaction.
    """

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._order = tuple(compiled.positiontup or ()) if dialect.positional else None
        self._rows = _RowsInsert.of(self.sql) if dialect.name == "sqlite" else None

    def bind(self, row: dict[str, Any]) -> Any:
        """``row``'s values as the driver takes them (a list, for positional drivers)."""
        if self._defaults:  # literal binds such as "horizon = 1"
            row = {**self._defaults, **row}
        return [row[name] for name in self._order] if self._order is not None else row

    def executemany(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement once per row (nothing when ``rows`` is empty); on SQLite an
        INSERT takes its rows a few dozen at a time."""
        if not rows:
            return
        cursor = dbapi_cursor(session)
        try:
            if self._rows is None:
                cursor.executemany(self.sql, [self.bind(row) for row in rows])
                return
            done = 0
            for size in self._rows.sizes(len(rows)):
                chunk = rows[done : done + size]
                done += size
                cursor.execute(self._rows.sql(size), [v for row in chunk for v in self.bind(row)])
        finally:
            cursor.close()

    def fetchall(self, session: Session, row: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run the statement once and return what it returns."""
        cursor = dbapi_cursor(session)
        try:
            cursor.execute(self.sql, self.bind(row))
            return [tuple(found) for found in cursor.fetchall()]
        finally:
            cursor.close()


class _RowsInsert:
    """A compiled single-row ``INSERT ... VALUES (?, ...) ...`` for several rows at a time.

    Row counts are powers of two up to ``MAX_PARAMS`` parameters, so a statement has a
    few shapes only (the driver keeps each one prepared).
    """

    MAX_PARAMS = 999  # SQLite's smallest limit of parameters per statement

    def __init__(self, head: str, row: str, tail: str, width: int) -> None:
        self._head, self._row, self._tail = head, row, tail
        self._most = 1 << max(0, (self.MAX_PARAMS // width).bit_length() - 1)  # rows
        self._sql: dict[int, str] = {}

    @classmethod
    def of(cls, sql: str) -> _RowsInsert | None:
        """``sql`` made multi-row, or None when it is not one INSERT of one row of ``?``."""
        head, found, rest = sql.partition(" VALUES (")
        if not found or not head.startswith("INSERT INTO ") or " VALUES (" in rest:
            return None
        values, _, tail = rest.partition(")")
        width = values.count("?")
        if not width or values != ", ".join(["?"] * width):
            return None
        return cls(f"{head} VALUES ", f"({values})", tail, width)

    def sizes(self, rows: int) -> list[int]:
        """How many rows each statement takes, for ``rows`` rows in all."""
        found = []
        while rows:
            size = min(self._most, 1 << (rows.bit_length() - 1))
            found.append(size)
            rows -= size
        return found

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` rows."""
        text = self._sql.get(rows)
        if text is None:
            text = self._sql[rows] = self._head + ", ".join([self._row] * rows) + self._tail
        return text


def dbapi_cursor(session: Session) -> Any:
    """A cursor on the DBAPI connection of the session's current transaction."""
    return session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def timestamp_binder(dialect: Dialect) -> Callable[[datetime], Any]:
    """How to pass an aware timestamp to the driver so it is stored as ``UTCDateTime`` does.

    SQLite keeps SQLAlchemy's text form (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC), so
    raw writes and ORM reads agree; PostgreSQL takes a naive UTC ``datetime``.
    """
    if dialect.name == "sqlite":
        return _sqlite_text
    return lambda moment: moment.astimezone(UTC).replace(tzinfo=None)


@functools.lru_cache(maxsize=8192)
def _sqlite_text(moment: datetime) -> str:
    # Cached: hot writers bind the same few hour starts over and over.
    # isoformat pads the year to 4 digits (strftime's %Y does not before year 1000).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
