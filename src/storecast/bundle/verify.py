"""Checking a bundle: safe structure, strict metadata, and every member's hash and size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from storecast.bundle.archive import BundleError, Limits, read_members
from storecast.bundle.metadata import (
    BUNDLE_FORMAT,
    METADATA_MEMBER,
    MODEL_MEMBERS,
    BundleMetadata,
    MemberInfo,
)
from storecast.forecasting.features import FeatureSpec


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose structure and hashes checked out."""

    metadata: BundleMetadata
    members: dict[str, bytes]
    sha256: str  # digest of the bundle file itself
    size: int  # bytes


def verify_bundle(source: Path | bytes, limits: Limits | None = None) -> VerifiedBundle:
    """Verify a bundle file (or its bytes); ``BundleError`` says what is wrong."""
    raw = source if isinstance(source, bytes) else _read_file(source)
    label = "bundle" if isinstance(source, bytes) else str(source)
    members = read_members(raw, limits, label=label)
    expected = {METADATA_MEMBER, *MODEL_MEMBERS}
    missing, extra = expected - members.keys(), members.keys() - expected
    if missing:
        raise BundleError(f"{label}: missing member(s) {', '.join(sorted(missing))}")
    if extra:
        raise BundleError(f"{label}: unexpected member(s) {', '.join(sorted(extra))}")
    metadata = parse_metadata(members[METADATA_MEMBER], label)
    if set(metadata.members) != set(MODEL_MEMBERS):
        raise BundleError(
            f"{label}: metadata.json lists members {sorted(metadata.members)}, "
            f"expected {sorted(MODEL_MEMBERS)}"
        )
    try:
        FeatureSpec.from_dict(metadata.features)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{label}: metadata.json field 'features': {exc}") from None
    for name, info in metadata.members.items():
        if problem := member_mismatch(name, members[name], info):
            raise BundleError(f"{label}: {problem}")
    return VerifiedBundle(metadata, members, hashlib.sha256(raw).hexdigest(), len(raw))


def member_mismatch(name: str, data: bytes, info: MemberInfo) -> str | None:
    """How ``data`` differs from the member ``metadata.json`` describes (None: it does not)."""
    if len(data) != info.size:
        return f"{name} is {len(data)} bytes, {METADATA_MEMBER} says {info.size}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256:
        return f"{name} has sha256 {digest}, {METADATA_MEMBER} says {info.sha256}"
    return None


def parse_metadata(data: bytes, label: str = "bundle") -> BundleMetadata:
    """Parse and validate ``metadata.json``; errors name the offending field."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{label}: metadata.json is not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise BundleError(f"{label}: metadata.json must hold a JSON object")
    version = document.get("format_version")
    if isinstance(version, int) and version != BUNDLE_FORMAT:
        raise BundleError(
            f"{label}: bundle format {version} is not supported (this storecast reads "
            f"format {BUNDLE_FORMAT})"
        )
    try:
        return BundleMetadata.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise BundleError(f"{label}: metadata.json field '{field}': {first['msg']}") from exc


def _read_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BundleError(f"{path}: is a directory, not a bundle") from None


def safe_extract(source: Path | bytes, dest: Path, limits: Limits | None = None) -> VerifiedBundle:
    """Verify a bundle, then unpack it into the new folder ``dest``.

    Nothing is written unless the whole bundle verifies. Members go to a temporary folder
    beside ``dest`` that is then renamed, so ``dest`` either does not exist or holds the
    whole bundle.
    """
    bundle = verify_bundle(source, limits)
    if dest.exists():
        raise BundleError(f"{dest}: already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        for name, data in bundle.members.items():
            (tmp / name).write_bytes(data)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return bundle
