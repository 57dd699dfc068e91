"""The registry as an operator runs it: init, gunicorn serve, and every client command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storecast._process import running_server

TOKEN = re.compile(r"sct_[A-Za-z0-9_-]{20,}")


def run(*args: str | Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("STORECAST_TOKEN", None)
    if token:
        env["STORECAST_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "storecast", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """`storecast registry init` then `storecast registry serve --port 0` (gunicorn)."""
    home = tmp_path / "home"
    init = run("registry", "init", "--home", home)
    assert init.returncode == 0, init.stderr
    assert "move it offline" in init.stdout
    admin = TOKEN.search(init.stdout)
    assert admin is not None, init.stdout
    key = home / "offline" / "root.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (home / "1.root.json").is_file()

    serve = ("registry", "serve", "--home", str(home), "--port", "0", "--workers", "2")
    with running_server(*serve) as (url, proc):
        yield url, admin.group(0), home
    assert proc.returncode == 0  # a clean stop on SIGINT


def test_init_refuses_an_existing_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run("registry", "init", "--home", home).returncode == 0
    again = run("registry", "init", "--home", home)
    assert again.returncode == 2
    assert "already holds a registry" in again.stderr


def test_serve_without_init_says_what_to_do(tmp_path: Path) -> None:
    out = run("registry", "serve", "--home", tmp_path / "nothing", "--port", "0")
    assert out.returncode == 2
    assert "registry init" in out.stderr


@pytest.mark.slow
def test_operator_workflow_through_the_cli(
    served: tuple[str, str, Path], trained_checkpoint: Path, tmp_path: Path
) -> None:
    url, admin, _home = served
    reg = ("--registry", url)

    made = run("tokens", "create", "--name", "ml-team", "--role", "publisher", *reg, token=admin)
    assert made.returncode == 0, made.stderr
    publisher = TOKEN.search(made.stdout)
    assert publisher is not None
    pub = publisher.group(0)

    dist = tmp_path / "dist"
    packaged = run(
        "package",
        trained_checkpoint,
        "--name",
        "demand-lstm",
        "--version",
        "auto",
        "--out",
        dist,
        *reg,
        token=pub,
    )
    assert packaged.returncode == 0, packaged.stderr
    assert "next version of demand-lstm is v1" in packaged.stdout
    bundle = dist / "demand-lstm-v1.tar"

    first = run("publish", bundle, *reg, token=pub)
    assert first.returncode == 0, first.stderr
    assert "published demand-lstm v1" in first.stdout
    again = run("publish", bundle, *reg, token=pub)
    assert again.returncode == 0 and "already published" in again.stdout

    listed = run("models", "list", *reg, token=pub)
    assert listed.returncode == 0 and "demand-lstm" in listed.stdout
    shown = run("models", "show", "demand-lstm", "--version", "1", *reg, token=pub)
    assert shown.returncode == 0 and '"architecture"' in shown.stdout
    alias = run("models", "alias", "demand-lstm", "production", "--version", "1", *reg, token=pub)
    assert alias.returncode == 0, alias.stderr

    enrolled = run(
        "devices",
        "enrol",
        "--device-id",
        "dev-1",
        "--store-id",
        "S001",
        "--region",
        "north",
        *reg,
        token=admin,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device = TOKEN.search(enrolled.stdout)
    assert device is not None

    deployed = run(
        "deploy",
        "--model",
        "demand-lstm",
        "--alias",
        "production",
        "--stores",
        "S001",
        *reg,
        token=pub,
    )
    assert deployed.returncode == 0, deployed.stderr
    poll = httpx.get(
        f"{url}/v1/devices/dev-1/assignment", headers={"Authorization": f"Bearer {device.group(0)}"}
    )
    assert poll.status_code == 200 and poll.json()["version"] == 1

    verified = run("audit", "verify", *reg, token=admin)
    assert verified.returncode == 0 and "audit chain intact" in verified.stdout
    exported = tmp_path / "audit.csv"
    assert run("audit", "export", "--out", exported, *reg, token=admin).returncode == 0
    assert "model.publish" in exported.read_text()

    metrics = httpx.get(f"{url}/metrics").text
    assert "storecast_http_requests_total" in metrics


@pytest.mark.slow
def test_client_commands_refuse_bad_input_with_exit_code_2(
    served: tuple[str, str, Path], tmp_path: Path
) -> None:
    url, admin, _ = served
    reg = ("--registry", url)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file" * 10)
    refused = run("publish", junk, *reg, token=admin)
    assert refused.returncode == 2
    assert "invalid_bundle" in refused.stderr

    missing = run("publish", tmp_path / "nope.tar", *reg, token=admin)
    assert missing.returncode == 2 and "nope.tar" in missing.stderr

    no_token = run("models", "list", *reg)
    assert no_token.returncode == 2 and "401" in no_token.stderr

    both = run("deploy", "--model", "m", *reg, token=admin)
    assert both.returncode == 2 and "exactly one of --version and --alias" in both.stderr

    wrong_role = run("tokens", "create", "--name", "x", "--role", "root", *reg, token=admin)
    assert wrong_role.returncode == 2 and "'root' is not one of" in wrong_role.stderr

    out = tmp_path / "audit.xml"
    wrong_format = run("audit", "export", "--out", out, "--format", "xml", *reg, token=admin)
    assert wrong_format.returncode == 2 and "'xml' is not one of" in wrong_format.stderr
    assert not out.exists()

    unreachable = run("models", "list", "--registry", "http://127.0.0.1:9", token=admin)
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
