"""Registry settings: defaults, then ``STORECAST_*`` environment variables, then arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from storecast.common.clock import Clock, SystemClock
from storecast.common.errors import ConfigError

DEFAULT_MAX_UPLOAD = 256 * 1024 * 1024  # bytes


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry keeps its state and how it behaves."""

    home: Path
    database_url: str = ""  # empty: SQLite at home/registry.db
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    timestamp_expiry: timedelta = timedelta(days=1)  # TUF timestamp lifetime
    snapshot_expiry: timedelta = timedelta(days=7)
    targets_expiry: timedelta = timedelta(days=365)
    last_seen_every: timedelta = timedelta(minutes=5)  # coarsest last-seen update per device
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        # Absolute, so files served by path (artifacts, TUF targets) never resolve against
        # whatever folder the server process happens to run in.
        object.__setattr__(self, "home", Path(self.home).absolute())
        # Expiring metadata is re-signed when the timestamp is fetched within half its
        # lifetime; that must come around before the snapshot (and targets) expire.
        if self.timestamp_expiry * 2 > self.snapshot_expiry:
            raise ConfigError(
                f"the TUF timestamp lifetime ({self.timestamp_expiry}) must be at most half "
                f"the snapshot lifetime ({self.snapshot_expiry})"
            )
        if self.snapshot_expiry * 2 > self.targets_expiry:
            raise ConfigError(
                f"the TUF snapshot lifetime ({self.snapshot_expiry}) must be at most half "
                f"the targets lifetime ({self.targets_expiry})"
            )
        if self.max_upload_bytes <= 0:
            raise ConfigError("max_upload_bytes must be positive")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def root_key_path(self) -> Path:
        return self.home / "offline" / "root.pem"

    @property
    def trusted_root_path(self) -> Path:
        return self.home / "1.root.json"

    @classmethod
    def from_env(cls, home: Path, env: dict[str, str] | None = None) -> RegistryConfig:
        """Defaults overridden by ``STORECAST_DATABASE_URL``, ``STORECAST_MAX_UPLOAD_BYTES``
        and ``STORECAST_TIMESTAMP_EXPIRY_S``."""
        env = dict(os.environ) if env is None else env
        config = cls(home=home)
        if url := env.get("STORECAST_DATABASE_URL"):
            config = replace(config, database_url=url)
        if raw := env.get("STORECAST_MAX_UPLOAD_BYTES"):
            config = replace(
                config, max_upload_bytes=_positive_int("STORECAST_MAX_UPLOAD_BYTES", raw)
            )
        if raw := env.get("STORECAST_TIMESTAMP_EXPIRY_S"):
            seconds = _positive_int("STORECAST_TIMESTAMP_EXPIRY_S", raw)
            config = replace(config, timestamp_expiry=timedelta(seconds=seconds))
        return config


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value
