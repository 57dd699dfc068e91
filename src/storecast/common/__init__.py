"""Pieces several storecast components share: errors, clocks."""

from storecast.common.clock import Clock, FixedClock, SystemClock
from storecast.common.errors import ConfigError, DataError, ModelError, StorecastError

__all__ = [
    "Clock",
    "ConfigError",
    "DataError",
    "FixedClock",
    "ModelError",
    "StorecastError",
    "SystemClock",
]
