"""``/tuf/``: the registry as a TUF repository (consistent snapshots) for ``ngclient``.

``/tuf/metadata/{version}.{role}.json`` and ``/tuf/metadata/timestamp.json`` serve signed
metadata; ``/tuf/targets/{dir}/{sha256}.{file}`` serves a bundle by its hash. Both need a
token (models are the retailer's property); the signatures, not the token, are what a
device trusts.
"""

from __future__ import annotations

from flask import Blueprint, Response, send_file
from sqlalchemy import select

from storecast.common.auth import Role
from storecast.common.cloud import audited, authorize, set_audit_resource
from storecast.common.web import ApiError, endpoint
from storecast.registry.context import current_registry
from storecast.registry.signing import serve_metadata
from storecast.registry.tables import ModelVersionRow
from storecast.registry.tuf_repo import parse_metadata_path, parse_target_request

bp = Blueprint("tuf", __name__, url_prefix="/tuf")

ANY = (Role.DEVICE, Role.VIEWER, Role.PUBLISHER)


@bp.get("/metadata/<name>")
@endpoint(
    "Signed TUF metadata (root, targets, snapshot by version; timestamp)",
    tag="tuf",
    roles=("device", "viewer", "publisher"),
    responses={200: "application/json"},
)
@authorize(*ANY)
def metadata(name: str) -> Response:
    parsed = parse_metadata_path(name)
    if parsed is None:
        raise ApiError(404, "not_found", f"no TUF metadata {name!r}")
    registry = current_registry()
    data = serve_metadata(registry.db, registry.config, registry.keys, *parsed)
    if data is None:
        raise ApiError(404, "not_found", f"no TUF metadata {name!r}")
    response = Response(data, mimetype="application/json")
    if parsed[1] is not None:  # versioned files never change
        # private: a shared cache must not hand token-protected files to others
        response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/targets/<path:path>")
@endpoint(
    "A TUF target (a bundle) by its hash-prefixed path",
    tag="tuf",
    roles=("device", "viewer", "publisher"),
    responses={200: "application/x-tar"},
)
@audited("artifact.download")
@authorize(*ANY)
def target(path: str) -> Response:
    set_audit_resource(f"target:{path}")
    parsed = parse_target_request(path)
    registry = current_registry()
    if parsed is None or not _is_live_target(*parsed):
        raise ApiError(404, "not_found", f"no TUF target {path!r}")
    target_path, sha256 = parsed
    set_audit_resource(f"target:{target_path}", sha256=sha256)
    response = send_file(
        registry.artifacts.path(sha256), mimetype="application/x-tar", etag=sha256, conditional=True
    )
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def _is_live_target(target_path: str, sha256: str) -> bool:
    """Whether a published, not withdrawn, version has this target path and digest."""
    registry = current_registry()
    with registry.db.transaction() as session:
        found = session.execute(
            select(ModelVersionRow.id).where(
                ModelVersionRow.target_path == target_path,
                ModelVersionRow.sha256 == sha256,
                ModelVersionRow.withdrawn_at.is_(None),
            )
        ).first()
    return found is not None and registry.artifacts.exists(sha256)
