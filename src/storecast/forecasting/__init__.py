"""Forecasting core: data, synthetic chain, features, metrics and backtests (numpy only).

Importing this package never imports torch, so an edge device can build model inputs with
the same code training uses. The torch parts live in ``model``, ``training``,
``checkpoint``, ``export`` and ``workflow``; the pandas loader in ``loader``.
"""

from storecast.forecasting.backtest import backtest_origins, run_backtest
from storecast.forecasting.features import FeatureSpec, WindowBuilder, Windows, decode
from storecast.forecasting.history import Oracle, StoreHistory
from storecast.forecasting.synthetic import ChainConfig, SyntheticChain, generate_chain

__all__ = [
    "ChainConfig",
    "FeatureSpec",
    "Oracle",
    "StoreHistory",
    "SyntheticChain",
    "WindowBuilder",
    "Windows",
    "backtest_origins",
    "decode",
    "generate_chain",
    "run_backtest",
]
