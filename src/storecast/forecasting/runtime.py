"""ONNX Runtime inference for exported demand models (numpy + onnxruntime, no torch).

This is what an edge device runs: ``OnnxModel`` takes the ``Windows`` the shared feature
code builds and returns quantiles in sales units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from storecast.common.errors import ModelError
from storecast.forecasting.features import Windows, decode

INPUT_PAST = "past"
INPUT_FUTURE = "future"
OUTPUT = "quantiles"


class OnnxModel:
    """An exported demand model loaded in an ONNX Runtime session."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from exc
        names = {i.name for i in self.session.get_inputs()}
        if names != {INPUT_PAST, INPUT_FUTURE}:
            raise ModelError(f"{path}: expected inputs {{'past', 'future'}}, found {names}")
        self.path = path

    def predict_scaled(self, past: np.ndarray, future: np.ndarray) -> np.ndarray:
        """Scaled quantiles (N, H, 3) for float32 inputs (N, L, Fp) and (N, H, Ff)."""
        out = self.session.run(
            [OUTPUT],
            {
                INPUT_PAST: past.astype(np.float32, copy=False),
                INPUT_FUTURE: future.astype(np.float32, copy=False),
            },
        )
        return np.asarray(out[0])

    def forecast(self, windows: Windows) -> np.ndarray:
        """Quantile forecasts in sales units (N, H, 3)."""
        return decode(self.predict_scaled(windows.past, windows.future), windows.scale)
