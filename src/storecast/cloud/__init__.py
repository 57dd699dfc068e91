"""The cloud process: registry and analytics blueprints in one app over one database."""

from __future__ import annotations

from flask import Flask

from storecast.analytics import app as analytics_app
from storecast.common import metrics, service
from storecast.common.cloud import Database
from storecast.registry import app as registry_app
from storecast.registry.config import RegistryConfig

__all__ = ["create_app"]


def create_app(config: RegistryConfig) -> Flask:
    """Every cloud service in one Flask app (``storecast cloud serve``, the demo)."""
    database = Database.connect(config.db_url, config.clock)
    app = registry_app.base_app("storecast.cloud", database, config.max_upload_bytes)
    registry_app.register(app, config, database, "cloud")
    analytics_app.register(app, config.home)
    service.init_app(app, "storecast cloud")
    metrics.init_app(app, "cloud")
    return app
