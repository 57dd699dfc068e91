"""The ``storecast`` command line: one entry point for every storecast process."""

from __future__ import annotations

from storecast.cli import bundle, demo, forecast, registry, remote, sim
from storecast.cli._app import app, main

__all__ = ["app", "bundle", "demo", "forecast", "main", "registry", "remote", "sim"]
