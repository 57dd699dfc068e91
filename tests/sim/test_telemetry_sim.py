"""The telemetry simulator: valid, deterministic, complete streams whose faults show."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from storecast.cli.sim import Fault
from storecast.client import ApiRefused
from storecast.common.errors import ConfigError
from storecast.common.telemetry import LATENCY_BOUNDS_MS, EventRejection, validate_event
from storecast.sim.sender import (
    RETRIES,
    batches,
    load_tokens,
    post,
    save_tokens,
    write_jsonl,
)
from storecast.sim.telemetry import FAULT_AGENT_VERSION, FAULTS, TelemetrySim, TelemetrySimConfig

END = datetime(2026, 3, 2, tzinfo=UTC)
Event = dict[str, Any]


def config(**overrides: Any) -> TelemetrySimConfig:
    return TelemetrySimConfig(**{"end": END, "devices": 6, "days": 3, "seed": 5, **overrides})


def all_events(sim: TelemetrySim) -> list[Event]:
    return [event for _, stream in sim.streams() for event in stream]


@pytest.fixture(scope="module", params=[None, *FAULTS])
def simulated(request: pytest.FixtureRequest) -> tuple[TelemetrySim, list[Event]]:
    sim = TelemetrySim(config(fault=request.param))
    return sim, all_events(sim)


def by_fault(fault: str) -> tuple[TelemetrySim, list[Event]]:
    sim = TelemetrySim(config(devices=10, fault=fault))
    return sim, all_events(sim)


def in_fault(sim: TelemetrySim, event: Event) -> bool:
    start = sim.plan.fault_start
    return start is not None and event["payload"]["window_start"] >= f"{start:%Y-%m-%dT%H}"


def error_rate(events: list[Event]) -> float:
    count = sum(e["payload"]["count"] for e in events)
    return sum(e["payload"]["errors"] for e in events) / count


def median_bucket(events: list[Event]) -> int:
    """Index of the latency bucket holding the median request."""
    hist = [sum(col) for col in zip(*(e["payload"]["latency_hist"] for e in events), strict=True)]
    half, seen = sum(hist) / 2, 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= half:
            return i
    raise AssertionError("empty histogram")


# -- the contract ---------------------------------------------------------------------------


def test_every_generated_event_passes_validate_event(simulated):
    _, events = simulated
    rejected = [
        r for i, e in enumerate(events) if isinstance(r := validate_event(i, e), EventRejection)
    ]
    assert rejected == []


def test_event_ids_are_unique_version_4_uuids(simulated):
    _, events = simulated
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:500])


def test_events_are_json_ready(simulated):
    _, events = simulated
    assert json.loads(json.dumps(events[:2000], allow_nan=False)) == events[:2000]


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_identical_events_and_another_seed_differs():
    first, again = all_events(TelemetrySim(config())), all_events(TelemetrySim(config()))
    other = all_events(TelemetrySim(config(seed=6)))
    assert first == again
    assert [e["event_id"] for e in first] != [e["event_id"] for e in other]
    assert [e["payload"] for e in first] != [e["payload"] for e in other]


def test_a_device_stream_does_not_depend_on_what_was_read_before():
    sim = TelemetrySim(config())
    alone = list(sim.events(5))
    everything = all_events(sim)
    assert [e for e in everything if e["device_id"] == sim.devices[5].device_id] == alone


# -- shape of the streams -------------------------------------------------------------------


def test_counts_per_type_match_the_config(simulated):
    sim, events = simulated
    cfg, plan = sim.config, sim.plan
    device_hours = cfg.devices * cfg.hours
    counts = Counter(e["type"] for e in events)
    assert counts["forecast"] == counts["actual"] == device_hours
    assert counts["inference"] == device_hours * 60 // cfg.inference_window_min
    assert counts["heartbeat"] == device_hours * 60 // cfg.heartbeat_every_min
    extra = len(plan.faulty) if cfg.fault == "bad-model" else 0
    assert counts["model"] == cfg.devices + 3 * len(plan.upgraded) + 3 * extra
    assert len(plan.upgraded) == cfg.devices // 2


def test_each_device_streams_in_time_order_within_its_span(simulated):
    sim, events = simulated
    first, last = f"{sim.config.start:%Y-%m-%dT%H:%M:%SZ}", f"{END:%Y-%m-%dT%H:%M:%SZ}"
    streams: dict[str, list[str]] = defaultdict(list)
    for e in events:
        streams[e["device_id"]].append(e["ts"])
    assert set(streams) == {d.device_id for d in sim.devices}
    for stamps in streams.values():
        assert stamps == sorted(stamps)
        assert first <= stamps[0] and stamps[-1] <= last


def test_devices_serve_the_chains_stores():
    sim = TelemetrySim(config())
    profiles = sim.chain.profiles
    assert [(d.device_id, d.store_id, d.region) for d in sim.devices] == [
        (f"sim-{p.store_id}", p.store_id, p.region) for p in profiles
    ]


def test_forecasts_cover_24_hours_from_their_origin_and_actuals_are_the_chains_sales():
    sim = TelemetrySim(config(devices=2, days=1))
    events = list(sim.events(0))
    forecast = next(e for e in events if e["type"] == "forecast")
    assert forecast["payload"]["origin"] == forecast["ts"]
    assert len(forecast["payload"]["points"]) == forecast["payload"]["horizon"] == 24
    sales = [e["payload"]["sales_units"] for e in events if e["type"] == "actual"]
    first = np.datetime64(sim.config.start.replace(tzinfo=None), "h")
    offset = int((first - sim.chain.history.start) // np.timedelta64(1, "h"))
    assert sales == sim.chain.history.sales[0, offset : offset + 24].tolist()


def test_half_the_fleet_moves_to_version_2_halfway():
    sim = TelemetrySim(config())
    upgrade = f"{sim.plan.upgrade_at:%Y-%m-%dT%H:%M:%SZ}"
    for device in sim.devices:
        events = list(sim.events(device))
        actions = [
            (e["payload"]["action"], e["payload"]["version"])
            for e in events
            if e["type"] == "model"
        ]
        forecasts = [(e["ts"], e["model"]["version"]) for e in events if e["type"] == "forecast"]
        if device.device_id in sim.plan.upgraded:
            assert actions == [
                ("activated", 1),
                ("download_started", 2),
                ("verified", 2),
                ("activated", 2),
            ]
            assert all(v == (2 if ts >= upgrade else 1) for ts, v in forecasts)
        else:
            assert actions == [("activated", 1)]
            assert {v for _, v in forecasts} == {1}


def test_forecast_accuracy_is_realistic():
    events = all_events(TelemetrySim(config(devices=10, days=4)))
    actual = {
        (e["store_id"], e["payload"]["ts"]): e["payload"]["sales_units"]
        for e in events
        if e["type"] == "actual"
    }
    err = total = 0.0
    for e in events:
        if e["type"] == "forecast":
            for p in e["payload"]["points"]:
                if (key := (e["store_id"], p["ts"])) in actual:
                    err += abs(p["q50"] - actual[key])
                    total += actual[key]
    assert 0.15 < err / total < 0.35


def test_healthy_latency_is_sub_millisecond_and_errors_are_rare():
    events = [e for e in all_events(TelemetrySim(config())) if e["type"] == "inference"]
    assert LATENCY_BOUNDS_MS[median_bucket(events)] == 1.0  # median in (0.5, 1] ms
    assert error_rate(events) < 0.01


def test_interleaved_merges_every_device_in_time_order():
    sim = TelemetrySim(config(devices=3, days=1))
    merged = list(sim.interleaved())
    assert [e["ts"] for e in merged] == sorted(e["ts"] for e in merged)
    assert sorted(e["event_id"] for e in merged) == sorted(e["event_id"] for e in all_events(sim))


# -- faults -----------------------------------------------------------------------------------


def test_bad_model_version_3_fails_slow_and_biased_on_its_stores_only():
    sim, events = by_fault("bad-model")
    assert len(sim.plan.faulty) == 3
    inference = [e for e in events if e["type"] == "inference"]
    v3 = [e for e in inference if e["model"]["version"] == 3]
    others = [e for e in inference if e["model"]["version"] != 3]
    assert {e["device_id"] for e in v3} == sim.plan.faulty and all(in_fault(sim, e) for e in v3)
    assert error_rate(v3) > 0.07 > 0.01 > error_rate(others)
    assert median_bucket(v3) > median_bucket(others) + 2
    activated = [e for e in events if e["type"] == "model" and e["payload"]["version"] == 3]
    assert {
        e["device_id"] for e in activated if e["payload"]["action"] == "activated"
    } == sim.plan.faulty

    def bias(version_is_3: bool) -> float:
        actual = {
            (e["store_id"], e["payload"]["ts"]): e["payload"]["sales_units"]
            for e in events
            if e["type"] == "actual"
        }
        pairs = [
            (p["q50"], actual[(e["store_id"], p["ts"])])
            for e in events
            if e["type"] == "forecast" and (e["model"]["version"] == 3) == version_is_3
            for p in e["payload"]["points"][:1]
            if (e["store_id"], p["ts"]) in actual
        ]
        return sum(f for f, _ in pairs) / sum(a for _, a in pairs)

    assert bias(True) > 1.4 and 0.85 < bias(False) < 1.15


def test_broken_store_is_the_second_store_with_failing_sensors():
    sim, events = by_fault("broken-store")
    broken = sim.devices[1].device_id
    assert sim.plan.faulty == {broken}
    inference = [e for e in events if e["type"] == "inference" and in_fault(sim, e)]
    assert error_rate([e for e in inference if e["device_id"] == broken]) > 0.2
    assert error_rate([e for e in inference if e["device_id"] != broken]) < 0.01
    offline = [
        e for e in events if e["type"] == "error" and e["payload"]["kind"] == "sensor_offline"
    ]
    assert {e["device_id"] for e in offline} == {broken}
    assert len(offline) == sim.config.fault_hours


def test_bad_agent_release_candidate_is_slow_and_failing():
    sim, events = by_fault("bad-agent")
    assert len(sim.plan.faulty) == 4
    start = f"{sim.plan.fault_start:%Y-%m-%dT%H}"
    beats = [e for e in events if e["type"] == "heartbeat"]
    rc = {e["device_id"] for e in beats if e["payload"]["agent_version"] == FAULT_AGENT_VERSION}
    assert rc == sim.plan.faulty
    assert all(
        e["ts"] >= start for e in beats if e["payload"]["agent_version"] == FAULT_AGENT_VERSION
    )
    inference = [e for e in events if e["type"] == "inference" and in_fault(sim, e)]
    bad = [e for e in inference if e["device_id"] in rc]
    good = [e for e in inference if e["device_id"] not in rc]
    assert error_rate(bad) > 0.05 > 0.01 > error_rate(good)
    assert median_bucket(bad) >= median_bucket(good) + 4


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"end": datetime(2026, 3, 2)},  # naive
        {"end": datetime(2026, 3, 2, 0, 30, tzinfo=UTC)},  # not an hour
        {"devices": 0},
        {"days": 0},
        {"heartbeat_every_min": 7},
        {"inference_window_min": 0},
        {"error_rate": 1.0},
        {"requests_per_hour": -1.0},
        {"fault": "meteor"},
        {"model_name": "demand lstm"},
        {"agent_version": ""},
        {"fault": "bad-model", "fault_hours": 72},  # the whole span: no baseline
    ],
)
def test_config_refuses_bad_values(overrides):
    with pytest.raises(ConfigError):
        config(**overrides)


def test_cli_fault_choices_are_the_simulators():
    assert tuple(f.value for f in Fault) == FAULTS


# -- sender -----------------------------------------------------------------------------------


def test_write_jsonl_writes_one_valid_event_a_line(tmp_path):
    events = list(TelemetrySim(config(devices=2, days=1)).interleaved())
    path = tmp_path / "out" / "events.jsonl"
    assert write_jsonl(events, path) == len(events)
    assert [json.loads(line) for line in path.read_text().splitlines()] == events


def test_batches_stay_within_the_endpoint_limits():
    events = list(TelemetrySim(config(devices=1, days=2)).events(0))
    sizes = [count for count, _ in batches(events, 100)]
    assert sum(sizes) == len(events) and max(sizes) == 100
    for count, body in batches(events, 1000):
        assert len(json.loads(body)["events"]) == count <= 1000 and len(body) <= 2 * 1024 * 1024
    with pytest.raises(ConfigError):
        next(batches(events, 1001))


def test_device_tokens_round_trip_through_a_private_file(tmp_path):
    path = tmp_path / "tokens.json"
    assert load_tokens(path) == {}
    save_tokens({"sim-S001": "secret"}, path)
    assert load_tokens(path) == {"sim-S001": "secret"}
    assert path.stat().st_mode & 0o077 == 0


class FakeCloud:
    """Enrolment and ingestion as the API describes them; the first telemetry calls fail."""

    def __init__(self, failures: int = 1, status: int = 503) -> None:
        self.tokens: dict[str, str] = {}  # token -> device id
        self.stored: set[str] = set()
        self.failures_left, self.status = failures, status
        self.telemetry_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        if request.url.path == "/v1/devices":
            assert auth == "Bearer admin"
            body = json.loads(request.content)
            if body["device_id"] in self.tokens.values():
                return httpx.Response(
                    409, json={"error": {"code": "device_exists", "message": "taken"}}
                )
            token = f"tok-{body['device_id']}"
            self.tokens[token] = body["device_id"]
            return httpx.Response(201, json={"token": token})
        assert request.url.path == "/v1/telemetry"
        self.telemetry_calls += 1
        if self.failures_left:
            self.failures_left -= 1
            error = {"code": "failed", "message": "not now"}
            return httpx.Response(self.status, json={"error": error})
        device = self.tokens[auth.removeprefix("Bearer ")]
        events = json.loads(request.content)["events"]
        assert len(events) <= 1000 and {e["device_id"] for e in events} == {device}
        new = {e["event_id"] for e in events} - self.stored
        self.stored |= new
        return httpx.Response(
            200, json={"accepted": len(new), "duplicates": len(events) - len(new), "rejected": []}
        )


def serve(monkeypatch: pytest.MonkeyPatch, cloud: FakeCloud) -> None:
    """Route every httpx client (CloudClient's too) to ``cloud``."""
    transport = httpx.MockTransport(cloud)
    monkeypatch.setattr(httpx, "Client", partial(httpx.Client, transport=transport))


def test_post_enrols_sends_retries_and_a_resend_is_all_duplicates(monkeypatch):
    cloud = FakeCloud()
    serve(monkeypatch, cloud)
    sim = TelemetrySim(config(devices=3, days=1))
    total = len(all_events(sim))
    tokens: dict[str, str] = {}
    seen: list[tuple[int, int]] = []
    first = post(
        "http://cloud",
        "admin",
        sim,
        batch_size=250,
        tokens=tokens,
        backoff_s=0.0,
        progress=lambda d, n: seen.append((d, n)),
    )
    assert (first.accepted, first.duplicates, first.rejected, first.devices) == (total, 0, 0, 3)
    assert set(tokens) == {d.device_id for d in sim.devices} and seen[-1] == (3, total)
    again = post("http://cloud", "admin", sim.config, tokens=tokens, backoff_s=0.0)
    assert (again.accepted, again.duplicates) == (0, total)


@pytest.mark.parametrize(("status", "calls"), [(503, RETRIES + 1), (429, RETRIES + 1), (400, 1)])
def test_post_retries_only_server_errors_and_then_gives_up(monkeypatch, status, calls):
    cloud = FakeCloud(failures=100, status=status)
    serve(monkeypatch, cloud)
    with pytest.raises(ApiRefused) as refused:
        post("http://cloud", "admin", config(devices=1, days=1), backoff_s=0.0)
    assert refused.value.status == status and cloud.telemetry_calls == calls


def test_post_stops_cleanly_on_ctrl_c_and_keeps_the_tokens(monkeypatch):
    serve(monkeypatch, FakeCloud(failures=0))
    tokens: dict[str, str] = {}

    def interrupt(devices_done: int, events_sent: int) -> None:
        raise KeyboardInterrupt

    sim = TelemetrySim(config(devices=3, days=1))
    totals = post("http://cloud", "admin", sim, tokens=tokens, progress=interrupt)
    first_batch = min(500, len(list(sim.events(0))))
    assert totals.interrupted and totals.devices == 0 and totals.accepted == first_batch
    assert list(tokens) == ["sim-S001"]


# -- command line -----------------------------------------------------------------------------


def storecast_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storecast", "sim", "telemetry", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_out_writes_valid_jsonl(tmp_path):
    out = tmp_path / "t.jsonl"
    run = storecast_cli(
        "--devices",
        "2",
        "--days",
        "2",
        "--seed",
        "3",
        "--end",
        "2026-03-02T00",
        "--fault",
        "bad-agent",
        "--out",
        out,
    )
    assert run.returncode == 0, run.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 2 * 48 * 18 + sum(
        1 for line in lines if '"type":"model"' in line or '"type":"error"' in line
    )
    for i, line in enumerate(lines):
        assert not isinstance(validate_event(i, json.loads(line)), EventRejection)
    expected = all_events(TelemetrySim(config(devices=2, days=2, seed=3, fault="bad-agent")))
    assert [json.loads(line) for line in lines] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "2"], "exactly one of --out"),
        (["--out", "x.jsonl", "--url", "http://127.0.0.1:9"], "exactly one of --out"),
        (["--url", "http://127.0.0.1:9"], "needs --token"),
        (["--out", "x.jsonl", "--end", "2026-03-02"], "YYYY-MM-DDTHH"),
        (["--out", "x.jsonl", "--fault", "meteor"], "meteor"),
        (["--out", "x.jsonl", "--devices", "0"], "devices"),
        (["--out", "x.jsonl", "--days", "1", "--fault", "bad-model"], "fault_hours"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, args, message):
    run = storecast_cli(*[str(tmp_path / a) if a == "x.jsonl" else a for a in args])
    assert run.returncode == 2, run.stderr
    assert message in " ".join(run.stderr.split())
    assert not (tmp_path / "x.jsonl").exists()
