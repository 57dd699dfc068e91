"""The analytics tables: raw telemetry plus the rollups kept current at ingest.

Queries read rollups, never raw events, so their cost follows the window asked for, not
the history stored. Every aggregated value is a real column. Rollup keys use ``""`` and
``0`` for "no model" / "unknown agent" (key columns cannot be NULL).

    telemetry_batches  the accepted events of each batch, as received (the raw record)
    telemetry_events   one row per accepted event: device, hour and id (the idempotency key)
    store_actuals      the actual sales of a store-hour (first report wins)
    forecast_points    each forecast hour by horizon, paired with its actual once known
    accuracy_hourly    per target hour, store, model version, agent: sums over paired points
    inference_hourly   per hour, store, model version, agent: counts + latency histogram
    error_hourly       per hour, store, component, kind, model version, agent: counts
    model_events       model lifecycle events (activations, rejections, rollbacks)
    device_state       per device: last heartbeat and what it reported
    api_usage          per UTC day, actor, method, endpoint, status: request counts
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storecast.common.db import Base, UTCDateTime
from storecast.common.telemetry import HIST_BUCKETS

NO_MODEL = ""  # model_name key of hours served without a model (the fallback)
NO_AGENT = ""  # agent_version key before a device's first heartbeat

BUCKET_COLUMNS = tuple(f"b{i:02d}" for i in range(HIST_BUCKETS))


class TelemetryBatchRow(Base):
    """The accepted events of one batch, as received: the raw record rollups derive from."""

    __tablename__ = "telemetry_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    events: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # zlib({"events": [...]}), accepted ones

    __table_args__ = (Index("ix_telemetry_batches_device_id", "device_id"),)


class TelemetryEventRow(Base):
    """One accepted event id (the idempotency key) and the batch that holds the event.

    Keyed by device, then the event's hour, then its id: a batch is one device's events
    from a few hours, so its ids land together on a few pages, however many devices send
    at once (keyed by hour first, every batch of the hour rewrote pages all over the hour's
    ids, and each commit wrote hundreds of them). An event resent is byte-identical (same
    device, id and time), so it meets its own row. On SQLite the key is the table itself
    (``WITHOUT ROWID``): one B-tree to write, not a table and an index.
    """

    __tablename__ = "telemetry_events"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))

    __table_args__ = ({"sqlite_with_rowid": False},)


class StoreActualRow(Base):
    """The observed sales of one store-hour."""

    __tablename__ = "store_actuals"

    store_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    sales_units: Mapped[float] = mapped_column(Float)
    footfall: Mapped[float | None] = mapped_column(Float, nullable=True)
    device_id: Mapped[str] = mapped_column(String(128))


class ForecastPointRow(Base):
    """One forecast hour at one horizon; ``actual`` is filled when the hour is observed."""

    __tablename__ = "forecast_points"

    store_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    horizon: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1 = the origin hour
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[datetime] = mapped_column(UTCDateTime())
    device_id: Mapped[str] = mapped_column(String(128))
    agent_version: Mapped[str] = mapped_column(String(64))
    q10: Mapped[float] = mapped_column(Float)
    q50: Mapped[float] = mapped_column(Float)
    q90: Mapped[float] = mapped_column(Float)
    actual: Mapped[float | None] = mapped_column(Float, nullable=True)


class AccuracyHourlyRow(Base):
    """Sums over the paired forecast points of one target hour (all horizons)."""

    __tablename__ = "accuracy_hourly"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    sum_actual: Mapped[float] = mapped_column(Float, default=0.0)
    sum_q50: Mapped[float] = mapped_column(Float, default=0.0)
    sum_abs_err: Mapped[float] = mapped_column(Float, default=0.0)  # sum |q50 - actual|
    covered: Mapped[int] = mapped_column(BigInteger, default=0)  # q10 <= actual <= q90

    __table_args__ = (Index("ix_accuracy_hourly_store_hour", "store_id", "hour"),)


class InferenceHourlyRow(Base):
    """Forecast requests served in one hour, with their latency histogram."""

    __tablename__ = "inference_hourly"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    b00: Mapped[int] = mapped_column(BigInteger, default=0)
    b01: Mapped[int] = mapped_column(BigInteger, default=0)
    b02: Mapped[int] = mapped_column(BigInteger, default=0)
    b03: Mapped[int] = mapped_column(BigInteger, default=0)
    b04: Mapped[int] = mapped_column(BigInteger, default=0)
    b05: Mapped[int] = mapped_column(BigInteger, default=0)
    b06: Mapped[int] = mapped_column(BigInteger, default=0)
    b07: Mapped[int] = mapped_column(BigInteger, default=0)
    b08: Mapped[int] = mapped_column(BigInteger, default=0)
    b09: Mapped[int] = mapped_column(BigInteger, default=0)
    b10: Mapped[int] = mapped_column(BigInteger, default=0)
    b11: Mapped[int] = mapped_column(BigInteger, default=0)
    b12: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_inference_hourly_store_hour", "store_id", "hour"),)


class ErrorHourlyRow(Base):
    """Errors a device reported in one hour, by component and kind."""

    __tablename__ = "error_hourly"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    component: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class ModelEventRow(Base):
    """A model lifecycle event reported by a device."""

    __tablename__ = "model_events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    device_id: Mapped[str] = mapped_column(String(128))
    store_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    agent_version: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_model_events_ts", "ts"),)


class DeviceStateRow(Base):
    """What a device last told us (its newest heartbeat wins; older ones are ignored)."""

    __tablename__ = "device_state"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(128))
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    agent_version: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    cpu_pct: Mapped[float] = mapped_column(Float)
    rss_mb: Mapped[float] = mapped_column(Float)
    disk_free_mb: Mapped[float] = mapped_column(Float)
    uptime_s: Mapped[float] = mapped_column(Float)
    outbox_depth: Mapped[int] = mapped_column(BigInteger)
    dropped_events: Mapped[int] = mapped_column(BigInteger)
    last_poll_ok: Mapped[bool] = mapped_column(Boolean)
    last_upload_ok: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (Index("ix_device_state_store_id", "store_id"),)


class ApiUsageRow(Base):
    """How often each caller used each endpoint on one UTC day (compliance usage log)."""

    __tablename__ = "api_usage"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    actor: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    method: Mapped[str] = mapped_column(String(8), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
