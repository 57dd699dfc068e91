"""`edge.toml`: written once, read strictly, re-init safe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storecast.common.errors import ConfigError
from storecast.edge.config import EdgeHome, init_home, load_config
from storecast.edge.localdb import LocalDB

ROOT = json.dumps({"signed": {"_type": "root"}, "signatures": []}).encode()


def _init(home: Path, device_id: str = "edge-S001", **kwargs: object) -> str:
    _, admin = init_home(
        home,
        device_id=device_id,
        store_id="S001",
        registry_url="http://127.0.0.1:9",
        analytics_url="http://127.0.0.1:9",
        token="device-token-x",
        trusted_root=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )
    return admin


def test_the_config_round_trips_and_only_the_admin_token_hash_is_kept(tmp_path: Path) -> None:
    admin = _init(tmp_path / "d")
    config = load_config(tmp_path / "d")
    assert config.device_id == "edge-S001" and config.agent.poll_interval_s == 60.0
    assert admin not in (tmp_path / "d" / "edge.toml").read_text()
    assert config.admin_token_ok(admin) and not config.admin_token_ok("guess")
    assert (EdgeHome(tmp_path / "d").provisioned_root).read_bytes() == ROOT


def test_unknown_or_bad_settings_are_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="poll_interval_s"):
        _init(tmp_path / "d", settings={"poll_interval_s": -1})
    _init(tmp_path / "e")
    path = tmp_path / "e" / "edge.toml"
    path.write_text(path.read_text() + "\nsurprise = 1\n")
    with pytest.raises(ConfigError, match="surprise"):
        load_config(tmp_path / "e")
    path.write_text("not = [toml")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(tmp_path / "e")


def test_reinit_as_another_device_sets_the_old_database_aside(tmp_path: Path) -> None:
    home = tmp_path / "d"
    _init(home)
    db = LocalDB(EdgeHome(home).database)
    with db.transaction() as conn:
        conn.execute("CREATE TABLE marker (x)")
    db.close()
    _init(home, force=True)  # same device: the database stays
    assert EdgeHome(home).database.exists()
    _init(home, device_id="edge-S002", force=True)  # another device: not its telemetry
    assert not EdgeHome(home).database.exists()
    assert list(home.glob("agent.db.replaced-*"))
