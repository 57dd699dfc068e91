"""Registry settings: defaults, then ``STORECAST_*`` environment variables, then arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from storecast.common.clock import Clock, SystemClock
from storecast.common.errors import ConfigError

DEFAULT_MAX_UPLOAD = 256 * 1024 * 1024  # bytes
DEFAULT_ROLLOUT_INTERVAL_S = 60.0  # seconds between rollout controller ticks when serving
MIN_READOUT_MAX_AGE_S = 120.0  # seconds: the least age up to which a readout snapshot serves


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
    # Seconds between the rollout controller's ticks in this process; 0: no controller
    # thread (the default for apps built in tests; `storecast cloud|registry serve` set 60).
    rollout_interval_s: float = 0.0
    # Seconds a readout snapshot is served for before a reader computes it again; 0: twice
    # the rollout interval, at least MIN_READOUT_MAX_AGE_S (a missed tick is tolerated).
    readout_max_age_s: float = 0.0
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
        if not 0 <= self.rollout_interval_s < float("inf"):
            raise ConfigError("rollout_interval_s must be a finite number of seconds, >= 0")
        if not 0 <= self.readout_max_age_s < float("inf"):
            raise ConfigError("readout_max_age_s must be a finite number of seconds, >= 0")

    @property
    def readout_max_age(self) -> timedelta:
        """How old a readout snapshot may be and still be served."""
        seconds = self.readout_max_age_s or max(2 * self.rollout_interval_s, MIN_READOUT_MAX_AGE_S)
        return timedelta(seconds=seconds)

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
    def from_env(
        cls, home: Path, env: dict[str, str] | None = None, *, serving: bool = False
    ) -> RegistryConfig:
        """Defaults overridden by ``STORECAST_DATABASE_URL``, ``STORECAST_MAX_UPLOAD_BYTES``,
        ``STORECAST_TIMESTAMP_EXPIRY_S``, ``STORECAST_ROLLOUT_INTERVAL_S`` (0 disables
        the controller; unset: 60 s for a ``serving`` process, else no controller) and
        ``STORECAST_READOUT_MAX_AGE_S`` (0 or unset: twice the interval, at least 120 s)."""
        env = dict(os.environ) if env is None else env
        config = cls(home=home)
        raw = env.get("STORECAST_ROLLOUT_INTERVAL_S")
        if raw:
            config = replace(
                config, rollout_interval_s=_seconds("STORECAST_ROLLOUT_INTERVAL_S", raw)
            )
        elif serving:
            config = replace(config, rollout_interval_s=DEFAULT_ROLLOUT_INTERVAL_S)
        if raw := env.get("STORECAST_READOUT_MAX_AGE_S"):
            config = replace(config, readout_max_age_s=_seconds("STORECAST_READOUT_MAX_AGE_S", raw))
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


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {raw!r}")
    return value
