"""Readout snapshots (SQLite and PostgreSQL): the evidence is served from the snapshot the
controller's tick stores while it is recent and computed at the deployment's present
step; status, step and decisions are always read live."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storecast.common.clock import FixedClock
from storecast.registry import rollouts
from storecast.registry.config import RegistryConfig
from storecast.registry.readout import Snapshot, snapshot_usable
from storecast.registry.schemas_rollouts import ReadoutEvidence, ReadoutWindow
from storecast.registry.setup import init_registry
from tests.registry._rollouts import Store, canary_body, enrol_stores, publish_versions, report
from tests.registry.conftest import LiveRegistry, MakeBundle, registry_config, serve_registry

T0 = datetime(2026, 11, 2, tzinfo=UTC)
MAX_AGE = timedelta(seconds=120)  # a config with no controller thread: the least max age


# -- when a snapshot may stand for the evidence (pure) -----------------------------------------


def snapshot(status: str = "active", step_index: int | None = 0, age_s: float = 0) -> Snapshot:
    window = ReadoutWindow(since=T0, until=T0, basis="-")
    evidence = ReadoutEvidence(
        status=status,
        step_index=step_index,
        window=window,
        arms=[],
        difference=None,
        verdict="inconclusive",
        gates_now=None,
    )
    return Snapshot(T0 - timedelta(seconds=age_s), evidence)


@pytest.mark.parametrize(
    ("stored", "usable"),
    [
        pytest.param(snapshot(age_s=0), True, id="just_computed"),
        pytest.param(snapshot(age_s=120), True, id="exactly_max_age"),
        pytest.param(snapshot(age_s=121), False, id="older_than_max_age"),
        pytest.param(snapshot(age_s=-5), True, id="from_a_replica_whose_clock_is_ahead"),
        pytest.param(snapshot(step_index=1), False, id="another_step"),
        pytest.param(snapshot(status="paused"), False, id="another_status"),
    ],
)
def test_a_snapshot_stands_for_the_evidence_only_when_recent_and_of_the_same_step(stored, usable):
    assert snapshot_usable(stored, "active", 0, T0, MAX_AGE) is usable


def test_the_max_age_is_twice_the_rollout_interval_and_at_least_120_s(tmp_path: Path):
    config = RegistryConfig(home=tmp_path)
    assert config.readout_max_age == timedelta(seconds=120)
    assert replace(config, rollout_interval_s=90).readout_max_age == timedelta(seconds=180)
    assert replace(config, readout_max_age_s=10).readout_max_age == timedelta(seconds=10)
    env = {"STORECAST_READOUT_MAX_AGE_S": "30"}
    assert RegistryConfig.from_env(tmp_path, env).readout_max_age == timedelta(seconds=30)


# -- served ------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def cloud(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[LiveRegistry]:
    """A live cloud whose clock moves only when a test says so."""
    config = registry_config(tmp_path / "cloud", database_url, clock=clock)
    with serve_registry(config, init_registry(config)) as live:
        yield live


def canary(
    live: LiveRegistry, make_bundle: MakeBundle, steps: list[float], stores: int = 8
) -> tuple[int, list[Store]]:
    with live.client(live.admin) as admin:
        publish_versions(admin, make_bundle, 1, 2)
        enrolled = enrol_stores(live, stores)
        created = admin.post("/v1/deployments", json=canary_body(steps, min_duration_s=30 * 86400))
        assert created.status_code == 201, created.text
    return int(created.json()["id"]), enrolled


def get_readout(live: LiveRegistry, deployment: int, **params: Any) -> dict[str, Any]:
    with live.client(live.token("viewer")) as viewer:
        response = viewer.get(f"/v1/deployments/{deployment}/readout", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def forecast_hours(out: dict[str, Any]) -> int:
    return sum(int(arm["forecast_hours"]) for arm in out["arms"])


def test_the_tick_stores_the_snapshot_served_until_it_is_older_than_the_max_age(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    deployment, stores = canary(cloud, make_bundle, [50, 100])
    report(cloud, stores, T0, 6, bias={1: 0.0, 2: 0.0})
    clock.advance(6 * 3600)
    ticked_at = clock.now()
    assert [t.decision.action for t in rollouts.tick(cloud.database)] == ["wait"]

    report(cloud, stores, T0 + timedelta(hours=6), 1, bias={1: 0.0, 2: 0.0})  # not seen yet
    clock.advance(60)
    served = get_readout(cloud, deployment)
    assert served["source"] == "snapshot"
    assert datetime.fromisoformat(served["as_of"]) == ticked_at
    assert served["window"]["until"] == served["as_of"]
    assert forecast_hours(served) == 8 * 6

    clock.advance(61)  # 121 s old: past the max age
    stale = get_readout(cloud, deployment)
    assert stale["source"] == "live" and datetime.fromisoformat(stale["as_of"]) == clock.now()
    assert forecast_hours(stale) == 8 * 7
    again = get_readout(cloud, deployment)  # the live computation was stored
    assert again["source"] == "snapshot" and again["as_of"] == stale["as_of"]
    assert again["arms"] == stale["arms"]


def test_fresh_true_computes_the_evidence_now_and_stores_it(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    deployment, stores = canary(cloud, make_bundle, [50, 100])
    report(cloud, stores, T0, 3, bias={1: 0.0, 2: 0.0})
    clock.advance(3 * 3600)
    rollouts.tick(cloud.database)
    report(cloud, stores, T0 + timedelta(hours=3), 1, bias={1: 0.0, 2: 0.0})
    clock.advance(30)
    assert forecast_hours(get_readout(cloud, deployment)) == 8 * 3  # the tick's snapshot

    fresh = get_readout(cloud, deployment, fresh="true")
    assert fresh["source"] == "live" and datetime.fromisoformat(fresh["as_of"]) == clock.now()
    assert forecast_hours(fresh) == 8 * 4
    clock.advance(10)
    stored = get_readout(cloud, deployment)
    assert (stored["source"], stored["as_of"]) == ("snapshot", fresh["as_of"])
    assert forecast_hours(stored) == 8 * 4


def test_a_bad_fresh_parameter_is_a_422(cloud: LiveRegistry, make_bundle: MakeBundle):
    deployment, _ = canary(cloud, make_bundle, [50, 100])
    with cloud.client(cloud.token("viewer")) as viewer:
        for params in ({"fresh": "perhaps"}, {"stale": "1"}):
            response = viewer.get(f"/v1/deployments/{deployment}/readout", params=params)
            assert response.status_code == 422, params
            assert response.json()["error"]["code"] == "validation_error"


def act(live: LiveRegistry, deployment: int, action: str) -> dict[str, Any]:
    with live.client(live.admin) as admin:
        response = admin.post(f"/v1/deployments/{deployment}/{action}", json={})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_operator_actions_show_at_once_and_the_arms_follow_the_new_step(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    deployment, _ = canary(cloud, make_bundle, [25, 50, 100])
    rollouts.tick(cloud.database)
    clock.advance(10)
    assert get_readout(cloud, deployment)["source"] == "snapshot"

    act(cloud, deployment, "pause")
    paused = get_readout(cloud, deployment)
    assert paused["status"] == "paused" and paused["source"] == "live"
    assert [d["action"] for d in paused["decisions"]] == ["pause"]

    clock.advance(10)
    rollouts.tick(cloud.database)  # a paused canary's readout is kept fresh too
    ticked = get_readout(cloud, deployment)
    assert ticked["source"] == "snapshot" and datetime.fromisoformat(ticked["as_of"]) == (
        clock.now()
    )

    act(cloud, deployment, "resume")
    promoted = act(cloud, deployment, "promote")
    out = get_readout(cloud, deployment)
    assert [d["action"] for d in out["decisions"]] == ["pause", "resume", "operator_promote"]
    assert (out["status"], out["step"]["index"], out["source"]) == ("active", 1, "live")
    weights = {arm["arm"]: arm["weight"] for arm in promoted["arms"]}
    assert {arm["arm"]: arm["weight"] for arm in out["arms"]} == weights == {"A": 50, "B": 50}
    assert sum(arm["stores"] for arm in out["arms"]) == 8


def test_a_controller_decision_is_in_the_readout_the_same_tick_stores(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    deployment, stores = canary(cloud, make_bundle, [50, 100], stores=30)  # both arms > 1
    rollouts.tick(cloud.database)
    report(cloud, stores, T0, 12, bias={1: 0.0, 2: 0.5})  # B forecasts 50% high
    clock.advance(12 * 3600)
    assert get_readout(cloud, deployment)["gates_now"]["action"] == "rollback"  # stale: live

    [ticked] = rollouts.tick(cloud.database)
    assert (ticked.decision.action, ticked.applied) == ("rollback", True)
    out = get_readout(cloud, deployment)
    assert (out["status"], out["source"], out["verdict"]) == ("rolled_back", "snapshot", "worse")
    assert datetime.fromisoformat(out["as_of"]) == clock.now()
    assert [d["action"] for d in out["decisions"]] == ["rollback"]
    assert out["gates_now"] is None  # nothing left for the controller to decide
    assert rollouts.tick(cloud.database) == []
