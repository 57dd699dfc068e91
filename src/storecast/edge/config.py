"""The device's configuration: ``<home>/edge.toml``, written once by ``storecast edge init``.

The file holds who the device is (device and store ids), where its cloud is and the
device token, so it is written with mode 0600. The local admin token (for rollback over
the agent's API) is kept only as its sha256. The trusted TUF root goes to
``<home>/tuf/metadata/root.json``, where python-tuf's ``Updater`` keeps the metadata it
trusts from run to run (that is what makes rollback protection hold across restarts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from storecast.common.errors import ConfigError
from storecast.common.files import atomic_write_bytes

__all__ = ["CONFIG_FILE", "AgentSettings", "EdgeConfig", "EdgeHome", "init_home", "load_config"]

CONFIG_FILE = "edge.toml"
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class AgentSettings(BaseModel):
    """How the agent runs; every field has a default a store can live with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"  # where the local API listens
    port: int = Field(default=8700, ge=0, le=65535)  # 0: any free port
    poll_interval_s: float = Field(default=60.0, gt=0)  # assignment poll period
    poll_jitter: float = Field(default=0.2, ge=0, lt=1)  # ± share of the period
    poll_backoff_cap_s: float = Field(default=900.0, gt=0)  # longest wait after errors
    reject_backoff_s: float = Field(default=3600.0, gt=0)  # before a rejected digest is retried
    upload_interval_s: float = Field(default=5.0, gt=0)  # outbox check when idle
    heartbeat_interval_s: float = Field(default=60.0, gt=0)
    inference_window_s: float = Field(default=60.0, gt=0)  # inference stats period
    outbox_capacity: int = Field(default=200_000, ge=100)  # events
    upload_batch: int = Field(default=500, ge=1, le=500)  # events per POST
    readings_retention_days: float = Field(default=60.0, gt=0)
    smoke_latency_ms: float = Field(default=50.0, gt=0)  # p50 budget of a candidate, batch 1
    threads: int = Field(default=4, ge=1, le=64)  # HTTP worker threads


class EdgeConfig(BaseModel):
    """Everything ``edge.toml`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Name
    store_id: Name
    registry_url: HttpUrl
    analytics_url: HttpUrl
    token: str = Field(min_length=8)  # the device token the registry issued at enrolment
    admin_token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # local API admin token
    agent: AgentSettings = Field(default_factory=AgentSettings)

    def admin_token_ok(self, presented: str) -> bool:
        """Whether ``presented`` is the local admin token (constant-time compare)."""
        digest = hashlib.sha256(presented.encode()).hexdigest()
        return hmac.compare_digest(digest, self.admin_token_sha256)

    def registry(self) -> str:
        return str(self.registry_url).rstrip("/")

    def analytics(self) -> str:
        return str(self.analytics_url).rstrip("/")


class EdgeHome:
    """Where a device keeps its state under ``home``."""

    def __init__(self, home: Path) -> None:
        self.root = home

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def database(self) -> Path:  # readings, store-hours, telemetry outbox
        return self.root / "agent.db"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def tuf_metadata(self) -> Path:
        return self.root / "tuf" / "metadata"

    @property
    def provisioned_root(self) -> Path:  # the root `edge init` was given, kept as-is
        return self.root / "tuf" / "trusted_root.json"

    @property
    def downloads(self) -> Path:
        return self.root / "tuf" / "downloads"

    @property
    def endpoint_file(self) -> Path:  # the running agent's URL, for `edge status`
        return self.root / "agent.url"


def init_home(
    home: Path,
    *,
    device_id: str,
    store_id: str,
    registry_url: str,
    analytics_url: str,
    token: str,
    trusted_root: bytes,
    settings: dict[str, Any] | None = None,
    force: bool = False,
) -> tuple[EdgeConfig, str]:
    """Write ``edge.toml`` and the trusted root; return the config and the admin token.

    The admin token is shown once (only its hash is kept). ``ConfigError`` when the
    arguments are invalid, the root is not TUF root metadata, or the home is already
    initialised (unless ``force``).
    """
    paths = EdgeHome(home)
    if paths.config.exists() and not force:
        raise ConfigError(f"{paths.config} already exists (pass --force to overwrite it)")
    _check_root(trusted_root)
    admin_token = secrets.token_urlsafe(32)
    try:
        config = EdgeConfig(
            device_id=device_id,
            store_id=store_id,
            registry_url=registry_url,  # type: ignore[arg-type]  # validated to HttpUrl
            analytics_url=analytics_url,  # type: ignore[arg-type]
            token=token,
            admin_token_sha256=hashlib.sha256(admin_token.encode()).hexdigest(),
            agent=AgentSettings(**(settings or {})),
        )
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    home.mkdir(parents=True, exist_ok=True)
    _set_aside_other_identity(paths, config)
    write_config(paths.config, config)
    # A fresh trust anchor: metadata trusted under another root must not survive a re-init.
    if paths.tuf_metadata.exists():
        for old in paths.tuf_metadata.glob("*.json"):
            old.unlink()
    paths.tuf_metadata.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths.tuf_metadata / "root.json", trusted_root)
    atomic_write_bytes(paths.provisioned_root, trusted_root)
    return config, admin_token


def _set_aside_other_identity(paths: EdgeHome, config: EdgeConfig) -> None:
    """A re-init as another device or store must not send the old one's queued telemetry
    under the new token: the old database is renamed, not reused (nor deleted)."""
    if not paths.config.exists() or not paths.database.exists():
        return
    try:
        old = load_config(paths.root)
    except ConfigError:
        old = None
    if old is not None and (old.device_id, old.store_id) == (config.device_id, config.store_id):
        return
    stamp = f"{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        source = paths.database.with_name(paths.database.name + suffix)
        if source.exists():
            source.rename(source.with_name(f"{paths.database.name}.replaced-{stamp}{suffix}"))


def write_config(path: Path, config: EdgeConfig) -> None:
    """Write ``config`` as TOML, readable by its owner only."""
    data = tomli_w.dumps(config.model_dump(mode="json")).encode()
    atomic_write_bytes(path, data)
    path.chmod(0o600)


def load_config(home: Path) -> EdgeConfig:
    """Read ``<home>/edge.toml``; ``ConfigError`` names what is wrong."""
    path = EdgeHome(home).config
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run `storecast edge init` first)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def _check_root(data: bytes) -> None:
    try:
        document = json.loads(data)
        kind = document["signed"]["_type"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError("the trusted root is not TUF metadata (JSON with signed._type)") from None
    if kind != "root":
        raise ConfigError(f"the trusted root is TUF {kind!r} metadata, not 'root'")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(config)"
    return f"{field}: {first['msg']}"
