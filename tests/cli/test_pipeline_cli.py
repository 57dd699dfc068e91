"""``storecast pipeline run`` as CI runs it: a real process, exit codes 0 / 2 / 3."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from storecast.registry.setup import init_registry
from tests.pipeline._config import tiny_config_dict
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry


def pipeline_run(
    config: Path, *, registry: str | None = None, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("STORECAST_TOKEN", None)
    env.pop("STORECAST_REGISTRY", None)
    if token:
        env["STORECAST_TOKEN"] = token
    if registry:
        env["STORECAST_REGISTRY"] = registry
    return subprocess.run(
        [sys.executable, "-m", "storecast", "pipeline", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveRegistry]:
    home = tmp_path / "registry"
    config = registry_config(home, f"sqlite:///{tmp_path / 'cloud.db'}")
    with serve_registry(config, init_registry(config)) as running:
        yield running


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    data = tiny_config_dict(tmp_path / "out", gate={"max_regresion_vs_production": 0.0})
    run = pipeline_run(write_config(tmp_path / "pipeline.toml", data))
    assert run.returncode == 2, run.stderr
    assert "gate.max_regresion_vs_production: unknown key" in run.stderr
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    run = pipeline_run(tmp_path / "nope.toml")
    assert run.returncode == 2
    assert "no such config file" in run.stderr


def test_a_refused_token_exits_2_before_training(tmp_path: Path, live: LiveRegistry) -> None:
    config = write_config(tmp_path / "pipeline.toml", tiny_config_dict(tmp_path / "out"))
    run = pipeline_run(config, registry=live.url, token="sct_not-a-real-token-at-all")
    assert run.returncode == 2, run.stderr
    assert "HTTP 401" in run.stderr
    assert not (tmp_path / "out" / "demand-lstm.pt").exists()


@pytest.mark.slow
def test_a_failed_gate_exits_3_with_the_figures_and_publishes_nothing(
    tmp_path: Path, live: LiveRegistry
) -> None:
    data = tiny_config_dict(
        tmp_path / "out",
        train={"max_epochs": 1, "steps_per_epoch": 2},
        gate={"min_improvement_vs_snaive": 0.9},
        registry={"url": live.url},
    )
    run = pipeline_run(
        write_config(tmp_path / "pipeline.toml", data), token=live.token("publisher")
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "quality gate failed (nothing published)" in run.stderr
    assert "needs at least 90.0% lower" in run.stderr
    assert "Hold-out backtest" in run.stdout  # the figures behind the decision
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.admin}"}) as http:
        assert http.get("/v1/models").json()["models"] == []
    assert (tmp_path / "out" / "pipeline-report.json").is_file()  # for the CI artifact
