"""The agent under stress: kill -9 mid-update, swaps under load, a registry that is down."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from storecast.edge.modelstore import ModelStore
from tests.edge._bundles import EdgeBundles
from tests.edge._live import (
    EdgeRig,
    active_version,
    backfill,
    kill_agent,
    start_agent,
    stop_agent,
    wait_until,
)
from tests.registry.conftest import LiveRegistry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

KILLS = 30


def test_kill_9_at_random_points_of_updates_always_restarts_on_a_verified_model(
    cloud: LiveRegistry, tmp_path: Path, modelstore_bundles: EdgeBundles
) -> None:
    rig = EdgeRig(cloud, tmp_path / "device").setup(poll_interval_s=0.05)
    rig.publish(modelstore_bundles.v1)
    rig.publish(modelstore_bundles.v2)
    rig.deploy(1)
    rng = random.Random(5)
    versions_seen: Counter[int | None] = Counter()
    agent = start_agent(rig.home)
    for kill in range(KILLS):
        # Flip the assignment so every life of the agent has an update to make, and kill it
        # at a random moment: during the download, the unpack, the smoke test or the swap.
        rig.deploy(2 if kill % 2 == 0 else 1)
        time.sleep(rng.uniform(0.0, 0.6))
        kill_agent(agent)
        # What a restart will load must be verified and loadable, whatever instant we hit.
        startup = ModelStore(rig.home / "models").load_startup()
        assert startup.model is not None, f"kill {kill}: no loadable model ({startup.problems})"
        agent = start_agent(rig.home)
        version = active_version(agent)
        versions_seen[version] += 1
        assert version in (1, 2), f"kill {kill}: serving {version}"
        forecast = agent.get("/v1/forecast", params={"horizon": 3})
        assert forecast.status_code == 200, forecast.text
    wait_until(lambda: active_version(agent) == (2 if KILLS % 2 else 1), 30, "the last assignment")
    stop_agent(agent)
    assert len(versions_seen) == 2  # the kills landed on both sides of a swap


def test_model_swaps_while_clients_forecast_fail_no_request(
    cloud: LiveRegistry, tmp_path: Path, modelstore_bundles: EdgeBundles
) -> None:
    rig = EdgeRig(cloud, tmp_path / "device").setup(poll_interval_s=0.05)
    rig.publish(modelstore_bundles.v1)
    rig.publish(modelstore_bundles.v2)
    rig.deploy(1)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        backfill(agent.url, 200)
        stop = threading.Event()
        answered: Counter[tuple[int, object]] = Counter()
        failures: list[str] = []

        def hammer() -> None:
            with httpx.Client(base_url=agent.url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        response = client.get("/v1/forecast")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    body = response.json()
                    if response.status_code != 200 or body["method"] != "model":
                        failures.append(f"{response.status_code} {body}")
                        continue
                    answered[(response.status_code, body["model"]["version"])] += 1

        clients = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in clients:
            thread.start()
        try:
            for target in (2, 1, 2, 1):
                rig.deploy(target)
                wait_until(lambda t=target: active_version(agent) == t, 30, f"v{target}")  # type: ignore[misc]
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
    assert failures == []
    assert answered[(200, 1)] > 0 and answered[(200, 2)] > 0


def test_registry_down_the_agent_keeps_forecasting_and_backs_off(
    cloud: LiveRegistry, tmp_path: Path, closed_url: str
) -> None:
    from storecast.edge.config import init_home

    init_home(
        tmp_path / "device",
        device_id="edge-S001",
        store_id="S001",
        registry_url=closed_url,
        analytics_url=closed_url,
        token="device-token-nobody-checks",
        trusted_root=cloud.init.trusted_root.read_bytes(),
        settings={"poll_interval_s": 0.05, "port": 0},
    )
    agent = start_agent(tmp_path / "device")
    try:
        backfill(agent.url, 24)
        for _ in range(5):
            response = agent.get("/v1/forecast")
            assert response.status_code == 200
            assert response.json()["method"] == "seasonal_naive"
        status = agent.get("/v1/status").json()
        assert status["last_poll_ok"] is False
        assert status["last_upload_ok"] is False
        assert status["last_update"]["outcome"] == "error"
        assert status["outbox_depth"] > 0  # telemetry waits for the cloud
        # Backing off: polls grow apart (0.05 s, 0.1, 0.2, ... capped) instead of hammering
        # a dead registry every 50 ms: a few failed polls in 3 s, not sixty.
        time.sleep(max(0.0, 3.0 - status["uptime_s"]))
        failures = agent.get("/v1/status").json()["poll_failures"]
        assert 2 <= failures <= 10
    finally:
        stop_agent(agent)


def test_a_registry_answering_garbage_never_stops_the_updater(
    cloud: LiveRegistry, tmp_path: Path
) -> None:
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    from storecast.edge.config import init_home

    def portal(environ: object, start_response: object) -> object:  # a captive portal
        return Response("<html>log in to the guest wifi</html>", 200, mimetype="text/html")(
            environ, start_response
        )

    server = make_server("127.0.0.1", 0, portal, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    init_home(
        tmp_path / "device",
        device_id="edge-S001",
        store_id="S001",
        registry_url=url,
        analytics_url=url,
        token="device-token-nobody-checks",
        trusted_root=cloud.init.trusted_root.read_bytes(),
        settings={"poll_interval_s": 0.05, "port": 0},
    )
    agent = start_agent(tmp_path / "device")
    try:
        wait_until(lambda: agent.get("/v1/status").json()["poll_failures"] >= 3, 30, "failed polls")
        assert agent.get("/healthz").status_code == 200  # every thread still runs
        status = agent.get("/v1/status").json()
        assert status["last_poll_ok"] is False
        assert "assignment poll" in status["last_update"]["reason"]
    finally:
        stop_agent(agent)
        server.shutdown()
