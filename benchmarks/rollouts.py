"""Canary rollouts at fleet scale: how fast a step change reaches polling devices, and how
fast the readout of a 10,000-store deployment answers.

propagation  ``storecast cloud serve`` (gunicorn, SQLite) with ``--devices`` enrolled
             devices, one per store, and a canary v1 -> v2 (steps 25, 50, 100 %) at its
             first step. As many simulated devices poll ``GET /v1/devices/{id}/assignment``
             with their own token and ``If-None-Match``, on the edge agent's schedule
             (interval x (1 + uniform(-jitter, jitter)), the updater's ``_next_delay``,
             with the agent's default interval and jitter: 60 s, 0.2), each from a random
             phase in the first interval. After that warm-up (and every device's first
             answer) the canary is promoted (``POST /v1/deployments/{id}/promote``: 25 ->
             50 %); for every device whose arm changed, the delay is from just before that
             request to the answer of its first poll showing the new arm, watched for 1.3
             intervals. Target: p95 delay <= 1.2 x the interval.
readout      a second cloud with ``--readout-stores`` enrolled devices (one per store) and a
             canary (25 % at its first step) that started ``--readout-hours`` ago, with
             that many hours of rollup rows for every store (``accuracy_hourly`` and
             ``inference_hourly`` for its arm's version, one ``model_events`` activation)
             written straight into the analytics tables with SQLAlchemy Core
             ``executemany``: ingesting ~1M store-hours through ``POST /v1/telemetry``
             would take far longer and measure ingest, not the readout. One controller tick
             (``storecast rollouts tick --home``) stores the readout snapshot; then
             ``--readout-requests`` sequential ``GET /v1/deployments/{id}/readout`` with a
             viewer token. Target: p95 <= 200 ms. The live computation (``?fresh=true``:
             what a reader pays when no recent snapshot is there) is timed as information.

Prints JSON with both figures, ``targets_met`` and the verdict; exit code 0 (pass), 1
(fail), 130 (Ctrl-C). ``--interval`` shortens the propagation run (the ratio is what is
judged; the default 60 s makes it last about three minutes).

    python benchmarks/rollouts.py [--devices 1000] [--interval 60] [--jitter 0.2]
        [--readout-stores 10000] [--readout-hours 48] [--readout-requests 200]
        [--workers 2] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import Progress

from _cloud import cloud_server, db_url, machine_load, mint_token
from registry_publish import (
    MODEL,
    RegistryHome,
    bench_progress,
    build_bench_bundle,
    init_home,
    restamp,
    run_and_report,
)
from storecast.edge.config import AgentSettings

AGENT = AgentSettings()  # the edge agent's defaults: poll interval and jitter
TARGET_P95_OVER_INTERVAL = 1.2
TARGET_READOUT_P95_MS = 200.0
THREADS = 4  # gunicorn threads per worker, as `storecast cloud serve` runs by default
REGIONS = ("north", "south", "east", "west")
OBSERVE_INTERVALS = 1.3  # how long after the step change polls are watched, in intervals
POLL_ENDPOINT = "devices.assignment"  # the poll's name in the Prometheus metrics
STEPS = (25.0, 50.0, 100.0)
HOLD_S = 30 * 86400  # each step's minimum duration: the controller never moves the canary


def percentiles(values: list[float], *qs: float) -> list[float]:
    """Nearest-rank percentiles (inf stays inf: a device that never saw the change)."""
    if not values:
        return [math.nan for _ in qs]
    return [float(np.percentile(values, q, method="inverted_cdf")) for q in qs]


def rounded(value: float, digits: int = 3) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else round(value, digits)


# -- a cloud with two versions and a canary ------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def publish_two_versions(url: str, admin: str, bundle: bytes, folder: Path) -> None:
    with httpx.Client(base_url=url, headers=auth(admin), timeout=120) as http:
        for version in (1, 2):
            response = http.post(
                "/v1/models",
                content=restamp(bundle, version, folder),
                headers={"Content-Type": "application/x-tar"},
            )
            if response.status_code != 201:
                raise RuntimeError(f"publish v{version}: {response.status_code} {response.text}")


def create_canary(url: str, admin: str) -> int:
    """A canary v1 (A) -> v2 (B) over every store, held at its first step."""
    step = {"min_duration_s": HOLD_S, "min_forecast_hours": 1, "min_inferences": 1}
    body = {
        "model": MODEL,
        "control": {"version": 1},
        "candidate": {"version": 2},
        "strategy": {"kind": "canary", "steps": [{"percent": p, **step} for p in STEPS]},
    }
    response = httpx.post(f"{url}/v1/deployments", json=body, headers=auth(admin), timeout=60)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/deployments: {response.status_code} {response.text}")
    return int(response.json()["id"])


# -- 1. a step change reaching polling devices ----------------------------------------------


@dataclass
class PollingDevice:
    """One simulated device: its credentials, what it last saw, every poll it made."""

    device_id: str
    token: str
    etag: str = ""
    arm: str | None = None
    polls: list[Poll] = field(default_factory=list)


@dataclass(frozen=True)
class Poll:
    sent: float  # time.monotonic()
    received: float
    status: int  # 0: no answer (connection error, timeout)
    arm: str | None  # the arm the device runs after this poll


def enrol_devices(url: str, admin: str, count: int, progress: Progress) -> list[PollingDevice]:
    """Enrol ``count`` devices (one per store) through the API; each gets its token."""
    task = progress.add_task("enrolling devices", total=count)
    with httpx.Client(base_url=url, headers=auth(admin), timeout=60) as http:

        def enrol(i: int) -> PollingDevice:
            device_id = f"dev-{i:05d}"
            body = {"device_id": device_id, "store_id": f"S{i:05d}", "region": REGIONS[i % 4]}
            response = http.post("/v1/devices", json=body)
            response.raise_for_status()
            progress.advance(task)
            return PollingDevice(device_id, str(response.json()["token"]))

        with ThreadPoolExecutor(8) as pool:
            devices = list(pool.map(enrol, range(count)))
    progress.remove_task(task)
    return devices


async def poll_once(client: httpx.AsyncClient, device: PollingDevice) -> None:
    headers = auth(device.token)
    if device.etag:
        headers["If-None-Match"] = device.etag
    sent = time.monotonic()
    try:
        response = await client.get(f"/v1/devices/{device.device_id}/assignment", headers=headers)
    except httpx.HTTPError:
        device.polls.append(Poll(sent, time.monotonic(), 0, device.arm))
        return
    received = time.monotonic()
    if response.status_code == 200:
        device.etag = response.headers.get("ETag", "")
        device.arm = response.json().get("arm")
    device.polls.append(Poll(sent, received, response.status_code, device.arm))


async def run_device(
    client: httpx.AsyncClient,
    device: PollingDevice,
    rng: random.Random,
    interval: float,
    jitter: float,
    stop: asyncio.Event,
) -> None:
    """Poll from a random phase, then every interval x (1 + uniform(-jitter, jitter))."""
    delay = rng.uniform(0, interval)
    while True:
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        await poll_once(client, device)
        delay = interval * (1.0 + rng.uniform(-jitter, jitter))


async def drive_fleet(
    url: str,
    admin: str,
    deployment: int,
    devices: list[PollingDevice],
    args: argparse.Namespace,
    progress: Progress,
) -> tuple[float, dict[str, str | None]]:
    """Run the fleet; promote after one interval. Returns when the promote was sent and
    every device's arm just before it."""
    interval = args.interval
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    total = interval * (1 + OBSERVE_INTERVALS)
    task = progress.add_task("warm-up: devices polling", total=round(total))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        master = random.Random(args.seed)
        runners = [
            asyncio.create_task(
                run_device(
                    client, d, random.Random(master.getrandbits(64)), interval, args.jitter, stop
                )
            )
            for d in devices
        ]
        started = time.monotonic()
        try:
            await _tick_progress(progress, task, started, interval)
            # A device whose phase fell at the very end of the warm-up has its first answer
            # on the way: wait for it (at most a tenth of an interval), so every device has
            # an arm before the change.
            deadline = time.monotonic() + interval / 10
            while any(not d.polls for d in devices) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            before = {d.device_id: d.arm for d in devices}
            changed_at = time.monotonic()
            response = await client.post(
                f"/v1/deployments/{deployment}/promote",
                json={"reason": "benchmark: step change"},
                headers=auth(admin),
            )
            if response.status_code != 200:
                raise RuntimeError(f"promote: {response.status_code} {response.text}")
            progress.update(task, description="after the step change")
            await _tick_progress(progress, task, started, total)
        finally:
            stop.set()
            await asyncio.gather(*runners, return_exceptions=True)
    progress.remove_task(task)
    return changed_at, before


async def _tick_progress(progress: Progress, task: Any, started: float, until_s: float) -> None:
    while (elapsed := time.monotonic() - started) < until_s:
        progress.update(task, completed=round(elapsed))
        await asyncio.sleep(min(1.0, until_s - elapsed))


def arms_now(url: str, devices: list[PollingDevice]) -> dict[str, str | None]:
    """Each device's arm as the registry answers it now (no ETag): the ground truth."""
    with httpx.Client(base_url=url, timeout=60) as http:

        def arm(device: PollingDevice) -> str | None:
            response = http.get(
                f"/v1/devices/{device.device_id}/assignment", headers=auth(device.token)
            )
            response.raise_for_status()
            found = response.json().get("arm")
            return None if found is None else str(found)

        with ThreadPoolExecutor(8) as pool:
            return dict(zip((d.device_id for d in devices), pool.map(arm, devices), strict=True))


def poll_latency_histogram(url: str) -> dict[float, float]:
    """Cumulative server-side counts per bucket bound of the poll's latency histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "storecast_http_request_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("endpoint") == POLL_ENDPOINT:
                bound = float(sample.labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
    return counts


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket holding the quantile."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        if cumulative[bound] >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative[bound]
    return lower


def propagation(
    args: argparse.Namespace, folder: Path, bundle: bytes, console: Console
) -> dict[str, Any]:
    home = init_home(folder / "propagation")
    with (
        console.status(f"propagation: starting `storecast cloud serve` ({args.workers} workers)"),
        cloud_server(home, workers=args.workers, threads=THREADS) as server,
    ):
        publish_two_versions(server.url, home.admin_token, bundle, folder)
        with bench_progress(console) as progress:
            devices = enrol_devices(server.url, home.admin_token, args.devices, progress)
        deployment = create_canary(server.url, home.admin_token)
        histogram_before = poll_latency_histogram(server.url)
        with bench_progress(console) as progress:
            changed_at, before = asyncio.run(
                drive_fleet(server.url, home.admin_token, deployment, devices, args, progress)
            )
        histogram_after = poll_latency_histogram(server.url)
        after = arms_now(server.url, devices)
    return propagation_figures(
        args, devices, changed_at, before, after, histogram_before, histogram_after
    )


def propagation_figures(
    args: argparse.Namespace,
    devices: list[PollingDevice],
    changed_at: float,
    before: dict[str, str | None],
    after: dict[str, str | None],
    histogram_before: dict[float, float],
    histogram_after: dict[float, float],
) -> dict[str, Any]:
    unknown = [d for d in devices if before[d.device_id] is None]
    affected = [d for d in devices if before[d.device_id] not in (None, after[d.device_id])]
    delays = []
    for device in affected:
        seen = [
            p.received - changed_at
            for p in device.polls
            if p.received >= changed_at and p.arm == after[device.device_id]
        ]
        delays.append(seen[0] if seen else math.inf)
    ratios = [d / args.interval for d in delays]
    p50, p95, worst = percentiles(ratios, 50, 95, 100)
    polls = [p for d in devices for p in d.polls]
    answered = [p for p in polls if p.status]
    latency_ms = [(p.received - p.sent) * 1e3 for p in answered]
    client_p50, client_p95 = percentiles(latency_ms, 50, 95)
    server = {
        bound: histogram_after.get(bound, 0.0) - histogram_before.get(bound, 0.0)
        for bound in histogram_after
    }
    server_p50, server_p95 = (histogram_quantile(q, server) for q in (0.5, 0.95))
    moved = {f"{before[d.device_id]}->{after[d.device_id]}" for d in affected}
    return {
        "devices": len(devices),
        "poll_interval_s": args.interval,
        "jitter": args.jitter,
        "step_change": f"{STEPS[0]:g} % -> {STEPS[1]:g} % of stores on B (POST .../promote)",
        "devices_without_a_poll_before_the_change": len(unknown),
        "affected_devices": len(affected),
        "moves": sorted(moved),
        "saw_the_change": sum(1 for d in delays if not math.isinf(d)),
        "delay_s": {
            "p50": rounded(p50 * args.interval, 2),
            "p95": rounded(p95 * args.interval, 2),
            "max": rounded(worst * args.interval, 2),
        },
        "delay_over_interval": {"p50": rounded(p50), "p95": rounded(p95), "max": rounded(worst)},
        "polls": len(polls),
        "polls_304": sum(1 for p in polls if p.status == 304),
        "polls_200": sum(1 for p in polls if p.status == 200),
        "polls_failed": sum(1 for p in polls if p.status not in (200, 304)),
        "poll_latency_ms": {
            "server": {
                "p50": None if server_p50 is None else round(server_p50 * 1e3, 2),
                "p95": None if server_p95 is None else round(server_p95 * 1e3, 2),
                "from": "the cloud's storecast_http_request_seconds histogram for "
                f"{POLL_ENDPOINT} over the run, interpolated within its buckets",
            },
            "client_round_trip": {"p50": rounded(client_p50, 2), "p95": rounded(client_p95, 2)},
        },
    }


# -- 2. the readout of a 10,000-store deployment -------------------------------------------


def backdate(database_url: str, deployment: int, started: datetime) -> None:
    """Make the canary look as if it started (and its first step began) at ``started``."""
    from sqlalchemy import update

    from storecast.common.db import make_engine
    from storecast.registry.tables import DeploymentRow

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(DeploymentRow.__table__)
                .where(DeploymentRow.__table__.c.id == deployment)
                .values(created_at=started, step_started_at=started, updated_at=started)
            )
    finally:
        engine.dispose()


def store_arms(database_url: str, deployment: int) -> dict[str, list[str]]:
    """The stores of each arm, as the registry splits them (its own code)."""
    from storecast.common.clock import SystemClock
    from storecast.common.cloud import Database
    from storecast.registry.deployments import deployment_stores, spec_of, stores_by_arm
    from storecast.registry.tables import DeploymentRow

    database = Database.connect(database_url, SystemClock())
    try:
        with database.transaction() as session:
            row = session.get(DeploymentRow, deployment)
            if row is None:
                raise RuntimeError(f"deployment {deployment} is gone")
            return stores_by_arm(spec_of(row), deployment_stores(session, row))
    finally:
        database.engine.dispose()


def enrol_in_bulk(database_url: str, stores: int, when: datetime) -> None:
    """``stores`` enrolled devices, one per store, written as rows (no tokens: they never
    poll here)."""
    from sqlalchemy import insert

    from storecast.common.db import make_engine
    from storecast.registry.tables import DeviceRow

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(DeviceRow.__table__),
                [
                    {
                        "device_id": f"dev-{i:05d}",
                        "store_id": f"S{i:05d}",
                        "region": REGIONS[i % 4],
                        "tags_json": "[]",
                        "enrolled_at": when,
                        "enrolled_by": "bench",
                    }
                    for i in range(stores)
                ],
            )
    finally:
        engine.dispose()


def write_rollups(
    database_url: str,
    arms: dict[str, list[str]],
    hours: int,
    started: datetime,
    seed: int,
    progress: Progress,
) -> dict[str, int]:
    """``hours`` hours of rollups from ``started`` for every store, for its arm's version
    (A: v1, B: v2, slightly more accurate), and one activation each: SQLAlchemy Core
    ``executemany``, one hour of every store per statement. Returns rows per table."""
    from sqlalchemy import insert

    from storecast.analytics.tables import (
        BUCKET_COLUMNS,
        AccuracyHourlyRow,
        InferenceHourlyRow,
        ModelEventRow,
    )
    from storecast.common.db import make_engine

    rng = np.random.default_rng(seed)
    stores = [(store, 1 if arm == "A" else 2) for arm, names in arms.items() for store in names]
    size = rng.uniform(10, 60, len(stores))  # mean sales per hour
    skill = rng.uniform(0.08, 0.16, len(stores)) * np.where(
        np.array([v for _, v in stores]) == 2, 0.95, 1.0
    )  # the store's WAPE
    points = 24  # paired forecast points per store-hour (every horizon of the day's origins)
    engine = make_engine(database_url)
    task = progress.add_task("writing rollup rows", total=hours)
    rows = {"accuracy_hourly": 0, "inference_hourly": 0, "model_events": 0}
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(ModelEventRow.__table__),
                [
                    {
                        "event_id": str(uuid.uuid4()),
                        "ts": started + timedelta(minutes=1),
                        "device_id": f"dev-{store[1:]}",
                        "store_id": store,
                        "action": "activated",
                        "model_name": MODEL,
                        "model_version": version,
                        "agent_version": "bench",
                    }
                    for store, version in stores
                ],
            )
            rows["model_events"] += len(stores)
        for h in range(hours):
            hour = started + timedelta(hours=h)
            actual = size * rng.uniform(0.7, 1.3, len(stores)) * points
            error = actual * skill * rng.uniform(0.5, 1.5, len(stores))
            accuracy = [
                {
                    "hour": hour,
                    "store_id": store,
                    "model_name": MODEL,
                    "model_version": version,
                    "agent_version": "bench",
                    "points": points,
                    "sum_actual": float(actual[i]),
                    "sum_q50": float(actual[i] + error[i] * (1 if (i + h) % 2 else -1)),
                    "sum_abs_err": float(error[i]),
                    "covered": 19,
                }
                for i, (store, version) in enumerate(stores)
            ]
            hist = dict.fromkeys(BUCKET_COLUMNS, 0)
            inference = [
                {
                    "hour": hour,
                    "store_id": store,
                    "model_name": MODEL,
                    "model_version": version,
                    "agent_version": "bench",
                    "count": 60,
                    "errors": 0,
                    **hist,
                    BUCKET_COLUMNS[6]: 60,
                }
                for store, version in stores
            ]
            with engine.begin() as conn:
                conn.execute(insert(AccuracyHourlyRow.__table__), accuracy)
                conn.execute(insert(InferenceHourlyRow.__table__), inference)
            rows["accuracy_hourly"] += len(accuracy)
            rows["inference_hourly"] += len(inference)
            progress.advance(task)
    finally:
        engine.dispose()
        progress.remove_task(task)
    return rows


def controller_tick(home: RegistryHome) -> tuple[float, str]:
    """``storecast rollouts tick --home``: its wall time and what it printed."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("STORECAST_DATABASE_URL", None)
    if home.database_url:
        env["STORECAST_DATABASE_URL"] = home.database_url
    command = [sys.executable, "-m", "storecast", "rollouts", "tick", "--home", str(home.home)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`storecast rollouts tick` failed: {done.stdout}{done.stderr}")
    return seconds, done.stdout.strip()


def time_readouts(
    http: httpx.Client, path: str, count: int, progress: Progress, **params: str
) -> tuple[list[float], dict[str, int]]:
    """``count`` sequential GETs of ``path``: seconds each, and how many came from where."""
    task = progress.add_task(f"GET {path}{'?fresh=true' if params else ''}", total=count)
    seconds, sources = [], {"snapshot": 0, "live": 0}
    for _ in range(count):
        started = time.perf_counter()
        response = http.get(path, params=params)
        seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
        sources[response.json()["source"]] += 1
        progress.advance(task)
    progress.remove_task(task)
    return seconds, sources


def readout(
    args: argparse.Namespace, folder: Path, bundle: bytes, console: Console
) -> dict[str, Any]:
    home = init_home(folder / "readout")
    url = db_url(home)
    started = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=args.readout_hours
    )
    with console.status(f"readout: enrolling {args.readout_stores:,} devices (rows)"):
        enrol_in_bulk(url, args.readout_stores, started - timedelta(days=1))
    with (
        console.status(f"readout: starting `storecast cloud serve` ({args.workers} workers)"),
        cloud_server(home, workers=args.workers, threads=THREADS) as server,
    ):
        publish_two_versions(server.url, home.admin_token, bundle, folder)
        deployment = create_canary(server.url, home.admin_token)
        backdate(url, deployment, started)
        arms = store_arms(url, deployment)
        with bench_progress(console) as progress:
            rows = write_rollups(url, arms, args.readout_hours, started, args.seed, progress)
        with console.status("readout: one controller tick (`storecast rollouts tick`)"):
            tick_s, tick_said = controller_tick(home)
        viewer = mint_token(server.url, home.admin_token, "viewer")
        path = f"/v1/deployments/{deployment}/readout"
        with (
            httpx.Client(base_url=server.url, headers=auth(viewer), timeout=120) as http,
            bench_progress(console) as progress,
        ):
            snapshot_s, sources = time_readouts(http, path, args.readout_requests, progress)
            live_s, live_sources = time_readouts(
                http, path, args.live_requests, progress, fresh="true"
            )
            last = http.get(path).json()
    p50, p95, worst = percentiles([s * 1e3 for s in snapshot_s], 50, 95, 100)
    live_p50, live_worst = percentiles(live_s, 50, 100)
    return {
        "stores": args.readout_stores,
        "hours": args.readout_hours,
        "stores_per_arm": {arm: len(names) for arm, names in arms.items()},
        "rollup_rows": rows,
        "rows_written_with": "SQLAlchemy Core executemany into the analytics tables "
        "(not POST /v1/telemetry: that would measure ingest)",
        "controller_tick": {"seconds": round(tick_s, 2), "said": tick_said.splitlines()},
        "requests": args.readout_requests,
        "sources": sources,
        "latency_ms": {"p50": rounded(p50, 1), "p95": rounded(p95, 1), "max": rounded(worst, 1)},
        "live_computation_s": {
            "requests": args.live_requests,
            "p50": rounded(live_p50, 2),
            "max": rounded(live_worst, 2),
            "sources": live_sources,
            "note": "GET ?fresh=true: the evidence aggregated from the rollups now, what a "
            "reader pays when no recent snapshot is there (information, not a target)",
        },
        "verdict_in_readout": last["verdict"],
        "readout_arms": {
            a["arm"]: {"stores": a["stores"], "forecast_hours": a["forecast_hours"]}
            for a in last["arms"]
        },
    }


# -- the benchmark ---------------------------------------------------------------------------


def run(args: argparse.Namespace, folder: Path, console: Console) -> dict[str, Any]:
    with console.status("training a tiny model and building its bundle"):
        bundle = build_bench_bundle(folder, hidden=16)
    moved = propagation(args, folder, bundle, console)
    read = readout(args, folder, bundle, console)
    ratio = moved["delay_over_interval"]["p95"]
    return {
        "benchmark": "rollouts",
        "database": "sqlite",
        "gunicorn": {"workers": args.workers, "threads": THREADS, "worker_class": "gthread"},
        "propagation": moved,
        "readout": read,
        "machine_load": machine_load(),
        "targets": {
            "propagation_p95_over_interval": TARGET_P95_OVER_INTERVAL,
            "readout_p95_ms": TARGET_READOUT_P95_MS,
        },
        "targets_met": {
            "propagation_p95_over_interval": ratio is not None
            and ratio <= TARGET_P95_OVER_INTERVAL,
            "readout_p95_ms": read["latency_ms"]["p95"] is not None
            and read["latency_ms"]["p95"] <= TARGET_READOUT_P95_MS,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000, help="polling devices")
    parser.add_argument(
        "--interval", type=float, default=AGENT.poll_interval_s, help="poll interval, seconds"
    )
    parser.add_argument(
        "--jitter", type=float, default=AGENT.poll_jitter, help="± share of the interval"
    )
    parser.add_argument("--readout-stores", type=int, default=10_000)
    parser.add_argument("--readout-hours", type=int, default=48)
    parser.add_argument("--readout-requests", type=int, default=200, help="timed GETs")
    parser.add_argument("--live-requests", type=int, default=5, help="timed ?fresh=true GETs")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run_and_report(run, args)


if __name__ == "__main__":
    sys.exit(main())
