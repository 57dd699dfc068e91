"""Analytics tables: raw telemetry events and the rollups kept at ingest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 16:19:13.881357
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accuracy_hourly",
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("sum_actual", sa.Float(), nullable=False),
        sa.Column("sum_q50", sa.Float(), nullable=False),
        sa.Column("sum_abs_err", sa.Float(), nullable=False),
        sa.Column("covered", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "store_id",
            "model_name",
            "model_version",
            "agent_version",
            name=op.f("pk_accuracy_hourly"),
        ),
    )
    with op.batch_alter_table("accuracy_hourly", schema=None) as batch_op:
        batch_op.create_index("ix_accuracy_hourly_store_hour", ["store_id", "hour"], unique=False)

    op.create_table(
        "api_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "actor", "role", "method", "endpoint", "status", name=op.f("pk_api_usage")
        ),
    )
    op.create_table(
        "device_state",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("cpu_pct", sa.Float(), nullable=False),
        sa.Column("rss_mb", sa.Float(), nullable=False),
        sa.Column("disk_free_mb", sa.Float(), nullable=False),
        sa.Column("uptime_s", sa.Float(), nullable=False),
        sa.Column("outbox_depth", sa.BigInteger(), nullable=False),
        sa.Column("dropped_events", sa.BigInteger(), nullable=False),
        sa.Column("last_poll_ok", sa.Boolean(), nullable=False),
        sa.Column("last_upload_ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_state")),
    )
    with op.batch_alter_table("device_state", schema=None) as batch_op:
        batch_op.create_index("ix_device_state_store_id", ["store_id"], unique=False)

    op.create_table(
        "error_hourly",
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("component", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=128), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "store_id",
            "component",
            "kind",
            "model_name",
            "model_version",
            "agent_version",
            name=op.f("pk_error_hourly"),
        ),
    )
    op.create_table(
        "forecast_points",
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("origin", sa.DateTime(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("q10", sa.Float(), nullable=False),
        sa.Column("q50", sa.Float(), nullable=False),
        sa.Column("q90", sa.Float(), nullable=False),
        sa.Column("actual", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint(
            "store_id",
            "ts",
            "horizon",
            "model_name",
            "model_version",
            name=op.f("pk_forecast_points"),
        ),
    )
    op.create_table(
        "inference_hourly",
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("b00", sa.BigInteger(), nullable=False),
        sa.Column("b01", sa.BigInteger(), nullable=False),
        sa.Column("b02", sa.BigInteger(), nullable=False),
        sa.Column("b03", sa.BigInteger(), nullable=False),
        sa.Column("b04", sa.BigInteger(), nullable=False),
        sa.Column("b05", sa.BigInteger(), nullable=False),
        sa.Column("b06", sa.BigInteger(), nullable=False),
        sa.Column("b07", sa.BigInteger(), nullable=False),
        sa.Column("b08", sa.BigInteger(), nullable=False),
        sa.Column("b09", sa.BigInteger(), nullable=False),
        sa.Column("b10", sa.BigInteger(), nullable=False),
        sa.Column("b11", sa.BigInteger(), nullable=False),
        sa.Column("b12", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "store_id",
            "model_name",
            "model_version",
            "agent_version",
            name=op.f("pk_inference_hourly"),
        ),
    )
    with op.batch_alter_table("inference_hourly", schema=None) as batch_op:
        batch_op.create_index("ix_inference_hourly_store_hour", ["store_id", "hour"], unique=False)

    op.create_table(
        "model_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_model_events")),
    )
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.create_index("ix_model_events_ts", ["ts"], unique=False)

    op.create_table(
        "store_actuals",
        sa.Column("store_id", sa.String(length=128), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("sales_units", sa.Float(), nullable=False),
        sa.Column("footfall", sa.Float(), nullable=True),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "ts", name=op.f("pk_store_actuals")),
    )
    op.create_table(
        "telemetry_events",
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("hour", "event_id", name=op.f("pk_telemetry_events")),
    )
    op.create_table(
        "telemetry_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_batches")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Bodies arrive compressed: spare PostgreSQL trying to compress them again.
        op.execute("ALTER TABLE telemetry_batches ALTER COLUMN body SET STORAGE EXTERNAL")
    with op.batch_alter_table("telemetry_batches", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_batches_device_id", ["device_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("telemetry_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_batches_device_id")
    op.drop_table("telemetry_batches")
    op.drop_table("telemetry_events")
    op.drop_table("store_actuals")
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.drop_index("ix_model_events_ts")

    op.drop_table("model_events")
    with op.batch_alter_table("inference_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_inference_hourly_store_hour")

    op.drop_table("inference_hourly")
    op.drop_table("forecast_points")
    op.drop_table("error_hourly")
    with op.batch_alter_table("device_state", schema=None) as batch_op:
        batch_op.drop_index("ix_device_state_store_id")

    op.drop_table("device_state")
    op.drop_table("api_usage")
    with op.batch_alter_table("accuracy_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_accuracy_hourly_store_hour")

    op.drop_table("accuracy_hourly")
