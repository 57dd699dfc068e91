"""The rollout controller's schedule inside a cloud process, and its configuration."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from storecast.cloud import create_app
from storecast.common.errors import ConfigError
from storecast.registry.app import SCHEDULER_EXTENSION
from storecast.registry.config import RegistryConfig
from storecast.registry.scheduler import RolloutScheduler
from storecast.registry.setup import init_registry


def test_the_scheduler_ticks_until_stopped_and_survives_a_failing_tick():
    calls: list[Any] = []
    second = threading.Event()

    def tick(db: Any) -> None:
        calls.append(db)
        if len(calls) == 1:
            raise RuntimeError("database away")
        second.set()

    scheduler = RolloutScheduler(db="db", interval_s=0.01, tick=tick)  # type: ignore[arg-type]
    scheduler.start()
    assert second.wait(10)
    scheduler.stop()
    assert not scheduler._thread.is_alive()
    assert calls[:2] == ["db", "db"]


def test_an_app_runs_the_controller_only_when_configured(tmp_path: Path):
    config = RegistryConfig(home=tmp_path / "home")
    init_registry(config)
    assert SCHEDULER_EXTENSION not in create_app(config).extensions
    app = create_app(RegistryConfig(home=config.home, rollout_interval_s=3600))
    scheduler = app.extensions[SCHEDULER_EXTENSION]
    assert isinstance(scheduler, RolloutScheduler) and scheduler._thread.is_alive()
    scheduler.stop()


@pytest.mark.parametrize(
    ("env", "serving", "seconds"),
    [
        ({}, False, 0.0),
        ({}, True, 60.0),
        ({"STORECAST_ROLLOUT_INTERVAL_S": "0"}, True, 0.0),
        ({"STORECAST_ROLLOUT_INTERVAL_S": "15"}, False, 15.0),
    ],
)
def test_the_rollout_interval_comes_from_the_environment_and_defaults_to_60_when_serving(
    tmp_path, env, serving, seconds
):
    assert RegistryConfig.from_env(tmp_path, env, serving=serving).rollout_interval_s == seconds


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan"])
def test_a_bad_rollout_interval_is_a_config_error(tmp_path, raw):
    with pytest.raises(ConfigError, match="STORECAST_ROLLOUT_INTERVAL_S"):
        RegistryConfig.from_env(tmp_path, {"STORECAST_ROLLOUT_INTERVAL_S": raw})
