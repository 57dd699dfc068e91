"""Signing keys of the registry's TUF repository: generated once, loaded per process.

The three online keys (targets, snapshot, timestamp) stay on the registry server; the root
key is written to a separate path so it can be moved offline after signing root v1. Keys are
ed25519, stored as unencrypted PKCS#8 PEM files readable only by their owner.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signer

from storecast.common.errors import ConfigError
from storecast.common.files import atomic_write_bytes

logger = logging.getLogger(__name__)

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
_KEY_MODE = 0o600
_DIR_MODE = 0o700


@dataclass(frozen=True)
class OnlineKeys:
    """The signers the registry uses for every new targets, snapshot and timestamp version."""

    targets: Signer
    snapshot: Signer
    timestamp: Signer

    def for_role(self, role: str) -> Signer:
        """Return the signer of an online ``role``."""
        signers = {"targets": self.targets, "snapshot": self.snapshot, "timestamp": self.timestamp}
        if role not in signers:
            raise ConfigError(f"{role!r} has no online key (online roles: {ONLINE_ROLES})")
        return signers[role]


def online_key_path(keys_dir: Path, role: str) -> Path:
    """Return where the private key of an online ``role`` lives in ``keys_dir``."""
    return keys_dir / f"{role}.pem"


def generate_keys(keys_dir: Path, root_key_path: Path) -> None:
    """Write new ed25519 keys: the online ones into ``keys_dir``, the root key apart.

    Files are mode 0600 and ``keys_dir`` mode 0700. Nothing is written when any of the key
    files already exists or when the root key would land in ``keys_dir``.
    """
    online_paths = [online_key_path(keys_dir, role) for role in ONLINE_ROLES]
    if root_key_path.parent.resolve() == keys_dir.resolve():
        raise ConfigError(
            f"the root key {root_key_path} must not live beside the online keys in {keys_dir}; "
            "give it a directory of its own so it can be moved offline"
        )
    existing = [str(path) for path in [*online_paths, root_key_path] if path.exists()]
    if existing:
        raise ConfigError(f"refusing to overwrite existing keys: {', '.join(existing)}")

    try:
        _make_private_dir(keys_dir, tighten=True)
        _make_private_dir(root_key_path.parent, tighten=False)
        for path in [*online_paths, root_key_path]:
            _write_private_key(path, CryptoSigner.generate_ed25519().private_bytes)
    except OSError as exc:
        raise ConfigError(f"cannot write keys to {keys_dir} and {root_key_path}: {exc}") from exc
    logger.info("wrote online keys to %s and the root key to %s", keys_dir, root_key_path)


def load_online_keys(keys_dir: Path) -> OnlineKeys:
    """Load the targets, snapshot and timestamp keys from ``keys_dir``."""
    targets, snapshot, timestamp = (
        load_signer(online_key_path(keys_dir, role)) for role in ONLINE_ROLES
    )
    return OnlineKeys(targets=targets, snapshot=snapshot, timestamp=timestamp)


def load_signer(path: Path) -> Signer:
    """Load an ed25519 signer from an unencrypted PKCS#8 PEM file."""
    try:
        pem = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise ConfigError(f"signing key {path} is missing") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc}") from exc
    if mode & 0o077:
        logger.warning("signing key %s is readable by other users (mode %o)", path, mode & 0o777)
    try:
        private_key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"signing key {path} is not an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path} is not an ed25519 key")
    return CryptoSigner(private_key)


def _make_private_dir(path: Path, *, tighten: bool) -> None:
    """Create ``path`` with mode 0700; with ``tighten``, also restrict an existing one."""
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    if tighten:
        path.chmod(_DIR_MODE)


def _write_private_key(path: Path, pem: bytes) -> None:
    # atomic_write_bytes writes through a mkstemp file, which is created with mode 0600.
    atomic_write_bytes(path, pem)
    os.chmod(path, _KEY_MODE)
