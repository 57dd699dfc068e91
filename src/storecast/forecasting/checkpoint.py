"""Checkpoints of the demand LSTM (torch) and forecasting with them.

A checkpoint is ``{"model": state_dict, "config": ModelConfig, "features": FeatureSpec,
"scaler": ..., "meta": lineage}`` holding only tensors and plain containers, so it loads
with ``torch.load(path, weights_only=True)``: a checkpoint is untrusted input, never a pickle.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storecast.common.errors import ModelError
from storecast.common.files import atomic_path
from storecast.forecasting.backtest import Forecaster
from storecast.forecasting.features import FeatureSpec, Windows, decode
from storecast.forecasting.model import DemandLSTM, ModelConfig

FORMAT = "storecast.lstm/1"


@dataclass(frozen=True)
class LoadedModel:
    model: DemandLSTM
    spec: FeatureSpec
    meta: dict[str, Any]


def scaler_description(spec: FeatureSpec) -> dict[str, Any]:
    """How inputs and outputs are scaled (documented in the checkpoint for other runtimes)."""
    return {
        "kind": "window_mean",
        "sales": "divide by mean observed sales of the lookback window",
        "footfall": "divide by mean footfall of the lookback window",
        "min_scale": spec.min_scale,
        "temperature": "(temperature_c - 15) / 10",
        "precip": "log1p(precip_mm) / 2",
        "output": "max(q, 0) * sales scale",
    }


def make_checkpoint(model: DemandLSTM, spec: FeatureSpec, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "config": model.config.to_dict(),
        "features": spec.to_dict(),
        "scaler": scaler_description(spec),
        "meta": meta,
    }


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint atomically (readers never see a partial file)."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(source: Path | bytes, *, label: str | None = None) -> LoadedModel:
    """Load and rebuild a model from a file or its bytes.

    ``ModelError`` (naming ``label``, default the path) if it is not a storecast checkpoint.
    """
    path = label or ("checkpoint" if isinstance(source, bytes) else str(source))
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        ckpt = torch.load(stream, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a checkpoint") from None
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{path}: not a storecast LSTM checkpoint (format {FORMAT!r} expected)")
    try:
        config = ModelConfig(**ckpt["config"])
        spec = FeatureSpec.from_dict(ckpt["features"])
        model = DemandLSTM(config)
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: checkpoint does not match the model ({exc})") from exc
    model.eval()
    return LoadedModel(model=model, spec=spec, meta=dict(ckpt.get("meta", {})))


def predict_scaled(
    model: DemandLSTM, past: np.ndarray, future: np.ndarray, batch: int = 2048
) -> np.ndarray:
    """Scaled quantiles (N, H, 3) from numpy inputs, under ``torch.inference_mode``."""
    out = []
    with torch.inference_mode():
        for i in range(0, past.shape[0], batch):
            out.append(
                model(
                    torch.from_numpy(past[i : i + batch]), torch.from_numpy(future[i : i + batch])
                ).numpy()
            )
    if not out:
        return np.zeros((0, model.config.horizon, 3), dtype=np.float32)
    return np.concatenate(out)


def torch_forecaster(model: DemandLSTM) -> Forecaster:
    """A backtest forecaster running ``model`` in torch."""

    def forecast(w: Windows) -> np.ndarray:
        return decode(predict_scaled(model, w.past, w.future), w.scale)

    return forecast
