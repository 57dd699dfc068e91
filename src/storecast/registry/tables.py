"""The registry's tables: model versions, artifacts, aliases, devices, deployments, TUF metadata."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storecast.common.db import Base, UTCDateTime


class ArtifactRow(Base):
    """A stored blob, addressed by its SHA-256."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelVersionRow(Base):
    """One published version of a model: its bundle digest and its metadata."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("artifacts.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)
    target_path: Mapped[str] = mapped_column(String(300))
    metadata_json: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_by: Mapped[str] = mapped_column(String(200))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        Index("ix_model_versions_sha256", "sha256"),
    )


class AliasRow(Base):
    """A movable name (``production``, ``canary``) pointing at one version of a model."""

    __tablename__ = "aliases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))


class DeviceRow(Base):
    """An enrolled edge device and what it last told us."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(128))
    tags_json: Mapped[str] = mapped_column(Text, default="[]")
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enrolled_by: Mapped[str] = mapped_column(String(200))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reported_model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reported_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decommissioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_devices_store_id", "store_id"),)


class DeploymentRow(Base):
    """A selector of devices pointed at a model version or alias."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    selector_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))


class TufMetadataRow(Base):
    """Every signed version of every TUF role (the newest is what clients see)."""

    __tablename__ = "tuf_metadata"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RegistryStateRow(Base):
    """One row: a lock target for TUF signing and the assignment generation counter.

    ``generation`` grows whenever anything that changes an assignment changes
    (deployments, aliases, withdrawals), so pollers can cache resolved deployments.
    """

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
