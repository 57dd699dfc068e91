"""The registry's run-time parts, attached to its Flask app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from flask import Flask, current_app

from storecast.common.cloud import Database
from storecast.registry.config import RegistryConfig
from storecast.registry.storage import ArtifactStore
from storecast.registry.tuf_repo import OnlineKeys

_EXTENSION = "storecast.registry"


@dataclass
class Registry:
    config: RegistryConfig
    db: Database
    artifacts: ArtifactStore
    keys: OnlineKeys


def init_app(app: Flask, registry: Registry) -> None:
    app.extensions[_EXTENSION] = registry


def current_registry() -> Registry:
    return cast(Registry, current_app.extensions[_EXTENSION])
