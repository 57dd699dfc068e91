"""Loading an installed model folder for inference: ONNX Runtime, torch only as a fallback.

A model folder holds a bundle's members (``model.onnx``, ``model.pt``, ``metadata.json``)
plus ``bundle.json``, written at install: the bundle's name, version, digest (the sha256 of
the bundle file, its TUF target hash) and the sha256 of ``metadata.json``. Loading checks
that chain again (``bundle.json`` → ``metadata.json`` → each member's sha256 and size), that
the feature spec is one this code can build inputs for, and that the ONNX graph's inputs and
outputs match what the metadata declares.

``model.onnx`` runs in ONNX Runtime. Only when it is absent, or intact but not loadable by
this device's ONNX Runtime, and torch is installed, does ``model.pt`` run in torch; torch is
imported inside that path alone, so devices without it never pay for it. A member whose
hash does not match is never worked around: the folder is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storecast.bundle.archive import BundleError
from storecast.bundle.metadata import METADATA_MEMBER, MODEL_MEMBERS, BundleMetadata, TensorSpec
from storecast.bundle.verify import member_mismatch, parse_metadata
from storecast.common.errors import ModelError
from storecast.common.files import atomic_write_bytes
from storecast.forecasting.features import (
    FUTURE_CHANNELS,
    PAST_CHANNELS,
    FeatureSpec,
    Windows,
    decode,
)
from storecast.forecasting.runtime import OnnxModel

__all__ = [
    "BUNDLE_INFO",
    "BundleInfo",
    "LoadedModel",
    "check_metadata",
    "load_model",
    "verify_folder",
]

log = logging.getLogger(__name__)

BUNDLE_INFO = "bundle.json"  # written by the model store beside the bundle's members
ONNX_MEMBER, TORCH_MEMBER = "model.onnx", "model.pt"
_ORT_DTYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int64": "tensor(int64)"}

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BundleInfo:
    """Where an installed folder came from (``bundle.json``)."""

    name: str
    version: int
    digest: str  # sha256 of the bundle file (the TUF target hash)
    metadata_sha256: str  # sha256 of the folder's metadata.json

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True, indent=2).encode() + b"\n"

    def write(self, folder: Path) -> Path:
        """Write ``bundle.json`` into ``folder`` atomically."""
        return atomic_write_bytes(folder / BUNDLE_INFO, self.to_json_bytes())

    @classmethod
    def read(cls, folder: Path) -> BundleInfo:
        """Read ``bundle.json``; ``ModelError`` when it is missing or malformed."""
        path = folder / BUNDLE_INFO
        try:
            data = json.loads(path.read_bytes())
            info = cls(
                name=str(data["name"]),
                version=int(data["version"]),
                digest=str(data["digest"]),
                metadata_sha256=str(data["metadata_sha256"]),
            )
        except FileNotFoundError:
            raise ModelError(f"{folder}: {BUNDLE_INFO} is missing") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{folder}: {BUNDLE_INFO} is unreadable ({exc!r})") from exc
        return info


@dataclass(frozen=True)
class LoadedModel:
    """A verified model folder, loaded and ready to forecast."""

    name: str
    version: int
    digest: str  # sha256 of the bundle file (the TUF target hash)
    folder: Path
    metadata: BundleMetadata
    spec: FeatureSpec
    runtime: str  # "onnxruntime" | "torch"
    _predict: Predict = field(repr=False, compare=False)

    def predict_scaled(self, past: np.ndarray, future: np.ndarray) -> np.ndarray:
        """Scaled quantiles (N, H, Q) for float32 inputs (N, L, Fp) and (N, H, Ff)."""
        return self._predict(past, future)

    def forecast(self, windows: Windows) -> np.ndarray:
        """Quantile forecasts in sales units (N, H, Q)."""
        return decode(self.predict_scaled(windows.past, windows.future), windows.scale)


def check_metadata(metadata: BundleMetadata) -> FeatureSpec:
    """The feature spec of ``metadata`` if this code supports it; ``ModelError`` if not.

    Supported: a spec version ``FeatureSpec.from_dict`` accepts, channels the feature code
    knows, quantiles agreeing with the metadata, and input/output shapes that agree with the
    spec (``["batch", lookback, past], ["batch", horizon, future]`` → ``[.., horizon, Q]``).
    """
    try:
        spec = FeatureSpec.from_dict(metadata.features)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"unsupported feature spec ({exc})") from exc
    unknown = [c for c in spec.past_channels if c not in PAST_CHANNELS] + [
        c for c in spec.future_channels if c not in FUTURE_CHANNELS
    ]
    if unknown:
        raise ModelError(f"unsupported feature channel(s) {unknown}")
    if list(spec.quantiles) != list(metadata.quantiles):
        raise ModelError(
            f"quantiles {list(metadata.quantiles)} differ from the feature spec's "
            f"{list(spec.quantiles)}"
        )
    expected = {
        "inputs": [
            [spec.lookback, len(spec.past_channels)],
            [spec.horizon, len(spec.future_channels)],
        ],
        "outputs": [[spec.horizon, len(spec.quantiles)]],
    }
    for kind, shapes in expected.items():
        tensors: list[TensorSpec] = getattr(metadata, kind)
        declared = [t.shape[1:] for t in tensors]
        if declared != shapes:
            raise ModelError(
                f"metadata {kind} shapes {[t.shape for t in tensors]} do not fit the feature "
                f"spec (expected [batch, ...] with {shapes})"
            )
    return spec


def verify_folder(folder: Path) -> tuple[BundleInfo, BundleMetadata, dict[str, str]]:
    """Check ``bundle.json``, ``metadata.json`` and every present member's sha256 and size.

    Returns the bundle info, the metadata and the problems of absent members (name →
    message); a member that is present but does not match raises ``ModelError`` naming it.
    """
    info = BundleInfo.read(folder)
    meta_bytes = _read(folder / METADATA_MEMBER)
    if meta_bytes is None:
        raise ModelError(f"{folder}: {METADATA_MEMBER} is missing")
    digest = hashlib.sha256(meta_bytes).hexdigest()
    if digest != info.metadata_sha256:
        raise ModelError(
            f"{folder}: {METADATA_MEMBER} has sha256 {digest}, {BUNDLE_INFO} says "
            f"{info.metadata_sha256}"
        )
    metadata = _parse(meta_bytes, folder)
    if (metadata.name, metadata.version) != (info.name, info.version):
        raise ModelError(
            f"{folder}: {METADATA_MEMBER} is {metadata.name} v{metadata.version}, "
            f"{BUNDLE_INFO} says {info.name} v{info.version}"
        )
    absent: dict[str, str] = {}
    for name in MODEL_MEMBERS:
        member = metadata.members.get(name)
        if member is None:
            raise ModelError(f"{folder}: {METADATA_MEMBER} lists no {name}")
        data = _read(folder / name)
        if data is None:
            absent[name] = f"{name} is missing"
            continue
        if problem := member_mismatch(name, data, member):
            raise ModelError(f"{folder}: {problem}")
    if TORCH_MEMBER in absent:  # model.onnx alone may be absent (then torch serves)
        raise ModelError(f"{folder}: {absent[TORCH_MEMBER]}")
    return info, metadata, absent


def load_model(folder: Path, *, verify: bool = True, threads: int = 1) -> LoadedModel:
    """Load an installed model folder; ``ModelError`` says why it cannot serve.

    ``verify=False`` skips the member hashes (not the metadata checks). ``threads`` is the
    ONNX Runtime intra-op thread count.
    """
    folder = Path(folder)
    if verify:
        info, metadata, absent = verify_folder(folder)
    else:
        info = BundleInfo.read(folder)
        metadata = _parse(_read(folder / METADATA_MEMBER) or b"", folder)
        absent = {n: f"{n} is missing" for n in MODEL_MEMBERS if not (folder / n).is_file()}
    try:
        spec = check_metadata(metadata)
    except ModelError as exc:
        raise ModelError(f"{folder}: {exc}") from None

    def loaded(predict: Predict, runtime: str) -> LoadedModel:
        return LoadedModel(
            name=info.name,
            version=info.version,
            digest=info.digest,
            folder=folder,
            metadata=metadata,
            spec=spec,
            runtime=runtime,
            _predict=predict,
        )

    onnx_problem = absent.get(ONNX_MEMBER)
    if onnx_problem is None:
        try:
            onnx = OnnxModel(folder / ONNX_MEMBER, threads=threads)
        except ModelError as exc:
            onnx_problem = str(exc)
        else:
            _check_onnx_signature(onnx, metadata, folder)
            return loaded(onnx.predict_scaled, "onnxruntime")
    if TORCH_MEMBER in absent:
        raise ModelError(f"{folder}: {onnx_problem} and {absent[TORCH_MEMBER]}")
    if not _torch_available():
        raise ModelError(f"{folder}: {onnx_problem}, and torch is not installed for a fallback")
    log.warning("%s: %s; falling back to torch (%s)", folder, onnx_problem, TORCH_MEMBER)
    return loaded(_load_torch(folder, spec, metadata), "torch")


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _load_torch(folder: Path, spec: FeatureSpec, metadata: BundleMetadata) -> Predict:
    """The torch checkpoint's predict function (imports torch: the fallback path only)."""
    from storecast.forecasting.checkpoint import load_checkpoint, predict_scaled

    path = folder / TORCH_MEMBER
    data = _read(path)
    if data is None:
        raise ModelError(f"{folder}: {TORCH_MEMBER} is missing")
    # checked on the very bytes that are loaded (also when ``verify`` was off)
    if problem := member_mismatch(TORCH_MEMBER, data, metadata.members[TORCH_MEMBER]):
        raise ModelError(f"{folder}: {problem}")
    checkpoint = load_checkpoint(data, label=str(path))
    if checkpoint.spec != spec:
        raise ModelError(f"{path}: its feature spec differs from {METADATA_MEMBER}'s")
    model = checkpoint.model

    def predict(past: np.ndarray, future: np.ndarray) -> np.ndarray:
        return predict_scaled(
            model, past.astype(np.float32, copy=False), future.astype(np.float32, copy=False)
        )

    return predict


def _check_onnx_signature(onnx: OnnxModel, metadata: BundleMetadata, folder: Path) -> None:
    """``ModelError`` unless the graph's inputs and outputs match the metadata's."""
    for kind, declared, actual in (
        ("input", metadata.inputs, onnx.session.get_inputs()),
        ("output", metadata.outputs, onnx.session.get_outputs()),
    ):
        graph = {a.name: a for a in actual}
        for tensor in declared:
            node: Any = graph.get(tensor.name)
            if node is None:
                raise ModelError(f"{folder}: {ONNX_MEMBER} has no {kind} {tensor.name!r}")
            if not _shape_fits(tensor.shape, list(node.shape)):
                raise ModelError(
                    f"{folder}: {ONNX_MEMBER} {kind} {tensor.name!r} has shape {node.shape}, "
                    f"{METADATA_MEMBER} says {tensor.shape}"
                )
            want = _ORT_DTYPES.get(tensor.dtype, tensor.dtype)
            if node.type != want:
                raise ModelError(
                    f"{folder}: {ONNX_MEMBER} {kind} {tensor.name!r} is {node.type}, "
                    f"{METADATA_MEMBER} says {tensor.dtype}"
                )


def _shape_fits(declared: list[int | str], graph: list[Any]) -> bool:
    """Same rank; fixed dims equal; a dynamic declared dim must be dynamic in the graph."""
    if len(declared) != len(graph):
        return False
    for want, got in zip(declared, graph, strict=True):
        if isinstance(want, int) and isinstance(got, int) and want != got:
            return False
        if isinstance(want, str) and isinstance(got, int):
            return False
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from exc


def _parse(data: bytes, folder: Path) -> BundleMetadata:
    try:
        return parse_metadata(data, str(folder))
    except BundleError as exc:
        raise ModelError(str(exc)) from None
