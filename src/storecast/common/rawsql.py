"""A prebuilt SELECT run straight on the DBAPI cursor, for the few hottest queries.

SQLAlchemy's execution path (connection wrapper, parameter processing, result objects)
costs several times what SQLite spends answering a primary-key lookup. ``RawQuery``
compiles a Core statement once per engine and runs it on a pooled DBAPI connection;
callers convert the few non-string columns themselves (see ``utc``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select


class RawQuery:
    """``first(params)``: the first row of a compiled ``select`` as a dict, or None."""

    def __init__(self, statement: Select[Any] | Any, engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self._engine = engine
        self._sql = str(compiled)
        self._defaults = dict(compiled.params)  # literal binds such as "id = 1"
        self._order = tuple(compiled.positiontup or ()) if engine.dialect.positional else None

    def first(self, params: dict[str, Any]) -> dict[str, Any] | None:
        values = {**self._defaults, **params}
        bound: Any = [values[name] for name in self._order] if self._order is not None else values
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, bound)
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
