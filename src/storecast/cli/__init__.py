"""The ``storecast`` command line: one entry point for every storecast process."""

from __future__ import annotations

from storecast.cli import bundle, demo, edge, forecast, pipeline, registry, remote, rollouts, sim
from storecast.cli._app import app, main

__all__ = [
    "app",
    "bundle",
    "demo",
    "edge",
    "forecast",
    "main",
    "pipeline",
    "registry",
    "remote",
    "rollouts",
    "sim",
]
