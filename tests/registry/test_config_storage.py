"""Registry settings from the environment, and the content-addressed artifact store."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from storecast.common.errors import ConfigError
from storecast.registry.config import DEFAULT_MAX_UPLOAD, RegistryConfig
from storecast.registry.storage import ArtifactStore


def test_defaults_put_sqlite_under_the_home(tmp_path: Path) -> None:
    config = RegistryConfig.from_env(tmp_path, env={})
    assert config.db_url == f"sqlite:///{tmp_path.resolve() / 'registry.db'}"
    assert config.max_upload_bytes == DEFAULT_MAX_UPLOAD
    assert config.timestamp_expiry == timedelta(days=1)


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    config = RegistryConfig.from_env(
        tmp_path,
        env={
            "STORECAST_DATABASE_URL": "postgresql://db/x",
            "STORECAST_MAX_UPLOAD_BYTES": "1024",
            "STORECAST_TIMESTAMP_EXPIRY_S": "3600",
        },
    )
    assert config.db_url == "postgresql://db/x"
    assert config.max_upload_bytes == 1024
    assert config.timestamp_expiry == timedelta(hours=1)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_bad_numbers_in_the_environment_are_config_errors(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="STORECAST_MAX_UPLOAD_BYTES"):
        RegistryConfig.from_env(tmp_path, env={"STORECAST_MAX_UPLOAD_BYTES": value})


def test_artifacts_are_stored_once_under_their_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest, created = store.put(b"bundle bytes")
    assert digest == hashlib.sha256(b"bundle bytes").hexdigest()
    assert created and store.exists(digest)
    assert store.path(digest).read_bytes() == b"bundle bytes"
    assert store.path(digest).parent.name == digest[:2]
    assert store.put(b"bundle bytes") == (digest, False)
    store.delete(digest)
    assert not store.exists(digest)


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "A" * 64, "a" * 63])
def test_artifact_paths_refuse_anything_but_a_digest(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        ArtifactStore(tmp_path).path(bad)
