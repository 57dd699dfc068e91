"""The sensor simulator: its readings add up to the chain's hours, and its pacing."""

from __future__ import annotations

import socket
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from storecast.client import ApiRefused
from storecast.common.clock import FixedClock
from storecast.common.errors import ConfigError
from storecast.edge.localdb import LocalDB
from storecast.edge.sensors import SensorStore, parse_readings
from storecast.forecasting.synthetic import ChainConfig, SyntheticChain, generate_chain
from storecast.sim.sensors import (
    STEP,
    ReadingsPoster,
    SensorStream,
    send_readings,
    sensor_chain,
)

START = datetime(2026, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def chain() -> SyntheticChain:
    return generate_chain(
        ChainConfig(stores=3, days=4, seed=11, start="2026-03-02", missing_rate=0.2)
    )


def test_the_streams_hourly_aggregates_equal_the_chains_hours(chain: SyntheticChain):
    stream = SensorStream(chain, "S002", START + 3 * timedelta(hours=1), hours=48)
    sums: dict[tuple[int, str], list[float]] = defaultdict(list)
    for _, readings in stream.steps():
        for x in readings:
            ts = datetime.fromisoformat(x["ts"])
            sums[((ts - START) // timedelta(hours=1), x["kind"])].append(x["value"])
    h = chain.history
    for t in range(3, 51):
        if h.observed[1, t]:
            assert sum(sums[(t, "sales")]) == h.sales[1, t]
            assert sum(sums[(t, "footfall")]) == h.footfall[1, t]
        else:
            assert (t, "sales") not in sums and (t, "footfall") not in sums
        assert np.mean(sums[(t, "temperature")]) == pytest.approx(h.temperature_c[1, t])
        assert sum(sums[(t, "precipitation")]) == pytest.approx(h.precip_mm[1, t], abs=1e-9)
        assert max(sums[(t, "promo")]) == h.promo[1, t]
    assert not h.observed[1, 3:51].all()  # the test covers missing hours


def test_steps_are_five_simulated_minutes_stamped_with_their_start(chain: SyntheticChain):
    steps = list(SensorStream(chain, "S001", START, hours=2).steps())
    assert len(steps) == 24
    for k, (sent_at, readings) in enumerate(steps):
        assert sent_at == START + (k + 1) * STEP
        assert {x["ts"] for x in readings} == {f"{START + k * STEP:%Y-%m-%dT%H:%M:%SZ}"}
    again = list(SensorStream(chain, "S001", START, hours=2).steps())
    assert again == steps  # the split is seeded: a resend is the same readings


def test_the_stream_fed_through_the_agents_store_gives_the_chains_sales(
    chain: SyntheticChain, tmp_path
):
    store = SensorStore(LocalDB(tmp_path / "agent.db"))
    stream = SensorStream(chain, "S003", START, hours=30)
    for _, readings in stream.steps():
        store.add(parse_readings({"readings": readings}, START + timedelta(days=30)))
    assert store.origin() == START + timedelta(hours=29)
    w = store.window(START + timedelta(hours=29), 29, 24, "S003").history
    h = chain.history
    np.testing.assert_array_equal(w.observed[0, :29], h.observed[2, :29])
    np.testing.assert_array_equal(w.sales[0, :29], h.sales[2, :29])
    np.testing.assert_allclose(w.temperature_c[0, :29], h.temperature_c[2, :29])


def test_a_stream_outside_the_chain_or_of_an_unknown_store_is_refused(chain: SyntheticChain):
    with pytest.raises(ConfigError, match="no store 'S009'"):
        SensorStream(chain, "S009", START)
    with pytest.raises(ConfigError, match="outside the chain"):
        SensorStream(chain, "S001", START, hours=24 * 5)
    with pytest.raises(ConfigError, match="not an aware UTC hour"):
        SensorStream(chain, "S001", START + timedelta(minutes=30))


def test_the_sensor_chain_of_a_store_matches_a_bigger_chain():
    small = sensor_chain("S002", START + timedelta(hours=5), 10, seed=3)
    big = generate_chain(ChainConfig(stores=4, days=small.config.days, seed=3, start="2026-03-02"))
    assert small.history.store_ids == ("S001", "S002")
    np.testing.assert_array_equal(small.history.sales[1], big.history.sales[1])
    with pytest.raises(ConfigError, match="S001, S002"):
        sensor_chain("store-7", START, 10, seed=3)


# -- sending ------------------------------------------------------------------------------


class Recorder:
    """An agent stand-in for pacing tests: records what arrives and when (simulated wall)."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.posts: list[tuple[float, list[dict[str, Any]]]] = []
        self.seen: set[tuple[str, str]] = set()

    def post(self, readings: list[dict[str, Any]]) -> tuple[int, int]:
        self.posts.append((self.clock.monotonic(), readings))
        keys = [(x["ts"], x["kind"]) for x in readings]
        new = len(set(keys) - self.seen)
        self.seen |= set(keys)
        return new, len(keys) - new


def test_sending_paces_simulated_time_by_speed(chain: SyntheticChain):
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))  # wall time never reaches readings
    agent = Recorder(clock)
    stream = SensorStream(chain, "S001", START, hours=2)
    totals = send_readings(
        stream.steps(), agent.post, speed=600.0, clock=clock, sleep=clock.advance
    )
    assert clock.monotonic() == pytest.approx(2 * 3600 / 600)  # two simulated hours
    assert len(agent.posts) == 24  # one step a request: never behind
    for k, (at, readings) in enumerate(agent.posts):
        assert at == pytest.approx((k + 1) * STEP.total_seconds() / 600)  # at its end
        assert readings[0]["ts"].startswith("2026-03-02T0")  # simulated, not wall, time
    assert totals.reached == START + 2 * timedelta(hours=1)
    assert totals.readings == totals.accepted == sum(len(p) for _, p in agent.posts)
    assert not totals.interrupted


def test_the_backfill_goes_at_once_in_batches_then_pacing_starts(chain: SyntheticChain):
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    agent = Recorder(clock)
    stream = SensorStream(chain, "S001", START, hours=30)
    send_readings(
        stream.steps(),
        agent.post,
        speed=3600.0,
        clock=clock,
        sleep=clock.advance,
        paced_from=START + timedelta(hours=24),
        max_readings=500,
    )
    backfill = [p for at, p in agent.posts if at == 0.0]
    assert sum(len(p) for p in backfill) >= 24 * 12 * 3  # a day of steps at time 0
    assert max(len(p) for p in backfill) < 500 + 5 and len(backfill) < 24
    assert clock.monotonic() == pytest.approx(6.0)  # then 6 simulated hours at 3600x


def test_speed_zero_sends_as_fast_as_possible(chain: SyntheticChain):
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    sleeps: list[float] = []
    agent = Recorder(clock)
    stream = SensorStream(chain, "S001", START, hours=10)
    totals = send_readings(stream.steps(), agent.post, speed=0, clock=clock, sleep=sleeps.append)
    assert sleeps == [] and totals.requests == len(agent.posts) < 10
    assert totals.reached == START + timedelta(hours=10)


def test_resending_a_stream_is_all_duplicates(chain: SyntheticChain):
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    agent = Recorder(clock)
    stream = SensorStream(chain, "S001", START, hours=3)
    send_readings(stream.steps(), agent.post, speed=0, clock=clock)
    again = send_readings(stream.steps(), agent.post, speed=0, clock=clock)
    assert again.accepted == 0 and again.duplicates == again.readings > 0


def test_ctrl_c_stops_sending_and_keeps_the_totals(chain: SyntheticChain):
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    agent = Recorder(clock)

    def post(readings: list[dict[str, Any]]) -> tuple[int, int]:
        if len(agent.posts) == 2:
            raise KeyboardInterrupt
        return agent.post(readings)

    stream = SensorStream(chain, "S001", START, hours=3)
    totals = send_readings(stream.steps(), post, speed=60.0, clock=clock, sleep=clock.advance)
    assert totals.interrupted and totals.requests == 2
    assert totals.reached == START + 2 * STEP


def test_a_negative_speed_is_refused(chain: SyntheticChain):
    with pytest.raises(ConfigError, match="speed"):
        send_readings([], lambda _: (0, 0), speed=-1, clock=FixedClock(START))


# -- the poster ---------------------------------------------------------------------------


def test_the_poster_retries_server_errors_with_backoff_then_succeeds():
    answers = iter([503, 500, 429, 200])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = next(answers)
        if status == 200:
            return httpx.Response(200, json={"accepted": 1, "duplicates": 0})
        return httpx.Response(status, json={"error": {"code": "busy", "message": "later"}})

    sleeps: list[float] = []
    poster = ReadingsPoster(
        "http://agent.test/",
        "tok",
        sleep=sleeps.append,
        backoff_s=0.5,
        transport=httpx.MockTransport(handler),
    )
    reading = {"ts": "2026-03-02T00:00:00Z", "kind": "sales", "value": 1}
    assert poster.post([reading]) == (1, 0)
    assert sleeps == [0.5, 1.0, 2.0]
    assert seen[0].url == "http://agent.test/v1/readings"
    assert seen[0].headers["Authorization"] == "Bearer tok"
    poster.close()


def test_the_poster_does_not_retry_a_refusal():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "invalid_readings", "message": "1 of 1 readings are invalid"}}
        return httpx.Response(422, json=body)

    poster = ReadingsPoster(
        "http://agent.test", sleep=pytest.fail, transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ApiRefused) as info:
        poster.post([{"ts": "x", "kind": "sales", "value": 1}])
    assert info.value.status == 422 and info.value.code == "invalid_readings"


def test_the_poster_gives_up_on_an_unreachable_agent_after_its_retries():
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    poster = ReadingsPoster(f"http://127.0.0.1:{port}", sleep=sleeps.append, backoff_s=0.1)
    with pytest.raises(ConfigError, match="cannot reach"):
        poster.post([{"ts": "2026-03-02T00:00:00Z", "kind": "sales", "value": 1}])
    assert sleeps == pytest.approx([0.1 * 2**k for k in range(6)])
    poster.close()
