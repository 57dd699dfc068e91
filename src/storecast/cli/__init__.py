"""The ``storecast`` command line: one entry point for every storecast process."""

from __future__ import annotations

from storecast.cli import demo, forecast, sim
from storecast.cli._app import app, main

__all__ = ["app", "demo", "forecast", "main", "sim"]
