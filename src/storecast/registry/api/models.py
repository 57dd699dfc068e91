"""``/v1/models`` and ``/v1/artifacts``: publish, list, inspect, alias, withdraw, download."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request, send_file
from sqlalchemy import func, select

from storecast.bundle.metadata import NAME_PATTERN
from storecast.common.auth import Role
from storecast.common.cloud import audited, authorize, principal, set_audit_resource
from storecast.common.web import ApiError, endpoint, parse_body
from storecast.registry import catalog, schemas
from storecast.registry.context import current_registry
from storecast.registry.schemas import ALIAS_PATTERN
from storecast.registry.storage import is_sha256
from storecast.registry.tables import AliasRow, ModelVersionRow

bp = Blueprint("models", __name__, url_prefix="/v1")

READERS = (Role.VIEWER, Role.PUBLISHER)
BUNDLE_MEDIA = "application/x-tar"
BUNDLE_MEDIA_TYPES = frozenset({BUNDLE_MEDIA, "application/octet-stream"})


def _check_name(name: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name):
        raise ApiError(404, "not_found", f"no model {name!r}")


@bp.post("/models")
@endpoint(
    "Publish a model bundle (idempotent for the same bytes)",
    tag="models",
    roles=("publisher",),
    body_media=BUNDLE_MEDIA,
    responses={200: schemas.PublishResult, 201: schemas.PublishResult},
)
@audited("model.publish")
@authorize(Role.PUBLISHER)
def publish() -> tuple[dict[str, Any], int]:
    registry = current_registry()
    if request.mimetype not in BUNDLE_MEDIA_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the bundle as {BUNDLE_MEDIA} (got {request.mimetype or 'no content type'})",
        )
    length = request.content_length
    limit = registry.config.max_upload_bytes
    if length is not None and length > limit:
        raise ApiError(413, "too_large", f"upload is {length} bytes; the limit is {limit}")
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"upload is over the limit of {limit} bytes")
    if not data:
        raise ApiError(422, "invalid_bundle", "the request body is empty; send the bundle file")
    result = catalog.publish(registry, data, principal())
    row = result.row
    set_audit_resource(
        f"model:{row.name}/v{row.version}", sha256=row.sha256, created=result.created
    )
    with registry.db.transaction() as session:
        aliases = catalog.aliases_of(session, row.name)
    detail = catalog.version_detail(row, aliases)
    body = schemas.PublishResult(**detail.model_dump(), created=result.created)
    return body.model_dump(mode="json"), 201 if result.created else 200


@bp.get("/models")
@endpoint(
    "List models", tag="models", roles=("viewer", "publisher"), responses={200: schemas.ModelList}
)
@authorize(*READERS)
def list_models() -> dict[str, Any]:
    registry = current_registry()
    with registry.db.transaction() as session:
        rows = session.execute(
            select(
                ModelVersionRow.name,
                func.max(ModelVersionRow.version),
                func.count(ModelVersionRow.id),
            )
            .group_by(ModelVersionRow.name)
            .order_by(ModelVersionRow.name)
        ).all()
        aliases: dict[str, dict[str, int]] = {}
        for alias in session.execute(select(AliasRow)).scalars():
            aliases.setdefault(alias.name, {})[alias.alias] = alias.version
    models = [
        schemas.ModelSummary(
            name=name, latest_version=latest, versions=count, aliases=aliases.get(name, {})
        )
        for name, latest, count in rows
    ]
    return schemas.ModelList(models=models).model_dump(mode="json")


@bp.get("/models/<name>")
@endpoint(
    "A model, its versions and aliases",
    tag="models",
    roles=("viewer", "publisher"),
    responses={200: schemas.ModelDetail},
)
@authorize(*READERS)
def show_model(name: str) -> dict[str, Any]:
    _check_name(name)
    registry = current_registry()
    with registry.db.transaction() as session:
        rows = (
            session.execute(
                select(ModelVersionRow)
                .where(ModelVersionRow.name == name)
                .order_by(ModelVersionRow.version)
            )
            .scalars()
            .all()
        )
        aliases = catalog.aliases_of(session, name)
        if not rows:
            raise ApiError(404, "not_found", f"no model {name!r}")
        next_version = catalog.next_version(session, name)
    return schemas.ModelDetail(
        name=name,
        versions=[catalog.version_summary(row, aliases) for row in rows],
        aliases=aliases,
        next_version=next_version,
    ).model_dump(mode="json")


@bp.get("/models/<name>/next-version")
@endpoint(
    "The next free version number of a model (1 for a new model)",
    tag="models",
    roles=("viewer", "publisher"),
    responses={200: schemas.NextVersion},
)
@authorize(*READERS)
def next_version(name: str) -> dict[str, Any]:
    _check_name(name)
    with current_registry().db.transaction() as session:
        return {"version": catalog.next_version(session, name)}


@bp.get("/models/<name>/versions/<int(min=1,max=2147483647):version>")
@endpoint(
    "A version and its bundle metadata",
    tag="models",
    roles=("viewer", "publisher"),
    responses={200: schemas.VersionDetail},
)
@authorize(*READERS)
def show_version(name: str, version: int) -> dict[str, Any]:
    _check_name(name)
    with current_registry().db.transaction() as session:
        row = catalog.get_version(session, name, version)
        aliases = catalog.aliases_of(session, name)
    return catalog.version_detail(row, aliases).model_dump(mode="json")


@bp.post("/models/<name>/versions/<int(min=1,max=2147483647):version>/withdraw")
@endpoint(
    "Withdraw a version: no device will be sent to it again",
    tag="models",
    roles=("publisher",),
    body=schemas.WithdrawBody,
    responses={200: schemas.VersionDetail},
)
@audited("model.withdraw")
@authorize(Role.PUBLISHER)
def withdraw(name: str, version: int) -> dict[str, Any]:
    set_audit_resource(f"model:{name}/v{version}")
    _check_name(name)
    body = parse_body(schemas.WithdrawBody)
    set_audit_resource(f"model:{name}/v{version}", reason=body.reason)
    registry = current_registry()
    row = catalog.withdraw(registry, name, version, body.reason)
    with registry.db.transaction() as session:
        aliases = catalog.aliases_of(session, name)
    return catalog.version_detail(row, aliases).model_dump(mode="json")


@bp.put("/models/<name>/aliases/<alias>")
@endpoint(
    "Point an alias (production, canary, …) at a version",
    tag="models",
    roles=("publisher",),
    body=schemas.AliasBody,
    responses={200: schemas.AliasResult},
)
@audited("model.alias")
@authorize(Role.PUBLISHER)
def put_alias(name: str, alias: str) -> dict[str, Any]:
    set_audit_resource(f"model:{name}@{alias}")
    _check_name(name)
    _check_alias(alias)
    body = parse_body(schemas.AliasBody)
    set_audit_resource(f"model:{name}@{alias}", version=body.version)
    row = catalog.set_alias(current_registry(), name, alias, body.version, principal())
    return schemas.AliasResult(name=row.name, alias=row.alias, version=row.version).model_dump()


@bp.delete("/models/<name>/aliases/<alias>")
@endpoint("Remove an alias", tag="models", roles=("publisher",), responses={204: None})
@audited("model.alias_delete")
@authorize(Role.PUBLISHER)
def delete_alias(name: str, alias: str) -> tuple[str, int]:
    set_audit_resource(f"model:{name}@{alias}")
    _check_name(name)
    _check_alias(alias)
    catalog.delete_alias(current_registry(), name, alias)
    return "", 204


def _check_alias(alias: str) -> None:
    if not re.fullmatch(ALIAS_PATTERN, alias):
        raise ApiError(422, "validation_error", f"alias: must match {ALIAS_PATTERN}")


@bp.get("/artifacts/<sha256>")
@endpoint(
    "Download an artifact by digest (immutable; ETag and Range supported)",
    tag="models",
    roles=("viewer", "publisher"),
    responses={200: BUNDLE_MEDIA, 206: BUNDLE_MEDIA, 304: None},
)
@audited("artifact.download")
@authorize(*READERS)
def download(sha256: str) -> Response:
    set_audit_resource(f"artifact:{sha256}")
    registry = current_registry()
    if not is_sha256(sha256) or not registry.artifacts.exists(sha256):
        raise ApiError(404, "not_found", f"no artifact {sha256}")
    response = send_file(
        registry.artifacts.path(sha256),
        mimetype=BUNDLE_MEDIA,
        as_attachment=True,
        download_name=f"{sha256}.tar",
        etag=sha256,
        conditional=True,
    )
    # private: a shared cache must not hand token-protected bundles to others
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
