"""The analytics service: telemetry ingestion, the analytics API and the dashboard."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

from storecast.analytics import api, dashboard, usage
from storecast.analytics.api import telemetry
from storecast.common import cloud, metrics, service, web
from storecast.common.clock import Clock
from storecast.common.cloud import Database

SESSION_KEY_FILE = "session.key"  # in the cloud home; STORECAST_SESSION_KEY overrides it


def session_key(home: Path) -> bytes:
    """The key signing dashboard session cookies (created on first use, kept in ``home``).

    Replicas behind one load balancer must share it: give them the same home, or the
    same ``STORECAST_SESSION_KEY``.
    """
    if configured := os.environ.get("STORECAST_SESSION_KEY"):
        return configured.encode()
    path = home / SESSION_KEY_FILE
    if not path.exists():
        # Written whole under a temporary name, then linked into place: several workers
        # starting at once all end up reading the one key that won.
        home.mkdir(parents=True, exist_ok=True)
        temporary = home / f".{SESSION_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(32).encode())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_bytes().strip()


def register(app: Flask, home: Path) -> None:
    """Add the analytics blueprints, the usage log and dashboard sessions to ``app``."""
    app.secret_key = session_key(home)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    # What the dashboard reads with its cookie: the analytics API and the audit log.
    app.config[cloud.SESSION_PATHS_CONFIG] = ("/v1/analytics/", "/v1/audit", "/dashboard")
    for blueprint in (telemetry.bp, *api.BLUEPRINTS, dashboard.bp):
        app.register_blueprint(blueprint)
    usage.init_app(app)


def create_app(home: Path, database_url: str, clock: Clock) -> Flask:
    """Analytics as its own service (``storecast analytics serve``) over the cloud database."""
    database = Database.connect(database_url, clock)
    app = Flask("storecast.analytics")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    web.init_app(app)
    cloud.init_app(app, database)
    register(app, home)
    service.init_app(app, "storecast analytics")
    metrics.init_app(app, "analytics")
    return app
