"""Migration 0005 (event ids keyed by device) on a database with telemetry stored before it."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from storecast.common.db import downgrade, make_engine, upgrade

HOUR = datetime(2026, 11, 1, 8, 0)


def _rows(url: str, columns: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        query = f"SELECT {columns} FROM telemetry_events ORDER BY event_id"
        found = [tuple(row) for row in conn.execute(sa.text(query))]
    engine.dispose()
    return found


def test_stored_ids_take_their_batchs_device_and_still_deduplicate(database_url: str) -> None:
    upgrade(database_url, "0004")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO telemetry_batches (id, device_id, received_at, events, body) "
                "VALUES (1, 'edge-a', :t, 2, :b), (2, 'edge-b', :t, 1, :b)"
            ),
            {"t": HOUR, "b": b"x"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO telemetry_events (hour, event_id, batch_id, type) VALUES "
                "(:t, 'id-1', 1, 'heartbeat'), (:t, 'id-2', 1, 'forecast'), "
                "(:t, 'id-3', 2, 'actual')"
            ),
            {"t": HOUR},
        )
    engine.dispose()

    upgrade(database_url)
    assert _rows(database_url, "device_id, event_id, batch_id, type") == [
        ("edge-a", "id-1", 1, "heartbeat"),
        ("edge-a", "id-2", 1, "forecast"),
        ("edge-b", "id-3", 2, "actual"),
    ]
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":  # the key is the table: one B-tree to write
        with engine.connect() as conn:
            ddl = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'telemetry_events'")
            ).scalar_one()
        assert "WITHOUT ROWID" in ddl
    with engine.begin() as conn:  # the new key refuses the same event stored twice
        inserted = conn.execute(
            sa.text(
                "INSERT INTO telemetry_events (device_id, hour, event_id, batch_id, type) "
                "VALUES ('edge-a', :t, 'id-1', 3, 'heartbeat') ON CONFLICT DO NOTHING"
            ),
            {"t": HOUR},
        )
        assert inserted.rowcount == 0
    engine.dispose()

    downgrade(database_url, "0004")  # and back: the old key again, the same rows
    assert _rows(database_url, "event_id, batch_id") == [("id-1", 1), ("id-2", 1), ("id-3", 2)]
