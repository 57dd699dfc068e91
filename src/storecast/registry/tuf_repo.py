"""The model registry as a TUF repository, built on python-tuf's Metadata API.

Every change to the published models is one consistent step: a new targets version, then a
snapshot naming it, then a timestamp naming that snapshot. Versions grow by exactly one. Root
is signed once with the offline root key (``create_root``); targets, snapshot and timestamp
are signed with the online keys on every change and re-signed by ``refresh`` before they
expire. The repository trusts its ``MetadataStore``: clients verify everything it serves.

Consistent snapshots are always on, so clients request ``{version}.{role}.json`` (timestamp:
``timestamp.json``) and targets as ``{dir}/{sha256}.{basename}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError, SerializationError

from storecast.common.errors import ConfigError, DataError
from storecast.registry._tuf_keys import (
    ONLINE_ROLES,
    OnlineKeys,
    generate_keys,
    load_online_keys,
    load_signer,
)

__all__ = [
    "Expiry",
    "MetadataStore",
    "OnlineKeys",
    "TufRepository",
    "create_root",
    "generate_keys",
    "load_online_keys",
    "load_signer",
    "metadata_path",
    "parse_metadata_path",
    "parse_target_request",
]

logger = logging.getLogger(__name__)

_SignedT = TypeVar("_SignedT", Root, Targets, Snapshot, Timestamp)

_VERSIONED_ROLES = frozenset({Root.type, Targets.type, Snapshot.type})
_TOP_LEVEL_ROLES = _VERSIONED_ROLES | {Timestamp.type}
_VERSION = re.compile(r"[1-9][0-9]{0,18}")  # no sign, no leading zeros, at most 19 digits
MAX_VERSION = 2**31 - 1  # what the metadata table's INTEGER version column holds
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TARGETS_META = f"{Targets.type}.json"


class MetadataStore(Protocol):
    """Where signed metadata lives (a DB table in production, a dict in tests)."""

    def latest(self, role: str) -> bytes | None:
        """Return the newest version of ``role``, or None when there is none."""
        ...

    def get(self, role: str, version: int) -> bytes | None:
        """Return one version of ``role``, or None when there is no such version."""
        ...

    def put(self, role: str, version: int, data: bytes) -> None:
        """Store a version of ``role``; it becomes the latest."""
        ...


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata stays valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=365)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        for role in sorted(_TOP_LEVEL_ROLES):
            if self.of(role) <= timedelta(0):
                raise ConfigError(f"expiry period of {role} must be positive")

    def of(self, role: str) -> timedelta:
        """Return the validity period of a top-level ``role``."""
        periods = {
            Root.type: self.root,
            Targets.type: self.targets,
            Snapshot.type: self.snapshot,
            Timestamp.type: self.timestamp,
        }
        return periods[role]


_DEFAULT_EXPIRY = Expiry()


def create_root(root_signer: Signer, online: OnlineKeys, now: datetime, expiry: Expiry) -> bytes:
    """Return root metadata version 1 naming one key per role, signed with the root key."""
    root_key = root_signer.public_key
    online_keys = {role: online.for_role(role).public_key for role in ONLINE_ROLES}
    if root_key.keyid in {key.keyid for key in online_keys.values()}:
        raise ConfigError("the root key must not also be an online key")
    root = Root(expires=_utc(now) + expiry.root, consistent_snapshot=True)
    root.add_key(root_key, Root.type)
    for role, key in online_keys.items():
        root.add_key(key, role)
    md = Metadata(root)
    md.sign(root_signer)
    return md.to_bytes()


def metadata_path(role: str, version: int | None) -> str:
    """Return the name a client requests a role's metadata under.

    ``{version}.{role}.json`` for a version, ``{role}.json`` for the latest; timestamp is
    always ``timestamp.json``.
    """
    if role not in _TOP_LEVEL_ROLES:
        raise DataError(f"{role!r} is not a top-level TUF role")
    if version is None or role == Timestamp.type:
        return f"{role}.json"
    if version < 1:
        raise DataError(f"metadata versions start at 1, got {version}")
    return f"{version}.{role}.json"


def parse_metadata_path(name: str) -> tuple[str, int | None] | None:
    """Return the (role, version) a metadata name asks for (version None: latest).

    None when the name is not one ``metadata_path`` produces.
    """
    stem, dot, extension = name.rpartition(".")
    if not dot or extension != "json":
        return None
    prefix, dot, role = stem.rpartition(".")
    if role not in _TOP_LEVEL_ROLES:
        return None
    if not dot:
        return role, None
    if role not in _VERSIONED_ROLES or not _VERSION.fullmatch(prefix) or int(prefix) > MAX_VERSION:
        return None
    return role, int(prefix)


def parse_target_request(path: str) -> tuple[str, str] | None:
    """Return (target path, sha256) for a request of ``{dir}/{sha256}.{basename}``.

    None when the request is malformed or names an unsafe path.
    """
    directory, slash, filename = path.rpartition("/")
    digest, dot, basename = filename.partition(".")
    if not dot or not _SHA256_HEX.fullmatch(digest):
        return None
    target_path = f"{directory}{slash}{basename}"
    if not _is_safe_target_path(target_path):
        return None
    return target_path, digest


class TufRepository:
    """Signs and stores new metadata versions; ``now`` is the time expiry is computed from."""

    def __init__(
        self,
        store: MetadataStore,
        keys: OnlineKeys,
        now: datetime,
        expiry: Expiry = _DEFAULT_EXPIRY,
    ) -> None:
        self._store = store
        self._keys = keys
        self._now = _utc(now)
        self._expiry = expiry

    def bootstrap(self, root: bytes) -> None:
        """Store root v1 with a first (empty) targets, snapshot and timestamp."""
        if self._store.latest(Root.type) is not None:
            raise ConfigError("the metadata store already holds a root; refusing to bootstrap")
        root_md = _parse(root, Root)
        if root_md.signed.version != 1:
            raise DataError(f"bootstrap needs root version 1, got {root_md.signed.version}")
        if not root_md.signed.consistent_snapshot:
            raise DataError("the root must enable consistent snapshots")
        try:
            root_md.signed.verify_delegate(Root.type, root_md.signed_bytes, root_md.signatures)
        except UnsignedMetadataError as exc:
            raise DataError(f"the root is not signed by its own root key: {exc}") from exc
        for role in ONLINE_ROLES:
            _check_key(root_md.signed, role, self._keys.for_role(role))

        self._store.put(Root.type, 1, root)
        targets_meta = self._write(Targets(version=1))
        snapshot_meta = self._write(Snapshot(version=1, meta={_TARGETS_META: targets_meta}))
        self._write(Timestamp(version=1, snapshot_meta=snapshot_meta))

    def add_target(self, path: str, sha256: str, length: int, custom: dict[str, Any]) -> None:
        """Publish (or replace) a target: new targets, snapshot and timestamp versions."""
        if not _is_safe_target_path(path):
            raise DataError(f"invalid target path {path!r}")
        if not _SHA256_HEX.fullmatch(sha256):
            raise DataError(f"target {path}: sha256 must be 64 lowercase hex digits")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise DataError(f"target {path}: length must be a non-negative int, got {length!r}")
        try:
            # A JSON round trip copies the caller's dict and rejects what JSON cannot carry.
            custom = json.loads(json.dumps(custom, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise DataError(f"target {path}: custom fields are not JSON: {exc}") from exc

        targets = self._current(Targets)
        targets.targets[path] = TargetFile(
            length, {"sha256": sha256}, path, unrecognized_fields={"custom": custom}
        )
        self._publish_targets(targets)

    def remove_target(self, path: str) -> bool:
        """Withdraw a target; False (and no new versions) when it is not published."""
        targets = self._current(Targets)
        if targets.targets.pop(path, None) is None:
            return False
        self._publish_targets(targets)
        return True

    def refresh(self) -> bool:
        """Re-sign what expires within half its period; True when anything was re-signed."""
        root = self._current(Root)
        if self._is_expiring(root):
            logger.warning(
                "root v%d expires at %s: sign a new root with the offline root key",
                root.version,
                root.expires.isoformat(),
            )
        targets = self._current(Targets)
        if self._is_expiring(targets):
            self._publish_targets(targets)
            return True
        snapshot = self._current(Snapshot)
        if self._is_expiring(snapshot):
            self._publish_snapshot(snapshot)
            return True
        timestamp = self._current(Timestamp)
        if self._is_expiring(timestamp):
            self._publish_timestamp(timestamp)
            return True
        return False

    def targets(self) -> dict[str, TargetFile]:
        """Return the currently published targets by path."""
        return dict(self._current(Targets).targets)

    def _publish_targets(self, targets: Targets) -> None:
        targets.version += 1
        targets_meta = self._write(targets)
        snapshot = self._current(Snapshot)
        snapshot.meta[_TARGETS_META] = targets_meta
        self._publish_snapshot(snapshot)

    def _publish_snapshot(self, snapshot: Snapshot) -> None:
        snapshot.version += 1
        snapshot_meta = self._write(snapshot)
        timestamp = self._current(Timestamp)
        timestamp.snapshot_meta = snapshot_meta
        self._publish_timestamp(timestamp)

    def _publish_timestamp(self, timestamp: Timestamp) -> None:
        timestamp.version += 1
        self._write(timestamp)

    def _write(self, signed: _SignedT) -> MetaFile:
        """Set the expiry, sign with the role's online key, store; return the file's meta."""
        role = signed.type
        signer = self._keys.for_role(role)
        _check_key(self._current(Root), role, signer)
        signed.expires = self._now + self._expiry.of(role)
        md = Metadata(signed)
        try:
            md.sign(signer)
            data = md.to_bytes()
        except SerializationError as exc:
            raise DataError(f"cannot serialize {role} v{signed.version}: {exc}") from exc
        self._store.put(role, signed.version, data)
        logger.info("published %s v%d", role, signed.version)
        return MetaFile(
            version=signed.version,
            length=len(data),
            hashes={"sha256": hashlib.sha256(data).hexdigest()},
        )

    def _current(self, cls: type[_SignedT]) -> _SignedT:
        data = self._store.latest(cls.type)
        if data is None:
            raise DataError(f"the metadata store has no {cls.type}; bootstrap the repository")
        return _parse(data, cls).signed

    def _is_expiring(self, signed: Signed) -> bool:
        return signed.expires - self._now <= self._expiry.of(signed.type) / 2


def _parse(data: bytes, cls: type[_SignedT]) -> Metadata[_SignedT]:
    try:
        md = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise DataError(f"stored {cls.type} metadata is unreadable: {exc}") from exc
    if not isinstance(md.signed, cls):
        raise DataError(f"expected {cls.type} metadata, found {md.signed.type}")
    return md


def _check_key(root: Root, role: str, signer: Signer) -> None:
    keyids = root.roles[role].keyids
    if signer.public_key.keyid not in keyids:
        raise ConfigError(
            f"the online {role} key {signer.public_key.keyid[:12]}… is not listed for {role} "
            f"in root v{root.version} (listed: {', '.join(k[:12] for k in keyids) or 'none'})"
        )


def _is_safe_target_path(path: str) -> bool:
    if not path or "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ConfigError("the repository needs timezone-aware datetimes")
    return moment.astimezone(UTC)
