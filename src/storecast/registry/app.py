"""The registry's Flask application factory."""

from __future__ import annotations

from flask import Flask

from storecast.common import cloud, metrics, service, web
from storecast.common.cloud import Database
from storecast.registry import context, fleet
from storecast.registry.api import audit, deployments, devices, models, tokens, tuf
from storecast.registry.config import RegistryConfig
from storecast.registry.fastpoll import FastPoll
from storecast.registry.scheduler import RolloutScheduler
from storecast.registry.storage import ArtifactStore
from storecast.registry.tuf_repo import load_online_keys

BLUEPRINTS = (models.bp, devices.bp, deployments.bp, tokens.bp, audit.bp, tuf.bp)
SCHEDULER_EXTENSION = "storecast.rollouts"  # the app's RolloutScheduler, when it runs one


def register(app: Flask, config: RegistryConfig, database: Database, service: str) -> None:
    """Add the registry's blueprints and run-time parts to ``app``."""
    keys = load_online_keys(config.keys_dir)
    registry = context.Registry(config, database, ArtifactStore(config.artifacts_dir), keys)
    context.init_app(app, registry)
    cache = fleet.AssignmentCache()
    app.extensions[fleet.CACHE_EXTENSION] = cache
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.wsgi_app = FastPoll(app.wsgi_app, registry, cache, service)  # type: ignore[method-assign]
    if config.rollout_interval_s > 0:
        scheduler = RolloutScheduler(database, config.rollout_interval_s)
        app.extensions[SCHEDULER_EXTENSION] = scheduler
        scheduler.start()


def base_app(name: str, database: Database, max_upload_bytes: int) -> Flask:
    """A Flask app with what every cloud service shares (errors, auth, health, metrics)."""
    app = Flask(name)
    # One byte over the limit lets a view tell "too large" from "exactly the limit"
    # also for chunked uploads, where werkzeug cuts the stream rather than refusing it.
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]
    web.init_app(app)
    cloud.init_app(app, database)
    return app


def create_app(config: RegistryConfig) -> Flask:
    """The model registry as its own service (``storecast registry serve``)."""
    database = Database.connect(config.db_url, config.clock)
    app = base_app("storecast.registry", database, config.max_upload_bytes)
    register(app, config, database, "registry")
    service.init_app(app, "storecast registry")
    metrics.init_app(app, "registry")
    return app
