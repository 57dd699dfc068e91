"""The device's model store: one folder per installed version and atomic pointers.

Layout under ``root``::

    versions/<name>-v<version>-<digest[:12]>/   a bundle's members + bundle.json
    pointers.json                             {"active": folder, "previous": folder}
    .lock                                     held (flock) by whoever changes the store

Crash safety (``kill -9`` or power loss at any instant):

- A version folder appears by one ``os.replace`` of a fully written, fsynced staging
  folder, so it is complete or absent; a folder is removed by first renaming it to a
  hidden name. Hidden leftovers (``.staging-*``, ``.trash-*``) are swept at start-up.
- Both pointers live in one file replaced atomically (temp file, fsync, ``os.replace``,
  fsync of the directory), so they always change together and never half-way.
- ``load_startup`` verifies the active folder before trusting it and falls back to
  ``previous`` when it does not verify or load, making that the active one.

One process changes a store at a time (an advisory ``flock`` serialises writers, and a
lock inside the process serialises its threads).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from storecast.bundle.archive import BundleError
from storecast.bundle.verify import safe_extract, verify_bundle
from storecast.common.errors import ModelError, StorecastError
from storecast.common.files import atomic_write_bytes
from storecast.edge.runtime import BundleInfo, LoadedModel, load_model, verify_folder

__all__ = ["ModelStore", "ModelStoreError", "Pointers", "Startup", "folder_name"]

log = logging.getLogger(__name__)

POINTERS = "pointers.json"
VERSIONS = "versions"
_FOLDER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}-v[0-9]+-[0-9a-f]{12}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ModelStoreError(StorecastError):
    """The model store cannot do what was asked (bad bundle, unknown folder, no previous)."""


@dataclass(frozen=True)
class Pointers:
    """Folder names (under ``versions/``) of the active and the previous model."""

    active: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class Startup:
    """What ``load_startup`` found: the model to serve and why it is not the active one."""

    model: LoadedModel | None
    fell_back: bool  # True when the active model could not serve and another one does
    problems: list[str] = field(default_factory=list)


def folder_name(name: str, version: int, digest: str) -> str:
    """The version folder of bundle ``name`` v``version`` with sha256 ``digest``."""
    return f"{name}-v{version}-{digest[:12]}"


class ModelStore:
    """Installed model versions on disk, with atomic ``active`` / ``previous`` pointers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / VERSIONS
        self.versions.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd = -1

    # -- reading ---------------------------------------------------------------------------

    def path(self, folder: str) -> Path:
        """The path of version folder ``folder``."""
        return self.versions / folder

    def installed(self) -> list[str]:
        """Installed version folders, oldest install first."""
        folders = [p for p in self.versions.iterdir() if p.is_dir() and _FOLDER.match(p.name)]
        folders.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.name for p in folders]

    def pointers(self) -> Pointers:
        """The current pointers (both None before the first activation)."""
        path = self.root / POINTERS
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return Pointers()
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"{path}: unreadable ({exc})") from exc
        if not isinstance(data, dict) or set(data) != {"active", "previous"}:
            raise ModelStoreError(f"{path}: expected an object with 'active' and 'previous'")
        for key in ("active", "previous"):
            value = data[key]
            if value is not None and not (isinstance(value, str) and _FOLDER.match(value)):
                raise ModelStoreError(f"{path}: {key!r} is not a version folder ({value!r})")
        return Pointers(active=data["active"], previous=data["previous"])

    # -- changing --------------------------------------------------------------------------

    def install(self, bundle: Path | bytes, digest: str) -> Path:
        """Verify a bundle against its expected sha256 and unpack it into its version folder.

        Idempotent: a folder that already holds this bundle and verifies is kept; one that
        does not (a crash, a corrupted disk) is replaced.
        """
        raw = bundle if isinstance(bundle, bytes) else _read_bundle(Path(bundle))
        digest = digest.lower()
        if not _DIGEST.match(digest):
            raise ModelStoreError(f"expected digest {digest!r} is not a sha256 hex digest")
        got = hashlib.sha256(raw).hexdigest()
        if got != digest:
            raise ModelStoreError(f"bundle has sha256 {got}, expected {digest}")
        try:
            metadata = verify_bundle(raw).metadata
        except BundleError as exc:
            raise ModelStoreError(f"bundle {digest[:12]} refused: {exc}") from exc
        name = folder_name(metadata.name, metadata.version, digest)
        dest = self.path(name)
        with self._locked():
            if dest.exists():
                try:
                    info, _, absent = verify_folder(dest)
                    if info.digest == digest and not absent:
                        return dest
                    problem = f"holds {info.digest[:12]}, missing {sorted(absent)}"
                except ModelError as exc:
                    problem = str(exc)
                log.warning("reinstalling %s: %s", name, problem)
                self._discard(dest)
            staging = self.versions / f".staging-{name}"
            if staging.exists():
                self._discard(staging)
            try:
                safe_extract(raw, staging)
            except BundleError as exc:  # pragma: no cover - verified just above
                raise ModelStoreError(f"bundle {digest[:12]} refused: {exc}") from exc
            metadata_sha256 = hashlib.sha256((staging / "metadata.json").read_bytes()).hexdigest()
            BundleInfo(metadata.name, metadata.version, digest, metadata_sha256).write(staging)
            _fsync_tree(staging)
            os.replace(staging, dest)
            _fsync_dir(self.versions)
        log.info("installed %s", name)
        return dest

    def activate(self, folder: Path | str) -> Pointers:
        """Make ``folder`` active (the old active becomes previous), atomically."""
        name = self._folder_of(folder)
        with self._locked():
            old = self.pointers()
            if old.active == name:
                return old
            new = Pointers(active=name, previous=old.active)
            self._write_pointers(new)
        log.info("activated %s (previous %s)", name, new.previous)
        return new

    def rollback(self) -> Pointers:
        """Swap ``active`` and ``previous``; ``ModelStoreError`` when there is no previous."""
        with self._locked():
            old = self.pointers()
            if old.previous is None:
                raise ModelStoreError("no previous model to roll back to")
            if not self.path(old.previous).is_dir():
                raise ModelStoreError(f"previous model {old.previous} is no longer installed")
            new = Pointers(active=old.previous, previous=old.active)
            self._write_pointers(new)
        log.info("rolled back to %s (previous %s)", new.active, new.previous)
        return new

    def remove(self, folder: Path | str) -> None:
        """Delete an installed version (a rejected candidate); never a pointer's target."""
        name = self._folder_of(folder)
        with self._locked():
            if name in _targets(self.pointers()):
                raise ModelStoreError(f"{name} is {self._role(name)}; it cannot be removed")
            self._discard(self.path(name))

    def prune(self, keep: int = 3) -> list[str]:
        """Delete the oldest versions that no pointer targets, keeping at most ``keep``."""
        with self._locked():
            self._sweep()
            protected = _targets(self.pointers())
            folders = self.installed()
            excess = len(folders) - max(keep, 0)
            removed: list[str] = []
            for name in folders:
                if len(removed) >= excess:
                    break
                if name not in protected:
                    self._discard(self.path(name))
                    removed.append(name)
        if removed:
            log.info("pruned %s", removed)
        return removed

    def load_startup(self, threads: int = 1) -> Startup:
        """Load the model to serve at start: ``active``, else ``previous`` (made active).

        When the pointer file itself is unreadable it is set aside and the newest installed
        version that loads becomes active. ``problems`` says what could not be loaded.
        """
        problems: list[str] = []
        with self._locked():
            self._sweep()
            try:
                pointers: Pointers | None = self.pointers()
            except ModelStoreError as exc:
                problems.append(str(exc))
                os.replace(self.root / POINTERS, self.root / f"{POINTERS}.corrupt")
                pointers = None
            if pointers is not None:
                if pointers.active is not None:
                    model = self._try_load(pointers.active, "active", threads, problems)
                    if model is not None:
                        return Startup(model, fell_back=False, problems=problems)
                elif pointers.previous is not None:
                    problems.append("no active model")
                candidates = [pointers.previous] if pointers.previous else []
            else:
                candidates = self.installed()[::-1]
            for name in candidates:
                model = self._try_load(name, "previous", threads, problems)
                if model is not None:
                    self._write_pointers(Pointers(active=name, previous=None))
                    log.warning("serving %s instead of the active model: %s", name, problems)
                    return Startup(model, fell_back=True, problems=problems)
        if problems:
            log.error("no loadable model: %s", problems)
        return Startup(None, fell_back=False, problems=problems)

    # -- internals -------------------------------------------------------------------------

    def _try_load(
        self, name: str, role: str, threads: int, problems: list[str]
    ) -> LoadedModel | None:
        path = self.path(name)
        if not path.is_dir():
            problems.append(f"{role} model {name} is not installed")
            return None
        try:
            return load_model(path, threads=threads)
        except ModelError as exc:
            problems.append(f"{role} model {name}: {exc}")
            return None

    def _folder_of(self, folder: Path | str) -> str:
        path = Path(folder)
        if isinstance(folder, Path) and path.parent.resolve() != self.versions.resolve():
            raise ModelStoreError(f"{folder} is not a folder of this model store")
        name = path.name
        if not _FOLDER.match(name) or not (self.path(name) / "bundle.json").is_file():
            raise ModelStoreError(f"{name} is not an installed model version")
        return name

    def _role(self, name: str) -> str:
        return "active" if self.pointers().active == name else "previous"

    def _write_pointers(self, pointers: Pointers) -> None:
        data = {"active": pointers.active, "previous": pointers.previous}
        atomic_write_bytes(self.root / POINTERS, json.dumps(data, indent=2).encode() + b"\n")
        _fsync_dir(self.root)

    def _discard(self, path: Path) -> None:
        """Remove a folder: renamed to a hidden name first, so it vanishes in one step."""
        trash = self.versions / f".trash-{path.name.lstrip('.')}-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove what crashed writers left behind: hidden folders and pointer temp files."""
        for path in self.versions.iterdir():
            if path.name.startswith("."):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        for path in self.root.glob(f".{POINTERS}.*.tmp"):
            path.unlink(missing_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock: threads of this process, then other processes (flock)."""
        with self._thread_lock:
            if self._depth == 0:
                fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = -1


def _targets(pointers: Pointers) -> set[str]:
    return {name for name in (pointers.active, pointers.previous) if name is not None}


def _read_bundle(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelStoreError(f"{path}: cannot read bundle ({exc})") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder``, then the folder itself."""
    for path in folder.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(folder)
