"""`storecast edge init|run|status|rollback` as a store's IT runs them."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge._live import start_agent, stop_agent

ROOT = json.dumps({"signed": {"_type": "root", "version": 1}, "signatures": []})


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storecast", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
        timeout=120,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def init_args(home: Path, root: Path, url: str) -> list[str | Path]:
    return [
        "edge", "init", "--home", home, "--registry", url, "--analytics", url,
        "--token", "sct_device_token", "--device-id", "edge-S001", "--store-id", "S001",
        "--root", root,
    ]  # fmt: skip


@pytest.fixture
def root_file(tmp_path: Path) -> Path:
    path = tmp_path / "1.root.json"
    path.write_text(ROOT)
    return path


def test_init_writes_a_private_config_and_the_trusted_root(tmp_path: Path, root_file: Path) -> None:
    home = tmp_path / "device"
    done = run(*init_args(home, root_file, "http://127.0.0.1:9"))
    assert done.returncode == 0, done.stderr
    assert "admin token" in done.stdout
    config = home / "edge.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert 'device_id = "edge-S001"' in text and "admin_token_sha256" in text
    assert (home / "tuf" / "metadata" / "root.json").read_text() == ROOT
    again = run(*init_args(home, root_file, "http://127.0.0.1:9"))
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"--registry": "not a url"}, "registry_url"),
        ({"--device-id": "bad id/with slash"}, "device_id"),
        ({"--root": "missing.json"}, "missing.json"),
    ],
)
def test_init_refuses_bad_arguments_with_exit_2(
    tmp_path: Path, root_file: Path, change: dict[str, str], words: str
) -> None:
    args = init_args(tmp_path / "device", root_file, "http://127.0.0.1:9")
    for flag, value in change.items():
        args[args.index(flag) + 1] = value if flag != "--root" else tmp_path / value
    done = run(*args)
    assert done.returncode == 2, done.stdout
    assert words in done.stderr
    assert not (tmp_path / "device" / "edge.toml").exists()


def test_init_refuses_a_root_that_is_not_tuf_root_metadata(tmp_path: Path) -> None:
    bad = tmp_path / "timestamp.json"
    bad.write_text(json.dumps({"signed": {"_type": "timestamp"}}))
    done = run(*init_args(tmp_path / "device", bad, "http://127.0.0.1:9"))
    assert done.returncode == 2 and "not 'root'" in done.stderr


@pytest.mark.slow
def test_run_status_and_rollback_against_a_running_agent(tmp_path: Path, root_file: Path) -> None:
    home = tmp_path / "device"
    url = f"http://127.0.0.1:{closed_port()}"  # the cloud is down: the agent runs anyway
    init = run(*init_args(home, root_file, url))
    admin_token = init.stdout.strip().splitlines()[-1]
    agent = start_agent(home)
    try:
        status = run("edge", "status", "--home", home)
        assert status.returncode == 0, status.stderr
        assert "edge-S001" in status.stdout and "model" in status.stdout
        as_json = json.loads(run("edge", "status", "--home", home, "--json").stdout)
        assert as_json["model"] is None and as_json["last_poll_ok"] is False
        no_token = run("edge", "rollback", "--home", home)
        assert no_token.returncode == 2 and "--admin-token" in no_token.stderr
        wrong = run("edge", "rollback", "--home", home, "--admin-token", "guess")
        assert wrong.returncode == 2 and "401" in wrong.stderr
        nothing = run("edge", "rollback", "--agent", agent.url,
                      env={"STORECAST_EDGE_ADMIN_TOKEN": admin_token})  # fmt: skip
        assert nothing.returncode == 2 and "previous" in nothing.stderr
    finally:
        assert stop_agent(agent) == 0
    assert not (home / "agent.url").exists()
    gone = run("edge", "status", "--home", home)
    assert gone.returncode == 2 and "no agent is running" in gone.stderr
    unreachable = run("edge", "status", "--agent", url)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
