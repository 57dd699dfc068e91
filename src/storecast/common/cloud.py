"""What the cloud services share at run time: the database on the app, who is calling,
and an audit record for every call that changes something.

``init_app`` attaches a ``Database`` to the Flask app; ``authorize`` resolves the bearer
token to a ``Principal`` (401 without a valid one, 403 for the wrong role); ``audited``
appends one hash-chained record per call, whatever its outcome.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, request
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from storecast.common import audit
from storecast.common.auth import Principal, Role, TokenRow, allows, hash_secret
from storecast.common.clock import Clock
from storecast.common.db import make_engine, make_sessionmaker, transaction
from storecast.common.web import ApiError, client_addr, request_id

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_EXTENSION = "storecast.database"


@dataclass
class Database:
    """The engine, a session factory and the clock every service uses."""

    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock

    @classmethod
    def connect(cls, url: str, clock: Clock) -> Database:
        engine = make_engine(url)
        return cls(engine, make_sessionmaker(engine), clock)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Session]:
        with transaction(self.sessions, write=write) as session:
            yield session


def init_app(app: Flask, database: Database) -> None:
    app.extensions[_EXTENSION] = database


def database() -> Database:
    """The ``Database`` of the current app."""
    return cast(Database, current_app.extensions[_EXTENSION])


def principal() -> Principal:
    """The caller, once ``authorize`` let it in."""
    return cast(Principal, g.principal)


def lookup_token(session: Session, secret: str) -> Principal | None:
    """The principal behind a bearer token, or None when unknown or revoked."""
    row = session.execute(
        select(TokenRow.id, TokenRow.name, TokenRow.role, TokenRow.device_id).where(
            TokenRow.secret_sha256 == hash_secret(secret), TokenRow.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return Principal(row.id, row.name, Role(row.role), row.device_id)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def authenticate() -> Principal:
    """Resolve the request's bearer token (401 when missing, unknown or revoked)."""
    secret = _bearer()
    if secret is None:
        raise ApiError(401, "unauthorized", "send a bearer token (Authorization: Bearer ...)")
    with database().transaction() as session:
        found = lookup_token(session, secret)
    if found is None:
        raise ApiError(401, "unauthorized", "the token is unknown or revoked")
    g.principal = found
    return found


def authorize(*roles: Role) -> Callable[[F], F]:
    """Let in callers whose token has one of ``roles`` (admin always); 401/403 otherwise."""
    allowed = frozenset(roles)

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            who = authenticate()
            if not allows(who.role, allowed):
                raise ApiError(
                    403, "forbidden", f"role {who.role.value!r} may not call this endpoint"
                )
            return view(*args, **kwargs)

        return cast(F, guarded)

    return wrap


def set_audit_resource(resource: str, **detail: Any) -> None:
    """Name what this call acted on (and add detail) for its audit record."""
    g.audit_resource = resource
    g.audit_detail = {**g.get("audit_detail", {}), **detail}


def audited(action: str) -> Callable[[F], F]:
    """Append an audit record for every call of the view, successful or not."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            status = 500
            try:
                result = view(*args, **kwargs)
                status = current_app.make_response(result).status_code
                return result
            except ApiError as exc:
                status = exc.status
                g.audit_detail = {**g.get("audit_detail", {}), "error": exc.message}
                raise
            except HTTPException as exc:
                status = exc.code or 500
                raise
            finally:
                _record(action, status)

        return cast(F, recorded)

    return wrap


def _record(action: str, status: int) -> None:
    who: Principal | None = g.get("principal")
    outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "failed")
    entry = audit.AuditEntry(
        ts=database().clock.now(),
        actor=f"{who.token_id}:{who.name}" if who else "anonymous",
        role=who.role.value if who else "-",
        action=action,
        resource=str(g.get("audit_resource", request.path)),
        outcome=outcome,
        status=status,
        request_id=request_id(),
        client_addr=client_addr(),
        detail=dict(g.get("audit_detail", {})),
    )
    try:
        with database().transaction(write=True) as session:
            audit.append(session, entry)
    except Exception:
        log.exception("could not write the audit record for %s (request %s)", action, request_id())
        raise
