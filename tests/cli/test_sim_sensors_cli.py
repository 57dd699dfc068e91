"""``storecast sim sensors`` end to end: a real process posting to a real (tiny) agent app."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from storecast.common.clock import SystemClock
from storecast.edge.localdb import LocalDB
from storecast.edge.sensors import ReadingsRefused, SensorStore, parse_readings
from storecast.sim.sensors import sensor_chain


@dataclass
class Agent:
    url: str
    store: SensorStore
    requests: list[int]  # readings per request received


def readings_app(store: SensorStore, received: list[int]) -> Flask:
    """The agent's ``POST /v1/readings`` reduced to what this test needs."""
    app = Flask(__name__)
    clock = SystemClock()

    @app.post("/v1/readings")
    def readings() -> tuple[Response, int]:
        try:
            parsed = parse_readings(request.get_json(), clock.now())
        except ReadingsRefused as exc:
            error = {"code": exc.code, "message": exc.message, "errors": exc.errors}
            return jsonify({"error": error}), exc.status
        result = store.add(parsed)
        received.append(len(parsed))
        return jsonify({"accepted": result.accepted, "duplicates": result.duplicates}), 200

    return app


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    db = LocalDB(tmp_path / "agent.db")
    store = SensorStore(db)
    received: list[int] = []
    server = make_server("127.0.0.1", 0, readings_app(store, received), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Agent(f"http://127.0.0.1:{server.server_port}", store, received)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        db.close()


def sim_sensors(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storecast", "sim", "sensors", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sim_sensors_streams_a_stores_hours_into_the_agent(agent: Agent):
    start = datetime(2026, 3, 1, 6, tzinfo=UTC)
    args = ["--device", agent.url, "--store-id", "S002", "--start", "2026-03-01T06"]
    run = sim_sensors(*args, "--hours", "3", "--speed", "0", "--seed", "5")
    assert run.returncode == 0, run.stderr
    assert "sent 180 readings of S002" in run.stdout and "180 accepted" in run.stdout
    assert agent.store.origin() == start + timedelta(hours=2)  # the last hour is the origin
    assert agent.store.latest_ts() == start + timedelta(hours=2, minutes=55)
    chain = sensor_chain("S002", start, 3, seed=5)
    window = agent.store.window(start + timedelta(hours=2), 2, 1, "S002").history
    np.testing.assert_array_equal(window.sales[0, :2], chain.history.sales[1, 6:8])
    np.testing.assert_array_equal(window.footfall[0, :2], chain.history.footfall[1, 6:8])

    again = sim_sensors(*args, "--hours", "3", "--speed", "0", "--seed", "5")
    assert again.returncode == 0, again.stderr
    assert "0 accepted, 180 duplicates" in again.stdout


def test_sim_sensors_paces_after_the_backfill(agent: Agent):
    args = ["--device", agent.url, "--start", "2026-03-01T00", "--backfill-hours", "24"]
    began = time.monotonic()
    run = sim_sensors(*args, "--hours", "25", "--speed", "3600")
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - began >= 1.0  # the last hour takes 1 s at 3600x
    backfill = max(agent.requests)
    assert backfill > 5 * 12  # the backfill went many steps a request
    paced = agent.requests[agent.requests.index(backfill) + 1 :]
    # Then paced: a step (5 readings) a request, or a few when the machine is busy.
    assert len(paced) >= 4 and all(n % 5 == 0 for n in paced)
    assert agent.store.hours_with_sales() == 24


def test_readings_ahead_of_the_agents_clock_stop_the_sim_with_its_refusal(agent: Agent):
    ahead = (SystemClock().now() + timedelta(days=2)).strftime("%Y-%m-%dT%H")
    run = sim_sensors("--device", agent.url, "--start", ahead, "--hours", "1", "--speed", "0")
    assert run.returncode == 2
    assert "readings are invalid" in run.stderr and "in the future" in run.stderr
    assert agent.store.latest_ts() is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store-id", "S021"], "no store 'S021'"),
        (["--start", "2026-03-01T06:30"], "not the start of an hour"),
        (["--start", "soon"], "expected an ISO hour"),
        (["--speed", "-1"], "--speed"),
    ],
)
def test_bad_arguments_exit_2(args, message):
    run = sim_sensors("--device", "http://127.0.0.1:9", *args)
    assert run.returncode == 2
    assert message in run.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_sim_with_a_summary(agent: Agent):
    proc = subprocess.Popen(
        [sys.executable, "-m", "storecast", "sim", "sensors", "--device", agent.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while agent.store.latest_ts() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the first readings, with a deadline
    assert agent.store.latest_ts() is not None, "no readings arrived before the deadline"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "sent " in out and "accepted" in out
    assert "interrupted" in err
