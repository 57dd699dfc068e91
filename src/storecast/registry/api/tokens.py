"""``/v1/tokens``: admins mint and revoke tokens (device tokens come from enrolment)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint
from sqlalchemy import select

from storecast.common.auth import Role, TokenRow, mint_token
from storecast.common.cloud import audited, authorize, database, principal, set_audit_resource
from storecast.common.web import ApiError, endpoint, parse_body
from storecast.registry import schemas

bp = Blueprint("tokens", __name__, url_prefix="/v1/tokens")

TOKEN_ID = re.compile(r"^tok_[0-9a-f]{16}$")


def token_out(row: TokenRow) -> schemas.TokenOut:
    return schemas.TokenOut(
        id=row.id,
        name=row.name,
        role=row.role,
        device_id=row.device_id,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
    )


@bp.post("")
@endpoint(
    "Create a token; its secret is returned once",
    tag="tokens",
    roles=("admin",),
    body=schemas.TokenBody,
    responses={201: schemas.TokenCreated},
)
@audited("token.create")
@authorize(Role.ADMIN)
def create() -> tuple[dict[str, Any], int]:
    body = parse_body(schemas.TokenBody)
    token = mint_token()
    db = database()
    with db.transaction(write=True) as session:
        row = TokenRow(
            id=token.token_id,
            name=body.name,
            role=body.role,
            secret_sha256=token.secret_sha256,
            created_at=db.clock.now(),
            created_by=principal().token_id,
        )
        session.add(row)
    set_audit_resource(f"token:{row.id}", name=body.name, role=body.role)
    created = schemas.TokenCreated(**token_out(row).model_dump(), token=token.secret)
    return created.model_dump(mode="json"), 201


@bp.get("")
@endpoint(
    "List tokens (never their secrets)",
    tag="tokens",
    roles=("admin",),
    responses={200: schemas.TokenList},
)
@authorize(Role.ADMIN)
def list_tokens() -> dict[str, Any]:
    with database().transaction() as session:
        rows = session.execute(select(TokenRow).order_by(TokenRow.created_at)).scalars().all()
    return schemas.TokenList(tokens=[token_out(r) for r in rows]).model_dump(mode="json")


@bp.delete("/<token_id>")
@endpoint(
    "Revoke a token (takes effect on the next request)",
    tag="tokens",
    roles=("admin",),
    responses={200: schemas.TokenOut},
)
@audited("token.revoke")
@authorize(Role.ADMIN)
def revoke(token_id: str) -> dict[str, Any]:
    set_audit_resource(f"token:{token_id[:64]}")
    if not TOKEN_ID.match(token_id):
        raise ApiError(404, "not_found", f"no token {token_id[:64]!r}")
    db = database()
    with db.transaction(write=True) as session:
        row = session.get(TokenRow, token_id)
        if row is None:
            raise ApiError(404, "not_found", f"no token {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = db.clock.now()
    return token_out(row).model_dump(mode="json")
