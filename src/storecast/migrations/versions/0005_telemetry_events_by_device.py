"""Event ids keyed by device first: (device_id, hour, event_id), WITHOUT ROWID on SQLite.

A batch is one device's events from a few hours; keyed by (hour, event_id), its ids were
spread over every page of those hours, which all devices write, so each batch's commit
rewrote hundreds of pages. The device comes from the event's batch.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _create(name: str, key: list[str], *, with_device: bool) -> None:
    columns = [sa.Column("device_id", sa.String(length=128), nullable=False)] if with_device else []
    op.create_table(
        name,
        *columns,
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint(*key, name=op.f("pk_telemetry_events")),
        sqlite_with_rowid=not with_device,
    )


def upgrade() -> None:
    op.rename_table("telemetry_events", "telemetry_events_0004")
    if op.get_bind().dialect.name == "postgresql":  # the constraint's name is the table's
        op.execute(
            "ALTER TABLE telemetry_events_0004 "
            "RENAME CONSTRAINT pk_telemetry_events TO pk_telemetry_events_0004"
        )
    _create("telemetry_events", ["device_id", "hour", "event_id"], with_device=True)
    op.execute(
        "INSERT INTO telemetry_events (device_id, hour, event_id, batch_id, type) "
        "SELECT b.device_id, e.hour, e.event_id, e.batch_id, e.type "
        "FROM telemetry_events_0004 AS e JOIN telemetry_batches AS b ON b.id = e.batch_id"
    )
    op.drop_table("telemetry_events_0004")


def downgrade() -> None:
    op.rename_table("telemetry_events", "telemetry_events_0005")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE telemetry_events_0005 "
            "RENAME CONSTRAINT pk_telemetry_events TO pk_telemetry_events_0005"
        )
    _create("telemetry_events", ["hour", "event_id"], with_device=False)
    op.execute(
        "INSERT INTO telemetry_events (hour, event_id, batch_id, type) "
        "SELECT hour, event_id, batch_id, type FROM telemetry_events_0005"
    )
    op.drop_table("telemetry_events_0005")
