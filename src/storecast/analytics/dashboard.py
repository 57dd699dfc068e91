"""``/dashboard``: the analytics web page for viewers.

A viewer signs in once with a token through a form; the Flask session cookie then holds
the token's id (never its secret), and the page's own JavaScript reads the JSON analytics
API with that cookie. The token is looked up again on every page load (and by the API on
every call), so revoking it ends the session. Charts use plotly.js, served from the
installed ``plotly`` package, so the page needs no internet: no CDN, no external fonts,
and a Content-Security-Policy that allows only this origin's scripts.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from storecast.common.auth import Principal, Role, allows
from storecast.common.cloud import (
    SESSION_TOKEN_KEY,
    audited,
    database,
    lookup_token,
    session_principal,
    set_audit_resource,
)
from storecast.common.web import ApiError

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    static_folder="static",
    template_folder="templates",
)

# Who may open the dashboard: whoever may read the analytics API (viewers; admin always).
DASHBOARD_ROLES = frozenset({Role.VIEWER})
MAX_SECRET_CHARS = 256  # a real token is 47; refuse to hash anything much longer
DEFAULT_REFRESH_S = 30
MAX_REFRESH_S = 3600
ASSET_MAX_AGE_S = 365 * 24 * 3600  # plotly.js is addressed by its digest: cache it for good

# Scripts from this origin only: no inline script, no eval. Styles need ``'unsafe-inline'``
# because plotly.js adds its own style rules and attributes while it draws (without it,
# Chromium blocks them and the modebar and hover labels lose their styling).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

Unit = Literal["count", "percent", "ms"]


@dataclass(frozen=True)
class Tile:
    """A KPI tile: where its value sits in ``GET /v1/analytics/fleet`` and how it reads."""

    key: str  # the tile's ``data-kpi``
    label: str
    path: str  # dotted path into the ``FleetKpis`` JSON
    unit: Unit


TILES = (
    Tile("devices_online", "Devices online", "devices.online", "count"),
    Tile("devices_stale", "Devices stale", "devices.stale", "count"),
    Tile("devices_offline", "Devices offline", "devices.offline", "count"),
    Tile("forecasts_served", "Forecasts served", "forecasts_served", "count"),
    Tile("error_rate", "Error rate", "error_rate", "percent"),
    Tile("latency_p95", "Latency p95", "latency.p95_ms", "ms"),
    Tile("chain_wape", "Chain WAPE", "sales.wape", "percent"),
    Tile("update_success_rate", "Update success rate", "updates.success_rate", "percent"),
    Tile("telemetry_backlog", "Telemetry backlog", "telemetry.backlog", "count"),
    Tile("telemetry_dropped", "Telemetry dropped", "telemetry.dropped", "count"),
)


@bp.after_request
def _harden(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"  # pages name who is signed in
    return response


# -- who is signed in ----------------------------------------------------------------------


def session_viewer() -> Principal | None:
    """The signed-in principal, when the session's token still exists, is live and may view."""
    who = session_principal()
    return who if who is not None and allows(who.role, DASHBOARD_ROLES) else None


def _refresh_seconds() -> int:
    asked = request.args.get("refresh", type=int)
    return asked if asked is not None and 1 <= asked <= MAX_REFRESH_S else DEFAULT_REFRESH_S


# -- pages ---------------------------------------------------------------------------------


@bp.before_request
def _same_origin_posts() -> ResponseReturnValue | None:
    """Refuse a form posted from another site (login CSRF: signing someone in as another)."""
    if request.method != "POST":
        return None
    origin = request.headers.get("Origin")
    # Hosts compared, not schemes: behind a TLS-terminating proxy the app sees http.
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "forbidden", "the form was posted from another site")
    return None


@bp.get("", strict_slashes=False)
def index() -> ResponseReturnValue:
    """The dashboard, or the login form when nobody (valid) is signed in."""
    who = session_viewer()
    if who is None:
        session.pop(SESSION_TOKEN_KEY, None)
        return redirect(url_for(".login_form"))
    return render_template(
        "dashboard.html",
        who=who,
        tiles=TILES,
        refresh_seconds=_refresh_seconds(),
        plotly_digest=_plotly_digest(),
    )


@bp.get("/login")
def login_form() -> ResponseReturnValue:
    """The sign-in form (straight to the dashboard when already signed in)."""
    if session_viewer() is not None:
        return redirect(url_for(".index"))
    return render_template("login.html", error=None)


@bp.post("/login")
@audited("dashboard.login")
def login() -> ResponseReturnValue:
    """Check a viewer token and start a session holding its id (401 and the form otherwise)."""
    secret = request.form.get("token", "").strip()
    found = None
    if secret and len(secret) <= MAX_SECRET_CHARS:
        with database().transaction() as db:
            found = lookup_token(db, secret)
    session.clear()
    set_audit_resource("dashboard:session")
    if found is None:
        return _refused("The token is unknown or revoked.")
    g.principal = found  # the audit record names who tried
    if not allows(found.role, DASHBOARD_ROLES):
        return _refused(
            f"A {found.role.value} token cannot open the dashboard; use a viewer token."
        )
    session[SESSION_TOKEN_KEY] = found.token_id
    return redirect(url_for(".index"), 303)


def _refused(message: str) -> ResponseReturnValue:
    set_audit_resource("dashboard:session", error=message)
    return render_template("login.html", error=message), 401


@bp.post("/logout")
@audited("dashboard.logout")
def logout() -> ResponseReturnValue:
    """End the session and go back to the sign-in form."""
    who = session_viewer()
    if who is not None:
        g.principal = who
    set_audit_resource("dashboard:session")
    session.clear()
    return redirect(url_for(".login_form"), 303)


# -- plotly.js -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Asset:
    body: bytes
    gzipped: bytes
    digest: str  # sha256 prefix: the ETag and the cache-busting query value


@functools.cache
def _plotly_asset() -> _Asset | None:
    # find_spec locates the package without importing it (importing plotly is slow).
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        return None
    body = path.read_bytes()
    gzipped = gzip.compress(body, compresslevel=6, mtime=0)
    return _Asset(body, gzipped, hashlib.sha256(body).hexdigest()[:16])


def _plotly_digest() -> str:
    asset = _plotly_asset()
    return asset.digest if asset is not None else "missing"


@bp.get("/static/plotly.min.js")
def plotly_js() -> Response:
    """The plotly.js bundled with the ``plotly`` package (immutable; gzip when accepted)."""
    asset = _plotly_asset()
    if asset is None:
        raise ApiError(404, "not_found", "plotly is not installed: pip install 'storecast[cloud]'")
    use_gzip = request.accept_encodings.quality("gzip") > 0
    response = Response(asset.gzipped if use_gzip else asset.body, mimetype="text/javascript")
    if use_gzip:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.set_etag(asset.digest + ("-gz" if use_gzip else ""))
    response.cache_control.public = True
    response.cache_control.max_age = ASSET_MAX_AGE_S
    response.cache_control.immutable = True
    response.make_conditional(request)  # 304 for a matching If-None-Match
    return response
