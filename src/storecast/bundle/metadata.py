"""``metadata.json``: what a bundle says about itself (pydantic, unknown fields refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BUNDLE_FORMAT = 1  # bumped on any incompatible change of the layout or this schema
MODEL_MEMBERS = ("model.onnx", "model.pt")  # members whose hashes metadata.json lists
METADATA_MEMBER = "metadata.json"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberInfo(_Strict):
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int = Field(ge=0)  # bytes


class Lineage(_Strict):
    code_commit: str | None = None  # git commit of the training code, when known
    training_data_source: str | None = None
    training_data_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    training_params: dict[str, Any] = Field(default_factory=dict)


class TensorSpec(_Strict):
    name: str
    shape: list[int | str]  # str for dynamic dimensions ("batch")
    dtype: str


class BundleMetadata(_Strict):
    format_version: int = Field(ge=1)
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    created: datetime
    lineage: Lineage
    metrics: dict[str, Any] | None = None  # the training run's hold-out metrics report
    features: dict[str, Any]  # FeatureSpec.to_dict()
    architecture: dict[str, Any]  # ModelConfig.to_dict()
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    quantiles: list[float]
    onnx_opset: int
    parity_max_abs_diff: float = Field(ge=0)  # torch vs onnxruntime at packaging time
    members: dict[str, MemberInfo]

    def to_json_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, fixed separators) so equal metadata, equal bytes."""
        import json

        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2).encode() + b"\n"
