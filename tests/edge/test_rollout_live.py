"""Canary rollouts with real edge agents: devices follow their arm, back to A on a rollback,
all to B (and the alias) on completion; each transition in the readout, audit log and
incidents."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storecast.common.telemetry import hour_floor
from storecast.edge.config import init_home
from storecast.registry import rollouts
from tests.analytics.conftest import EventMaker
from tests.edge._bundles import EdgeBundles
from tests.edge._live import AgentProcess, active_version, start_agent, stop_agent, wait_until
from tests.registry._rollouts import MODEL, Store, canary_body, enrol_stores, report
from tests.registry.conftest import LiveRegistry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

STORES = 16  # enough stores per arm for the accuracy interval to decide


def _publish(cloud: LiveRegistry, *bundles: bytes) -> None:
    with cloud.client(cloud.admin) as http:
        for bundle in bundles:
            http.post(
                "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
            ).raise_for_status()


@contextmanager
def _agents(
    cloud: LiveRegistry, stores: list[Store], root: Path, tmp_path: Path
) -> Iterator[dict[str, AgentProcess]]:
    running: dict[str, AgentProcess] = {}
    try:
        for store in stores:
            home = tmp_path / store.device_id
            init_home(
                home,
                device_id=store.device_id,
                store_id=store.store_id,
                registry_url=cloud.url,
                analytics_url=cloud.url,
                token=store.token,
                trusted_root=root.read_bytes(),
                settings={"poll_interval_s": 0.2, "port": 0},
            )
            running[store.store_id] = start_agent(home)
        yield running
    finally:
        for agent in running.values():
            stop_agent(agent)


def _get(cloud: LiveRegistry, path: str, **params: Any) -> Any:
    with cloud.client(cloud.admin) as http:
        response = http.get(path, params=params)
        response.raise_for_status()
        return response.json()


def _errors_for(stores: list[Store], version: int, start: datetime, hours: int) -> list[Any]:
    """Inference windows in which a third of the forecast requests failed."""
    events = []
    for store in stores:
        maker = EventMaker(store.device_id, store.store_id, {"name": MODEL, "version": version})
        events.append(
            (
                store,
                [
                    maker.inference(start + timedelta(hours=h), [30], errors=10)
                    for h in range(hours)
                ],
            )
        )
    return events


def test_a_failing_candidate_is_rolled_back_and_real_devices_return_to_a(
    cloud: LiveRegistry, tmp_path: Path, modelstore_bundles: EdgeBundles
) -> None:
    _publish(cloud, modelstore_bundles.v1, modelstore_bundles.v2)
    stores = enrol_stores(cloud, STORES)
    with cloud.client(cloud.admin) as http:
        body = canary_body([50, 100], min_duration_s=0)
        created = http.post("/v1/deployments", json=body)
        assert created.status_code == 201, created.text
    deployment = created.json()["id"]
    arms = {s.store_id: s.assignment(cloud)["arm"] for s in stores}
    in_a = [s for s in stores if arms[s.store_id] == "A"][:2]
    in_b = [s for s in stores if arms[s.store_id] == "B"][:2]
    assert len(in_a) == 2 and len(in_b) == 2
    root = cloud.init.trusted_root
    with _agents(cloud, in_a + in_b, root, tmp_path) as agents:
        for store in in_a:
            wait_until(lambda a=agents[store.store_id]: active_version(a) == 1, 30, "A on v1")  # type: ignore[misc]
        for store in in_b:
            wait_until(lambda a=agents[store.store_id]: active_version(a) == 2, 30, "B on v2")  # type: ignore[misc]

        # The candidate's devices fail a third of their forecast requests.
        start = hour_floor(datetime.now(UTC))
        report(cloud, stores, start, 12, bias={1: 0.0, 2: 0.0})
        b_stores = [s for s in stores if arms[s.store_id] == "B"]
        for store, events in _errors_for(b_stores, 2, start, 12):
            with cloud.client(store.token) as http:
                http.post("/v1/telemetry", json={"events": events}).raise_for_status()

        ticked = rollouts.tick(cloud.database, now=start + timedelta(hours=12))
        assert [t.decision.action for t in ticked] == ["rollback"]
        for store in in_b:
            wait_until(lambda a=agents[store.store_id]: active_version(a) == 1, 30, "B back on v1")  # type: ignore[misc]
        for store in in_a:
            assert active_version(agents[store.store_id]) == 1

    readout = _get(cloud, f"/v1/deployments/{deployment}/readout")
    assert readout["status"] == "rolled_back"
    assert [d["action"] for d in readout["decisions"]] == ["rollback"]
    assert "error_rate" in readout["decisions"][0]["reason"]
    audit = _get(cloud, "/v1/audit", limit=1000)
    assert any(r["action"] == "rollout.rollback" for r in audit["records"])
    # The dashboard's incidents panel (decided at the tick's time, 12 h from now).
    at = (start + timedelta(hours=13)).isoformat()
    incidents = _get(cloud, "/v1/analytics/incidents", at=at)["incidents"]
    assert any(
        i.get("kind") == "rollout" and i.get("deployment_id") == deployment for i in incidents
    )


def test_a_better_candidate_is_promoted_to_every_device_and_the_alias_moves(
    cloud: LiveRegistry, tmp_path: Path, modelstore_bundles: EdgeBundles
) -> None:
    _publish(cloud, modelstore_bundles.v1, modelstore_bundles.v2)
    stores = enrol_stores(cloud, STORES)
    with cloud.client(cloud.admin) as http:
        http.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1}).raise_for_status()
        body = canary_body([50, 100], min_duration_s=0, promote_alias="production")
        created = http.post("/v1/deployments", json=body)
        assert created.status_code == 201, created.text
    deployment = created.json()["id"]
    arms = {s.store_id: s.assignment(cloud)["arm"] for s in stores}
    watched = [s for s in stores if arms[s.store_id] == "A"][:2]
    with _agents(cloud, watched, cloud.init.trusted_root, tmp_path) as agents:
        for store in watched:
            wait_until(lambda a=agents[store.store_id]: active_version(a) == 1, 30, "A on v1")  # type: ignore[misc]
        start = hour_floor(datetime.now(UTC))
        report(cloud, stores, start, 12, bias={1: 0.2, 2: 0.0})  # v2 is the more accurate
        ticked = rollouts.tick(cloud.database, now=start + timedelta(hours=12))
        assert [t.decision.action for t in ticked] == ["complete"]
        for store in watched:  # every store now runs B, A's stores included
            wait_until(lambda a=agents[store.store_id]: active_version(a) == 2, 30, "all on v2")  # type: ignore[misc]

    readout = _get(cloud, f"/v1/deployments/{deployment}/readout")
    assert readout["status"] == "completed"
    assert readout["verdict"] == "better"
    model = _get(cloud, f"/v1/models/{MODEL}")
    assert model["aliases"]["production"] == 2
    audit = [r["action"] for r in _get(cloud, "/v1/audit", limit=1000)["records"]]
    assert "rollout.complete" in audit and "model.alias" in audit
