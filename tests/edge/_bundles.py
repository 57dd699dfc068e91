"""Bundles for model-store, runtime and smoke tests: real ones re-stamped, and crafted ones.

``rebuild`` changes a real bundle (name, version, a member, a metadata field) and keeps
its metadata's member hashes consistent, so the result verifies like any bundle;
``constant_onnx`` is a tiny ONNX graph with the demand model's signature whose output is
a constant (NaN, out of scale, crossed quantiles).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storecast.bundle import read_members
from storecast.bundle.archive import write_tar
from storecast.forecasting.features import FeatureSpec

MODEL_NAME = "demand-lstm"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rebuild(
    bundle: bytes,
    *,
    version: int | None = None,
    name: str | None = None,
    members: dict[str, bytes] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> bytes:
    """``bundle`` with other identity, members or metadata; member hashes kept consistent."""
    current = read_members(bundle)
    current.update(members or {})
    meta = json.loads(current["metadata.json"])
    if version is not None:
        meta["version"] = version
    if name is not None:
        meta["name"] = name
    for member in ("model.onnx", "model.pt"):
        meta["members"][member] = {"sha256": sha256(current[member]), "size": len(current[member])}
    if edit is not None:
        edit(meta)
    current["metadata.json"] = json.dumps(meta, sort_keys=True, indent=2).encode() + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        return write_tar(current, Path(tmp) / "bundle.tar").read_bytes()


def constant_onnx(spec: FeatureSpec, values: list[float], quantiles: int | None = None) -> bytes:
    """An ONNX model with inputs ``past``/``future`` whose output is ``values`` everywhere.

    quantiles[b, h, :] = future[b, h, :] @ 0 + values + mean(past[b]) * 0 (both inputs used).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    q = quantiles or len(values)
    past = helper.make_tensor_value_info(
        "past", TensorProto.FLOAT, ["batch", spec.lookback, len(spec.past_channels)]
    )
    future = helper.make_tensor_value_info(
        "future", TensorProto.FLOAT, ["batch", spec.horizon, len(spec.future_channels)]
    )
    out = helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, ["batch", spec.horizon, q])
    weights = numpy_helper.from_array(
        np.zeros((len(spec.future_channels), q), dtype=np.float32), "w"
    )
    bias = numpy_helper.from_array(np.asarray(values[:q], dtype=np.float32), "b")
    zero = numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero")
    nodes = [
        helper.make_node("MatMul", ["future", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["level"]),
        helper.make_node("ReduceMean", ["past"], ["pm"], axes=[1, 2], keepdims=1),
        helper.make_node("Mul", ["pm", "zero"], ["pz"]),
        helper.make_node("Add", ["level", "pz"], ["quantiles"]),
    ]
    graph = helper.make_graph(
        nodes, "constant", [past, future], [out], initializer=[weights, bias, zero]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@dataclass(frozen=True)
class EdgeBundles:
    """Three versions of the same real model (v1, v2, v3) and a builder for more."""

    v1: bytes
    v2: bytes
    v3: bytes
    spec: FeatureSpec

    def version(self, version: int, **changes: Any) -> bytes:
        return rebuild(self.v1, version=version, **changes)


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt one byte of ``path`` in place (the middle one by default)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
