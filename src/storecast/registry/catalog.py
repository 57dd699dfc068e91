"""Models, versions and aliases: publish, withdraw, point aliases, read the catalog."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storecast.bundle import BundleError, Limits, verify_bundle
from storecast.common.auth import Principal
from storecast.common.web import ApiError
from storecast.registry import schemas
from storecast.registry.context import Registry
from storecast.registry.resolver import Catalog, Release
from storecast.registry.signing import bump_generation, lock_state, repository
from storecast.registry.tables import AliasRow, ArtifactRow, ModelVersionRow

log = logging.getLogger(__name__)


def target_path(name: str, version: int) -> str:
    """The TUF target path of a model version."""
    return f"{name}/{name}-v{version}.tar"


@dataclass(frozen=True)
class Published:
    row: ModelVersionRow
    created: bool


def publish(registry: Registry, data: bytes, who: Principal) -> Published:
    """Validate a bundle, store it and sign it as a TUF target, all or nothing.

    Same name, version and bytes as before: nothing changes (``created`` false). Same
    name and version with other bytes: 409.
    """
    limits = Limits(total_bytes=registry.config.max_upload_bytes)
    try:
        bundle = verify_bundle(data, limits)
    except BundleError as exc:
        raise ApiError(422, "invalid_bundle", str(exc)) from exc
    meta = bundle.metadata
    digest, created_file = registry.artifacts.put(data)
    try:
        with registry.db.transaction(write=True) as session:
            lock_state(session)
            if not registry.artifacts.exists(digest):  # a failed twin publish removed it
                registry.artifacts.put(data)
            existing = _version_row(session, meta.name, meta.version)
            if existing is not None:
                if existing.sha256 != digest:
                    raise ApiError(
                        409,
                        "version_exists",
                        f"{meta.name} v{meta.version} is already published with sha256 "
                        f"{existing.sha256}; publish under a new version",
                    )
                if existing.withdrawn_at is not None:
                    raise ApiError(
                        409, "version_withdrawn", f"{meta.name} v{meta.version} was withdrawn"
                    )
                return Published(existing, created=False)
            now = registry.config.clock.now()
            if session.get(ArtifactRow, digest) is None:
                session.add(ArtifactRow(sha256=digest, size=bundle.size, created_at=now))
            row = ModelVersionRow(
                name=meta.name,
                version=meta.version,
                sha256=digest,
                size=bundle.size,
                target_path=target_path(meta.name, meta.version),
                metadata_json=json.dumps(meta.model_dump(mode="json"), sort_keys=True),
                published_at=now,
                published_by=who.actor,
            )
            session.add(row)
            session.flush()
            repository(session, registry.config, registry.keys).add_target(
                row.target_path,
                digest,
                bundle.size,
                {"model": meta.name, "version": meta.version},
            )
        return Published(row, created=True)
    except BaseException:
        if created_file:
            _remove_unreferenced(registry, digest)
        raise


def _remove_unreferenced(registry: Registry, digest: str) -> None:
    """Delete an artifact file no version refers to (under the registry lock, so a
    concurrent publish of the same bytes re-creates it if it needs it)."""
    try:
        with registry.db.transaction(write=True) as session:
            lock_state(session)
            if session.get(ArtifactRow, digest) is None:
                registry.artifacts.delete(digest)
    except Exception:  # the database is down: keep the file, an orphan is harmless
        log.exception("could not check whether artifact %s is referenced", digest)


def withdraw(registry: Registry, name: str, version: int, reason: str) -> ModelVersionRow:
    """Mark a version withdrawn and remove it from the TUF targets (idempotent)."""
    with registry.db.transaction(write=True) as session:
        lock_state(session)
        row = get_version(session, name, version)
        if row.withdrawn_at is None:
            row.withdrawn_at = registry.config.clock.now()
            row.withdrawn_reason = reason
            repository(session, registry.config, registry.keys).remove_target(row.target_path)
            bump_generation(session)
        return row


def set_alias(registry: Registry, name: str, alias: str, version: int, who: Principal) -> AliasRow:
    """Point ``alias`` of model ``name`` at a live ``version``."""
    with registry.db.transaction(write=True) as session:
        lock_state(session)  # a withdrawal cannot slip in between check and update
        return point_alias(session, name, alias, version, who.actor, registry.config.clock.now())


def point_alias(
    session: Session, name: str, alias: str, version: int, actor: str, now: datetime
) -> AliasRow:
    """``set_alias`` inside the caller's write transaction (``lock_state`` taken first)."""
    row = get_version(session, name, version)
    if row.withdrawn_at is not None:
        raise ApiError(409, "version_withdrawn", f"{name} v{version} was withdrawn")
    current = session.get(AliasRow, (name, alias))
    if current is None:
        current = AliasRow(
            name=name, alias=alias, version=version, updated_at=now, updated_by=actor
        )
        session.add(current)
    else:
        current.version, current.updated_at = version, now
        current.updated_by = actor
    bump_generation(session)
    return current


def delete_alias(registry: Registry, name: str, alias: str) -> None:
    with registry.db.transaction(write=True) as session:
        lock_state(session)
        current = session.get(AliasRow, (name, alias))
        if current is None:
            raise ApiError(404, "not_found", f"model {name!r} has no alias {alias!r}")
        session.delete(current)
        bump_generation(session)


def _version_row(session: Session, name: str, version: int) -> ModelVersionRow | None:
    return session.execute(
        select(ModelVersionRow).where(
            ModelVersionRow.name == name, ModelVersionRow.version == version
        )
    ).scalar_one_or_none()


def get_version(session: Session, name: str, version: int) -> ModelVersionRow:
    row = _version_row(session, name, version)
    if row is None:
        raise ApiError(404, "not_found", f"model {name!r} has no version {version}")
    return row


def aliases_of(session: Session, name: str) -> dict[str, int]:
    rows = session.execute(select(AliasRow).where(AliasRow.name == name)).scalars()
    return {row.alias: row.version for row in rows}


def next_version(session: Session, name: str) -> int:
    latest = session.execute(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
    ).scalar_one_or_none()
    return (latest or 0) + 1


def version_summary(
    row: ModelVersionRow, aliases: dict[str, int] | None = None
) -> schemas.VersionSummary:
    return schemas.VersionSummary(
        name=row.name,
        version=row.version,
        sha256=row.sha256,
        size=row.size,
        target_path=row.target_path,
        published_at=row.published_at,
        published_by=row.published_by,
        withdrawn=row.withdrawn_at is not None,
        withdrawn_reason=row.withdrawn_reason,
        aliases=sorted(a for a, v in (aliases or {}).items() if v == row.version),
    )


def version_detail(row: ModelVersionRow, aliases: dict[str, int]) -> schemas.VersionDetail:
    summary = version_summary(row, aliases)
    return schemas.VersionDetail(**summary.model_dump(), metadata=json.loads(row.metadata_json))


def load_catalog(session: Session) -> Catalog:
    """Every live release and every alias (the resolver's view of the registry)."""
    releases = {
        (row.name, row.version): Release(
            row.name, row.version, row.target_path, row.sha256, row.size
        )
        for row in session.execute(
            select(ModelVersionRow).where(ModelVersionRow.withdrawn_at.is_(None))
        ).scalars()
    }
    aliases = {
        (row.name, row.alias): row.version for row in session.execute(select(AliasRow)).scalars()
    }
    return Catalog(releases, aliases)
