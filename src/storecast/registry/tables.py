"""The registry's tables: model versions, artifacts, aliases, devices, deployments, rollout
decisions, readout snapshots, TUF metadata."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
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


def new_salt() -> str:
    """A fresh deployment salt (random hex)."""
    return secrets.token_hex(16)


def _one_arm(context: Any) -> str:
    """``variants_json`` of a row inserted with only ``version`` / ``alias``: one arm, A."""
    row = context.get_current_parameters()
    return json.dumps([{"arm": "A", "version": row.get("version"), "alias": row.get("alias")}])


def _created_at(context: Any) -> Any:
    return context.get_current_parameters().get("created_at")


class DeploymentRow(Base):
    """A selector of devices pointed at arms (model versions or aliases) with a strategy.

    ``version`` / ``alias`` name the release being deployed: the one arm of an immediate
    deployment, the candidate (B) of a canary. ``variants_json`` holds every arm,
    ``[{"arm": "A", "version": 1, "alias": null}, {"arm": "B", ...}]``; ``plan_json`` a
    canary's ``CanaryPlan.to_dict()`` (null for immediate). ``status``: active, paused,
    completed, rolled_back or aborted.
    """

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    selector_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(16), default="immediate")
    salt: Mapped[str] = mapped_column(String(64), default=new_salt)  # buckets stores into arms
    variants_json: Mapped[str] = mapped_column(Text, default=_one_arm)
    plan_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    step_index: Mapped[int | None] = mapped_column(Integer, nullable=True)  # canary only
    step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    promote_alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, default=_created_at
    )


class RolloutDecisionRow(Base):
    """One decision on a canary: the controller's at the end of a step, or an operator's.

    ``kind`` is ``"step"`` for a decision that ends a step (promote, complete, rollback,
    operator_promote, abort) and NULL for pause / resume: the unique constraint on
    (deployment_id, step_index, kind) allows one step-ending decision per step, however
    many controllers and operators race for it.
    """

    __tablename__ = "rollout_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(Integer, ForeignKey("deployments.id"))
    step_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    percent_before: Mapped[float] = mapped_column(Float)  # B's share before and after
    percent_after: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    gates_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint(
            "deployment_id", "step_index", "kind", name="uq_rollout_decisions_one_per_step"
        ),
        Index("ix_rollout_decisions_decided_at", "decided_at"),
    )


class DeploymentReadoutRow(Base):
    """The evidence part of a deployment's readout as last computed (``body_json``: a
    ``ReadoutEvidence``), so ``GET .../readout`` need not aggregate the rollups each time.

    One row per deployment, replaced by the controller's tick and by live computations;
    the body names the status and step it was computed at, so a snapshot from before a
    step change is never served as current.
    """

    __tablename__ = "deployment_readouts"

    deployment_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("deployments.id"), primary_key=True
    )
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body_json: Mapped[str] = mapped_column(Text)


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
