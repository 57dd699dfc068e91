"""``storecast registry init``: a new registry home with its database, keys and root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from storecast.common import audit
from storecast.common.auth import Role, TokenRow, mint_token
from storecast.common.cloud import Database
from storecast.common.db import upgrade
from storecast.common.errors import ConfigError
from storecast.common.files import atomic_write_bytes
from storecast.registry.config import RegistryConfig
from storecast.registry.signing import expiry_of, lock_state, repository
from storecast.registry.tables import TufMetadataRow
from storecast.registry.tuf_repo import create_root, generate_keys, load_online_keys, load_signer

ROOT_KEY_NOTE = """\
This folder holds the TUF ROOT KEY of the storecast registry.

The registry never needs it while it runs. Move root.pem to offline storage (an
encrypted USB key in a safe, or an HSM) and delete it from this machine. You need it
only to rotate the online keys (targets, snapshot, timestamp) or to renew root.json
before it expires (see docs/operations.md).
"""


@dataclass(frozen=True)
class Initialised:
    """What ``init_registry`` made; ``admin_token`` is shown once and never stored."""

    home: Path
    database_url: str
    trusted_root: Path
    root_key: Path
    admin_token: str
    admin_token_id: str


def init_registry(config: RegistryConfig) -> Initialised:
    """Create the database, the TUF keys and metadata, and a first admin token."""
    if config.keys_dir.exists() or config.trusted_root_path.exists():
        raise ConfigError(f"{config.home} already holds a registry (keys or 1.root.json exist)")
    config.home.mkdir(parents=True, exist_ok=True)
    upgrade(config.db_url)
    database = Database.connect(config.db_url, config.clock)
    try:
        with database.transaction() as session:
            if _has_root(session):
                raise ConfigError(
                    f"the database {config.db_url} already holds a registry; use a new one"
                )
        generate_keys(config.keys_dir, config.root_key_path)
        (config.root_key_path.parent / "README.txt").write_text(ROOT_KEY_NOTE)
        keys = load_online_keys(config.keys_dir)
        now = config.clock.now()
        root = create_root(load_signer(config.root_key_path), keys, now, expiry_of(config))
        atomic_write_bytes(config.trusted_root_path, root)
        token = mint_token()
        with database.transaction(write=True) as session:
            lock_state(session)
            repository(session, config, keys).bootstrap(root)
            session.add(
                TokenRow(
                    id=token.token_id,
                    name="first admin",
                    role=Role.ADMIN.value,
                    secret_sha256=token.secret_sha256,
                    created_at=now,
                    created_by=None,
                )
            )
            audit.append(
                session,
                audit.AuditEntry(
                    ts=now,
                    actor="storecast registry init",
                    role="-",
                    action="registry.init",
                    resource=f"registry:{config.home}",
                    outcome="ok",
                    status=0,
                    request_id="-",
                    client_addr="-",
                    detail={"admin_token_id": token.token_id},
                ),
            )
    finally:
        database.engine.dispose()
    return Initialised(
        config.home,
        config.db_url,
        config.trusted_root_path,
        config.root_key_path,
        token.secret,
        token.token_id,
    )


def _has_root(session: Session) -> bool:
    found = session.execute(
        select(TufMetadataRow.role).where(TufMetadataRow.role == "root").limit(1)
    ).first()
    return found is not None
