"""Export of the demand LSTM to ONNX (torch) and the torch/onnxruntime parity check."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from storecast.common.errors import ModelError
from storecast.common.files import atomic_path
from storecast.forecasting.model import DemandLSTM
from storecast.forecasting.runtime import INPUT_FUTURE, INPUT_PAST, OUTPUT, OnnxModel

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-4  # max abs difference of scaled quantiles, torch vs onnxruntime
OPSET = 18


def example_inputs(model: DemandLSTM, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs of the model's shapes, on the scale real inputs have."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    past = rng.normal(0.5, 0.5, (batch, cfg.lookback, cfg.past_features)).astype(np.float32)
    future = rng.normal(0.5, 0.5, (batch, cfg.horizon, cfg.future_features)).astype(np.float32)
    return past, future


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines (stdout) and optional-package notices."""
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx_log.setLevel(level)


def _make_deterministic(path: Path) -> None:
    """Drop the exporter's debugging metadata, which varies between runs.

    The exporter records torch.export's symbolic-shape bookkeeping (names of internal
    symbols) on the graph and a stack trace (source paths, line numbers) on every node, so
    two exports of the same model from two checkouts would differ in bytes, a bundle of
    them would not be reproducible, and local paths would ship to devices.
    """
    import onnx

    model = onnx.load(str(path))
    model.doc_string = ""
    del model.metadata_props[:]
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    del model.graph.metadata_props[:]
    model.graph.doc_string = ""
    while nodes:
        node = nodes.pop()
        del node.metadata_props[:]  # stack traces with source paths and line numbers
        node.doc_string = ""
        for attr in node.attribute:  # nodes of subgraphs (If, Loop, Scan)
            subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for graph in subgraphs:
                del graph.metadata_props[:]
                nodes.extend(graph.node)
    onnx.save(model, str(path))


def export_onnx(model: DemandLSTM, path: Path) -> Path:
    """Write ``model`` as a single-file ONNX graph with a dynamic batch dimension.

    The bytes depend only on the model's weights and configuration (same model, same file).
    """
    model.eval()
    past, future = (torch.from_numpy(a) for a in example_inputs(model, 2))
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with atomic_path(path) as tmp, _quiet_exporter():
            program = torch.onnx.export(
                model,
                (past, future),
                input_names=[INPUT_PAST, INPUT_FUTURE],
                output_names=[OUTPUT],
                dynamic_shapes={"past": {0: batch}, "future": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            if program is None:  # pragma: no cover - dynamo=True always returns a program
                raise ModelError("the ONNX exporter returned nothing")
            program.save(str(tmp), external_data=False)
            _make_deterministic(tmp)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"ONNX export failed: {exc}") from exc
    return path


def parity(model: DemandLSTM, onnx_path: Path, *, batch: int = 16, seed: int = 0) -> float:
    """Max abs difference between torch and onnxruntime outputs on the same inputs."""
    past, future = example_inputs(model, batch, seed)
    with torch.inference_mode():
        expected = model(torch.from_numpy(past), torch.from_numpy(future)).numpy()
    got = OnnxModel(onnx_path).predict_scaled(past, future)
    if got.shape != expected.shape:
        raise ModelError(f"ONNX output shape {got.shape} != torch output shape {expected.shape}")
    return float(np.abs(got - expected).max())


def check_parity(model: DemandLSTM, onnx_path: Path, tolerance: float = PARITY_TOLERANCE) -> float:
    """``parity`` at batch 1 and 16; ``ModelError`` when it exceeds ``tolerance``."""
    diff = max(parity(model, onnx_path, batch=1, seed=1), parity(model, onnx_path, batch=16))
    if not diff <= tolerance:
        raise ModelError(f"ONNX parity check failed: max abs diff {diff:.3g} > {tolerance:g}")
    log.info("ONNX parity ok: max abs diff %.3g", diff)
    return diff
