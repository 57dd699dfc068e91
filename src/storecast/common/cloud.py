"""What the cloud services share at run time: the database on the app, who is calling,
and an audit record for every call that changes something.

``init_app`` attaches a ``Database`` to the Flask app; ``authorize`` resolves the bearer
token to a ``Principal`` (401 without a valid one, 403 for the wrong role); ``audited``
appends one hash-chained record per call, whatever its outcome.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request, session
from sqlalchemy import Engine, Result, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from storecast.common import audit
from storecast.common.auth import Principal, Role, TokenRow, allows, hash_secret
from storecast.common.clock import Clock
from storecast.common.db import make_engine, make_sessionmaker, transaction
from storecast.common.web import ApiError, bearer_secret, client_addr, error_response, request_id

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_EXTENSION = "storecast.database"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_AUDIT_RETRY_PAUSES = (0.05, 0.2, 0.0)  # seconds after each failed audit write


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

    @app.errorhandler(IntegrityError)
    def _conflict(exc: IntegrityError) -> Response:
        # A uniqueness race the view's own checks could not see: the other writer won.
        log.info("integrity error answered as 409: %s", exc.orig)
        return error_response(409, "conflict", "a conflicting change was made at the same time")

    @app.after_request
    def _audit_unrouted_changes(response: Response) -> Response:
        # A mutating call that never reached an audited view (no such route, refused
        # before routing) is still recorded: every attempt to change something is.
        if request.method not in _READ_METHODS and not g.get("audited", False):
            if g.get("principal") is None and (secret := _bearer()) is not None:
                with database.transaction() as session:
                    g.principal = lookup_token(session, secret)
            _record(f"http.{request.method.lower()}", response.status_code)
        return response


def database() -> Database:
    """The ``Database`` of the current app."""
    return cast(Database, current_app.extensions[_EXTENSION])


def principal() -> Principal:
    """The caller, once ``authorize`` let it in."""
    return cast(Principal, g.principal)


# Built once: building and cache-keying the statement costs more than running it.
_TOKEN_BY_HASH = select(TokenRow.id, TokenRow.name, TokenRow.role, TokenRow.device_id).where(
    TokenRow.secret_sha256 == bindparam("secret_sha256"), TokenRow.revoked_at.is_(None)
)


def lookup_token(session: Session, secret: str) -> Principal | None:
    """The principal behind a bearer token, or None when unknown or revoked."""
    return _principal_of(session.execute(_TOKEN_BY_HASH, {"secret_sha256": hash_secret(secret)}))


def _principal_of(result: Result[Any]) -> Principal | None:
    row = result.first()
    if row is None:
        return None
    return Principal(row.id, row.name, Role(row.role), row.device_id)


def _bearer() -> str | None:
    return bearer_secret(request.headers.get("Authorization", ""))


# The dashboard's session cookie names a token by id; the token is re-read on every
# request, so revoking it ends the session too.
SESSION_TOKEN_KEY = "token_id"
SESSION_PATHS_CONFIG = "STORECAST_SESSION_PATHS"  # path prefixes where the cookie is accepted
_TOKEN_BY_ID = select(TokenRow.id, TokenRow.name, TokenRow.role, TokenRow.device_id).where(
    TokenRow.id == bindparam("token_id"), TokenRow.revoked_at.is_(None)
)


def session_principal() -> Principal | None:
    """The caller the dashboard session names, when its token still exists and is live."""
    token_id = session.get(SESSION_TOKEN_KEY)
    if not isinstance(token_id, str):
        return None
    with database().engine.connect() as conn:
        return _principal_of(conn.execute(_TOKEN_BY_ID, {"token_id": token_id}))


def authenticate(lookup: Callable[[str], Principal | None] | None = None) -> Principal:
    """Resolve the request's bearer token (401 when missing, unknown or revoked).

    Without a bearer token, a read may use the dashboard's session cookie instead.
    ``lookup`` (secret -> principal, or None when unknown or revoked) replaces the token
    query, so a hot view can answer it with the one query it runs anyway.
    """
    secret = _bearer()
    if secret is None:
        # The session cookie authorises reads only (a cookie never authorises a change),
        # and only where the app opted in (SESSION_PATHS_CONFIG), never on a hot view.
        prefixes = tuple(current_app.config.get(SESSION_PATHS_CONFIG, ()))
        cookie_ok = lookup is None and request.method in _READ_METHODS
        from_session = (
            session_principal() if cookie_ok and request.path.startswith(prefixes) else None
        )
        if from_session is not None:
            g.principal = from_session
            return from_session
        raise ApiError(401, "unauthorized", "send a bearer token (Authorization: Bearer ...)")
    if lookup is not None:
        found = lookup(secret)
    else:  # a plain connection, not an ORM session: this runs on every authenticated call
        with database().engine.connect() as conn:
            found = _principal_of(
                conn.execute(_TOKEN_BY_HASH, {"secret_sha256": hash_secret(secret)})
            )
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
            except IntegrityError:
                status = 409  # answered by the IntegrityError handler
                raise
            finally:
                g.audited = True
                _record(action, status)

        return cast(F, recorded)

    return wrap


def _detail() -> dict[str, Any]:
    detail = dict(g.get("audit_detail", {}))
    if "error" not in detail and g.get("error_message"):
        detail["error"] = g.error_message
    return detail


def _record(action: str, status: int) -> None:
    who: Principal | None = g.get("principal")
    outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "failed")
    entry = audit.AuditEntry(
        ts=database().clock.now(),
        actor=who.actor if who else "anonymous",
        role=who.role.value if who else "-",
        action=action,
        resource=str(g.get("audit_resource", request.path)).replace("\x00", "\\x00"),
        outcome=outcome,
        status=status,
        request_id=request_id(),
        client_addr=client_addr(),
        detail=_detail(),
    )
    for attempt, pause in enumerate(_AUDIT_RETRY_PAUSES):
        try:
            with database().transaction(write=True) as session:
                audit.append(session, entry)
            return
        except Exception:
            if attempt == len(_AUDIT_RETRY_PAUSES) - 1:
                # The call's change may already be committed: keep the record in the log,
                # whole, so it can be replayed, and fail the request loudly.
                log.critical(
                    "audit record NOT written (request %s): %s",
                    request_id(),
                    audit.canonical({**asdict(entry), "ts": entry.ts.isoformat()}),
                    exc_info=True,
                )
                raise
            time.sleep(pause)
