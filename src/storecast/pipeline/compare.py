"""Scoring the production model on the candidate's hold-out (ONNX Runtime, no torch).

The production bundle is verified, its ``model.onnx`` loaded in ONNX Runtime, and scored
by the same rolling-origin backtest the candidate had: same history, same origins, same
random seed for the simulated weather-forecast error, so both see the same windows
(inputs are built with the production model's own feature spec, as a device would).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from storecast.bundle.verify import VerifiedBundle
from storecast.common.errors import DataError, ModelError
from storecast.forecasting.backtest import backtest_origins, run_backtest
from storecast.forecasting.features import FeatureSpec
from storecast.forecasting.history import StoreHistory
from storecast.forecasting.runtime import OnnxModel

PRODUCTION = "production"


def holdout_origins(history: StoreHistory, test_days: int) -> np.ndarray:
    """The backtest origins ``train_and_evaluate`` scores a model trained with ``test_days``."""
    return backtest_origins(history.n_hours, weeks=test_days // 7)


def score_bundle(
    bundle: VerifiedBundle, history: StoreHistory, origins: np.ndarray, seed: int
) -> dict[str, Any]:
    """The metrics report of a verified bundle's ONNX model on ``origins`` of ``history``
    (the model's figures under ``"production"``, beside the baselines')."""
    label = f"{bundle.metadata.name} v{bundle.metadata.version}"
    spec = FeatureSpec.from_dict(bundle.metadata.features)
    with tempfile.TemporaryDirectory(prefix="storecast-production-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(bundle.members["model.onnx"])
        model = OnnxModel(path)
        try:
            return run_backtest(
                history, {PRODUCTION: model.forecast}, origins=origins, seed=seed, spec=spec
            )
        except DataError as exc:
            raise ModelError(f"{label} cannot be scored on this hold-out: {exc}") from exc
