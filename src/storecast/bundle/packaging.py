"""Building a bundle from a training checkpoint (torch): export, parity check, tar.

``build_bundle`` exports the checkpoint's model to ONNX, refuses to go on if ONNX Runtime
and torch disagree by more than the parity tolerance, writes ``metadata.json``, and tars
the three members deterministically. Everything in the bundle derives from the checkpoint
file (and the metrics file beside it), so packaging the same checkpoint twice gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from storecast.bundle.archive import BundleError, write_tar
from storecast.bundle.metadata import (
    BUNDLE_FORMAT,
    METADATA_MEMBER,
    NAME_PATTERN,
    BundleMetadata,
    Lineage,
    MemberInfo,
    TensorSpec,
)
from storecast.bundle.verify import VerifiedBundle, verify_bundle
from storecast.common.errors import ModelError
from storecast.forecasting.checkpoint import load_checkpoint
from storecast.forecasting.export import OPSET, check_parity, export_onnx
from storecast.forecasting.runtime import INPUT_FUTURE, INPUT_PAST, OUTPUT
from storecast.forecasting.workflow import metrics_path


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    bundle: VerifiedBundle


def bundle_filename(name: str, version: int) -> str:
    return f"{name}-v{version}.tar"


def build_bundle(checkpoint: Path, *, name: str, version: int, out_dir: Path) -> BuiltBundle:
    """Package ``checkpoint`` as bundle ``name`` version ``version`` in ``out_dir``."""
    if version < 1:
        raise BundleError(f"version must be a positive integer, got {version}")
    if not re.fullmatch(NAME_PATTERN, name):
        raise BundleError(
            f"model name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    try:
        model_pt = checkpoint.read_bytes()  # read once: what is checked is what ships
    except (FileNotFoundError, IsADirectoryError):
        raise ModelError(f"{checkpoint}: no such checkpoint") from None
    loaded = load_checkpoint(model_pt, label=str(checkpoint))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(loaded.model, Path(tmp) / "model.onnx")
        diff = check_parity(loaded.model, onnx_path)
        model_onnx = onnx_path.read_bytes()

    meta = loaded.meta
    data = meta.get("data") or {}
    cfg = loaded.model.config
    spec = loaded.spec
    metadata = BundleMetadata(
        format_version=BUNDLE_FORMAT,
        name=name,
        version=version,
        created=_created(meta),
        lineage=Lineage(
            code_commit=meta.get("code_commit"),
            training_data_source=data.get("source"),
            training_data_sha256=data.get("sha256"),
            training_params=meta.get("train") or {},
        ),
        metrics=_metrics(checkpoint, hashlib.sha256(model_pt).hexdigest()),
        features=spec.to_dict(),
        architecture=cfg.to_dict(),
        inputs=[
            TensorSpec(
                name=INPUT_PAST, shape=["batch", cfg.lookback, cfg.past_features], dtype="float32"
            ),
            TensorSpec(
                name=INPUT_FUTURE,
                shape=["batch", cfg.horizon, cfg.future_features],
                dtype="float32",
            ),
        ],
        outputs=[
            TensorSpec(name=OUTPUT, shape=["batch", cfg.horizon, cfg.n_quantiles], dtype="float32"),
        ],
        quantiles=list(spec.quantiles),
        onnx_opset=OPSET,
        parity_max_abs_diff=diff,
        members={
            "model.onnx": _member(model_onnx),
            "model.pt": _member(model_pt),
        },
    )
    members = {
        METADATA_MEMBER: metadata.to_json_bytes(),
        "model.onnx": model_onnx,
        "model.pt": model_pt,
    }
    path = write_tar(members, out_dir / bundle_filename(name, version))
    return BuiltBundle(path, verify_bundle(path))


def _member(data: bytes) -> MemberInfo:
    return MemberInfo(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _created(meta: dict[str, Any]) -> datetime:
    created = meta.get("created")
    try:
        return datetime.fromisoformat(str(created))
    except ValueError:
        raise BundleError(f"the checkpoint records no valid creation time ({created!r})") from None


def _metrics(checkpoint: Path, checkpoint_sha256: str) -> dict[str, Any] | None:
    """The metrics file beside the checkpoint, if it belongs to exactly this checkpoint."""
    path = metrics_path(checkpoint)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("checkpoint_sha256") != checkpoint_sha256:
        raise BundleError(
            f"{path} does not belong to {checkpoint.name} (another training run's metrics); "
            "remove it, or write this checkpoint's with storecast evaluate MODEL --out FILE"
        )
    return data
