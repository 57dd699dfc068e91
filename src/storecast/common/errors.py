"""The storecast exception tree.

    StorecastError          root of every error storecast raises on purpose
    ├── DataError           input data is unusable (file, column, rows named)
    ├── ConfigError         a configuration or argument is invalid
    └── ModelError          a model or checkpoint is unusable (shape, parity, format)

Foreign errors (pandas, torch, onnxruntime) are converted where they enter storecast
(``raise DataError(...) from exc``) so callers handle one tree. The CLI maps ``DataError``
and ``ConfigError`` to exit code 2.
"""

from __future__ import annotations


class StorecastError(Exception):
    """Root of every error storecast raises on purpose."""


class DataError(StorecastError):
    """Input data is unusable; the message names the file, column and offending rows."""


class ConfigError(StorecastError):
    """A configuration value or command-line argument is invalid."""


class ModelError(StorecastError):
    """A model, checkpoint or exported graph is unusable."""
