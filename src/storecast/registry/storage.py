"""Artifacts on disk, addressed by their SHA-256 and written atomically."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from storecast.common.files import atomic_write_bytes

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: str) -> bool:
    return bool(_SHA256.fullmatch(value))


class ArtifactStore:
    """Immutable blobs under ``root/sha256/ab/abcdef…``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; return its digest and whether this call created the file."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if path.is_file():
            return digest, False
        atomic_write_bytes(path, data)
        return digest, True

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
