"""Telemetry ingestion end to end: events/s over HTTP into SQLite and into PostgreSQL.

For each database: a fresh cloud (``storecast registry init``) served by
``storecast cloud serve`` (gunicorn, ``--workers`` x 4 threads), ``--devices`` devices
enrolled through ``POST /v1/devices``, and their telemetry from the simulator
(``storecast.sim.telemetry``) with what the edge agent really sends: a heartbeat and an
inference window every minute, a forecast (24 points) and an actual every hour.
``--events`` events are generated and encoded into batches of 500 before any timing, so
the client only writes bytes and reads answers: ``--senders`` threads, each with one
keep-alive ``http.client`` connection, each owning some devices whose batches it sends
in order, as devices do. Sending stops at ``--max-seconds`` if the events last longer.

Then the figures are checked against the database itself: stored events, the rollups
(requests served, forecast points, actuals, device states) equal what was sent, and a
batch sent again is acknowledged as all duplicates and stores nothing.

When a target is missed, the same batches also go through ``ingest_batch`` in-process,
on one thread, with the garbage collector set as in the server's workers, to show where
the server's time goes (``profile`` in the JSON; add ``--cprofile`` for the hottest
functions).

Prints JSON: events/s, batches/s, p50/p99 batch latency, errors, CPU per event of the
server (gunicorn), of PostgreSQL's backends and of the client, how many cores each and
everyone else on this shared machine kept busy, the checks, and the verdict. Targets on
the 2-core machine: >= 50,000 events/s into SQLite, >= 30,000 into PostgreSQL.

    python benchmarks/ingest.py [--devices 50] [--events 1500000] [--senders 8]
        [--workers 2] [--max-seconds 120] [--skip-postgres] [--postgres-admin-url URL]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import text

from _cloud import (
    BATCH_EVENTS,
    EVENTS_PER_DEVICE_DAY,
    POSTGRES_ADMIN_URL,
    THREADS,
    CpuSample,
    cloud_server,
    database_size,
    db_url,
    edge_sim_config,
    enrol_in_database,
    machine_load,
    post_json,
    postgres_unreachable,
    scratch_database,
)
from registry_publish import RegistryHome, Server, bench_progress, init_home, run_and_report
from storecast.common.clock import SystemClock
from storecast.common.cloud import Database
from storecast.forecasting.schema import HORIZON
from storecast.sim.sender import batches
from storecast.sim.telemetry import Event, SimDevice, TelemetrySim, TelemetrySimConfig

TARGETS = {"sqlite": 50_000, "postgresql": 30_000}  # events/s
PROFILE_EVENTS = 100_000  # events (from the start of each device's stream) profiled
TELEMETRY = "/v1/telemetry"


# -- the events, generated and encoded before any timing ----------------------------------


@dataclass(frozen=True)
class Batch:
    """One request body and what it holds (to check the rollups against)."""

    device: int  # index into Traffic.devices
    events: int
    requests_served: int  # sum of the inference events' counts
    forecasts: int
    actuals: int
    body: bytes


@dataclass(frozen=True)
class Traffic:
    """Every device's batches, in the order the device sends them."""

    config: TelemetrySimConfig
    devices: tuple[SimDevice, ...]
    batches: tuple[tuple[Batch, ...], ...]  # per device

    @property
    def events(self) -> int:
        return sum(b.events for device in self.batches for b in device)

    @property
    def bytes(self) -> int:
        return sum(len(b.body) for device in self.batches for b in device)


def _batch(device: int, events: list[Event]) -> Batch:
    encoded = list(batches(events, BATCH_EVENTS))
    if len(encoded) != 1:
        raise RuntimeError(f"{len(events)} events did not fit one request body")
    return Batch(
        device=device,
        events=len(events),
        requests_served=sum(e["payload"]["count"] for e in events if e["type"] == "inference"),
        forecasts=sum(e["type"] == "forecast" for e in events),
        actuals=sum(e["type"] == "actual" for e in events),
        body=encoded[0][1],
    )


def generate_traffic(devices: int, events: int, seed: int, progress: Progress) -> Traffic:
    """``events`` events of ``devices`` devices (as many each), as batches of 500."""
    per_device = math.ceil(events / devices)
    config = edge_sim_config(devices, math.ceil(per_device / EVENTS_PER_DEVICE_DAY) + 1, seed)
    sim = TelemetrySim(config)
    task = progress.add_task("generating and encoding events", total=per_device * devices)
    per_device_batches: list[tuple[Batch, ...]] = []
    for index, (_, stream) in enumerate(sim.streams()):
        found: list[Batch] = []
        events_left = islice(stream, per_device)
        while chunk := list(islice(events_left, BATCH_EVENTS)):
            found.append(_batch(index, chunk))
            progress.advance(task, len(chunk))
        per_device_batches.append(tuple(found))
    progress.remove_task(task)
    return Traffic(config, sim.devices, tuple(per_device_batches))


# -- sending --------------------------------------------------------------------------------


@dataclass
class Sent:
    """What one sender (or all of them) sent and was told."""

    batches: list[Batch] = field(default_factory=list)  # answered 200
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: int = 0  # transport errors and non-200 answers
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)  # seconds, per answered batch

    def add(self, other: Sent) -> None:
        self.batches += other.batches
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.latencies += other.latencies

    @property
    def events(self) -> int:
        return sum(b.events for b in self.batches)


class Sender:
    """One keep-alive connection sending its devices' batches, each device's in order."""

    def __init__(self, url: str, queue: list[Batch], tokens: list[str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port
        self.queue = queue
        self.headers = [
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            for token in tokens
        ]
        self.sent = Sent()

    def run(self, start: threading.Barrier, seconds: float, advance: Callable[[int], None]) -> None:
        """Connect, wait for every sender, then send until done or ``seconds`` are up."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        conn.connect()
        start.wait()
        until = time.monotonic() + seconds
        try:
            for batch in self.queue:
                if time.monotonic() >= until:
                    break
                self._send(conn, batch)
                advance(batch.events)
        finally:
            conn.close()

    def _send(self, conn: http.client.HTTPConnection, batch: Batch) -> None:
        sent = self.sent
        started = time.perf_counter()
        try:
            conn.request("POST", TELEMETRY, batch.body, self.headers[batch.device])
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # http.client reconnects on the next request
            sent.errors += 1
            sent.first_error = sent.first_error or f"{type(exc).__name__}: {exc}"
            return
        sent.latencies.append(time.perf_counter() - started)
        if response.status != 200:
            sent.errors += 1
            sent.first_error = sent.first_error or f"{response.status} {answer[:300]!r}"
            return
        ack = json.loads(answer)
        sent.batches.append(batch)
        sent.accepted += ack["accepted"]
        sent.duplicates += ack["duplicates"]
        sent.rejected += len(ack["rejected"])


def deal(traffic: Traffic, senders: int) -> list[list[Batch]]:
    """Each sender's queue: its devices (every ``senders``-th) taking turns, batch by batch."""
    queues: list[list[Batch]] = []
    for s in range(senders):
        mine = traffic.batches[s::senders]
        rounds = max((len(device) for device in mine), default=0)
        queues.append([device[r] for r in range(rounds) for device in mine if r < len(device)])
    return queues


@dataclass(frozen=True)
class Load:
    """One sending run: what was sent and answered, its wall time and who used the CPU."""

    sent: Sent
    seconds: float
    cpu: CpuSample  # seconds over the run


def send_all(
    server: Server,
    database_url: str,
    traffic: Traffic,
    tokens: list[str],
    args: argparse.Namespace,
    progress: Progress,
) -> Load:
    """Send every batch from ``args.senders`` threads; wall time from the common start."""
    senders = [Sender(server.url, queue, tokens) for queue in deal(traffic, args.senders)]
    task = progress.add_task("sending", total=traffic.events)
    start = threading.Barrier(len(senders) + 1)

    def advance(events: int) -> None:
        progress.advance(task, events)

    threads = [
        threading.Thread(target=s.run, args=(start, args.max_seconds, advance), daemon=True)
        for s in senders
    ]
    for thread in threads:
        thread.start()
    start.wait()  # every sender is connected
    began, cpu_before = time.perf_counter(), CpuSample.take(server, database_url)
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    cpu = CpuSample.take(server, database_url) - cpu_before
    progress.remove_task(task)
    total = Sent()
    for s in senders:
        total.add(s.sent)
    return Load(total, seconds, cpu)


def enrol(url: str, admin_token: str, devices: tuple[SimDevice, ...]) -> list[str]:
    """Enrol every device (``POST /v1/devices``); their tokens, in device order."""
    tokens = []
    for device in devices:
        body = {
            "device_id": device.device_id,
            "store_id": device.store_id,
            "region": device.region,
            "tags": ["bench"],
        }
        tokens.append(str(post_json(url, "/v1/devices", admin_token, body)["token"]))
    return tokens


# -- checking what the server stored --------------------------------------------------------

_STORED = {
    "events": "SELECT count(*) FROM telemetry_events",
    "batch_events": "SELECT coalesce(sum(events), 0) FROM telemetry_batches",
    "requests_served": "SELECT coalesce(sum(count), 0) FROM inference_hourly",
    "forecast_points": "SELECT count(*) FROM forecast_points",
    "actuals": "SELECT count(*) FROM store_actuals",
    "device_states": "SELECT count(*) FROM device_state",
}


def stored_counts(home: RegistryHome) -> dict[str, int]:
    """What the database holds, counted directly (not through the API)."""
    from storecast.common.db import make_engine

    engine = make_engine(db_url(home))
    try:
        with engine.connect() as conn:
            return {name: int(conn.execute(text(q)).scalar_one()) for name, q in _STORED.items()}
    finally:
        engine.dispose()


def verify(home: RegistryHome, server: Server, load: Load, tokens: list[str]) -> dict[str, Any]:
    """The database against what was acknowledged; then one batch sent again."""
    sent = load.sent
    expected = {
        "events": sent.events,
        "batch_events": sent.events,
        "requests_served": sum(b.requests_served for b in sent.batches),
        "forecast_points": HORIZON * sum(b.forecasts for b in sent.batches),
        "actuals": sum(b.actuals for b in sent.batches),  # one device per store
        "device_states": len({b.device for b in sent.batches}),
    }
    stored = stored_counts(home)
    again: dict[str, Any] = {}
    if sent.batches:
        batch = sent.batches[0]
        sender = Sender(server.url, [batch], tokens)
        sender.run(threading.Barrier(1), 60, lambda _: None)
        again = {
            "events": batch.events,
            "accepted": sender.sent.accepted,
            "duplicates": sender.sent.duplicates,
            "stored_events_after": stored_counts(home)["events"],
        }
    checks = {
        "all_accepted": sent.accepted == sent.events and sent.duplicates == 0,
        "nothing_rejected": sent.rejected == 0 and sent.errors == 0,
        "stored_equals_sent": stored == expected,
        "resend_is_duplicates": bool(again)
        and again["accepted"] == 0
        and again["duplicates"] == again["events"]
        and again["stored_events_after"] == stored["events"],
    }
    return {"expected": expected, "stored": stored, "resend": again, "checks": checks}


# -- where the server's time goes: ingest_batch in-process ----------------------------------


def _sample(traffic: Traffic, events: int) -> list[Batch]:
    """The first batches of every device, in the order the senders interleave them."""
    picked: list[Batch] = []
    rounds = max(len(device) for device in traffic.batches)
    for r in range(rounds):
        for device in traffic.batches:
            if r < len(device):
                picked.append(device[r])
                if sum(b.events for b in picked) >= events:
                    return picked
    return picked


@contextmanager
def _ingest_database(kind: str, admin_url: str, traffic: Traffic) -> Iterator[Database]:
    """A fresh cloud database of ``kind`` with the fleet enrolled."""
    with tempfile.TemporaryDirectory() as tmp, scratch_database(kind, admin_url) as url:
        home = init_home(Path(tmp), url)
        database = Database.connect(db_url(home), SystemClock())
        try:
            enrol_in_database(database, traffic.devices)
            yield database
        finally:
            database.engine.dispose()


class _Phases:
    """Wall and CPU time spent in each step of ``ingest_batch`` (wrappers around its parts).

    CPU time (this thread's) is what the step costs; wall time also counts waiting, for
    I/O and, on this shared machine, for a core.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.step(name):
                return fn(*args, **kwargs)

        return timed

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = self.mark()
        try:
            yield
        finally:
            self.add_since(name, started)

    @staticmethod
    def mark() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    def add_since(self, name: str, mark: tuple[float, float]) -> None:
        wall, cpu = self.mark()
        self.wall[name] = self.wall.get(name, 0.0) + wall - mark[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - mark[1]


# The parts of ``ingest_batch`` timed apart: (module attribute, step). Parts missing from
# the module (renamed while ingestion is being optimised) are left in "other".
_STEPS = (
    ("enrolled_store", "device_lookup"),
    ("screen_batch", "parse_and_validate"),
    ("_store_raw", "raw_store"),
)


def _ingest_all(database: Database, traffic: Traffic, sample: list[Batch], phases: _Phases) -> None:
    """Each batch in its own write transaction, as the endpoint does."""
    from storecast.analytics.ingest import ingest_batch

    for batch in sample:
        device_id = traffic.devices[batch.device].device_id
        with phases.step("total"):
            opened = phases.mark()
            with database.transaction(write=True) as session:  # BEGIN (IMMEDIATE on SQLite)
                phases.add_since("begin", opened)
                with phases.step("ingest_batch"):
                    ingest_batch(session, device_id, batch.body, database.clock.now())
                returned = phases.mark()
            phases.add_since("commit", returned)


@contextmanager
def _as_in_a_worker() -> Iterator[None]:
    """The garbage collector set as the server's workers set it (``serving.GC_THRESHOLDS``),
    restored afterwards."""
    from storecast.common.serving import GC_THRESHOLDS

    saved = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def profile(kind: str, traffic: Traffic, args: argparse.Namespace) -> dict[str, Any]:
    """``ingest_batch`` on one thread, no HTTP: events/s and microseconds/event by step."""
    from storecast.analytics import ingest
    from storecast.analytics.rollups import Rollup

    sample = _sample(traffic, PROFILE_EVENTS)
    events = sum(b.events for b in sample)
    phases = _Phases()
    patches = [
        mock.patch.object(ingest, name, phases.wrap(step, getattr(ingest, name)))
        for name, step in _STEPS
        if hasattr(ingest, name)
    ]
    patches.append(mock.patch.object(Rollup, "apply", phases.wrap("rollups", Rollup.apply)))
    with _ingest_database(kind, args.postgres_admin_url, traffic) as database:
        for patch in patches:
            patch.start()
        try:
            with _as_in_a_worker():
                _ingest_all(database, traffic, sample, phases)
        finally:
            for patch in patches:
                patch.stop()

    def per_event(seconds: dict[str, float]) -> dict[str, float]:
        steps = dict(seconds)
        total, inside = steps.pop("total"), steps.pop("ingest_batch")
        parts = [step for _, step in (*_STEPS, ("", "rollups")) if step in steps]
        steps["other_in_ingest_batch"] = inside - sum(steps[step] for step in parts)
        steps["total"] = total
        return {step: round(s / events * 1e6, 1) for step, s in steps.items()}

    result: dict[str, Any] = {
        "events": events,
        "events_per_s_one_thread": round(events / phases.wall["total"]),
        "cpu_us_per_event": per_event(phases.cpu),
        "wall_us_per_event": per_event(phases.wall),
    }
    if args.cprofile:
        result["hottest"] = _cprofile(kind, traffic, sample, args)
    return result


def _cprofile(
    kind: str, traffic: Traffic, sample: list[Batch], args: argparse.Namespace
) -> list[str]:
    """The functions with the most own time over the sample (a fresh database again)."""
    events = sum(b.events for b in sample)
    profiler = cProfile.Profile()
    with (
        _ingest_database(kind, args.postgres_admin_url, traffic) as database,
        _as_in_a_worker(),
    ):
        profiler.enable()
        _ingest_all(database, traffic, sample, _Phases())
        profiler.disable()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    hottest = []
    for (path, line, name), (_, calls, own, cumulative, _) in rows[:15]:
        where = f"{Path(path).name}:{line}({name})" if line else name
        hottest.append(
            f"{where}: own {own / events * 1e6:.1f} us/event, "
            f"cum {cumulative / events * 1e6:.1f}, {calls} calls"
        )
    return hottest


# -- the benchmark ---------------------------------------------------------------------------


def _percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 1) if ordered else 0


def cpu_figures(load: Load, events: int) -> dict[str, Any]:
    """Who used the CPU while sending: microseconds per event and cores kept busy."""
    cpu = load.cpu
    parts = {"server": cpu.server, "postgres": cpu.database, "client": cpu.client}
    spent = {name: seconds for name, seconds in parts.items() if seconds is not None}
    ours = sum(spent.values())
    return {
        **{f"{name}_cpu_us_per_event": round(s / events * 1e6, 1) for name, s in spent.items()},
        **{f"{name}_cores_busy": round(s / load.seconds, 2) for name, s in spent.items()},
        "machine_cores_busy": round(cpu.machine / load.seconds, 2),
        "others_cores_busy": round(max(cpu.machine - ours, 0.0) / load.seconds, 2),
        # what the CPU spent per event allows on every core, were nothing else running
        "cpu_bound_events_per_s": round((os.cpu_count() or 1) * events / ours) if ours else None,
    }


def measure(
    kind: str, traffic: Traffic, args: argparse.Namespace, folder: Path, console: Console
) -> dict[str, Any]:
    """One database: serve, enrol, send everything, check what was stored."""
    with scratch_database(kind, args.postgres_admin_url) as url:
        home = init_home(folder / kind, url)
        with cloud_server(home, workers=args.workers, threads=args.threads) as server:
            with console.status(f"{kind}: enrolling {len(traffic.devices)} devices"):
                tokens = enrol(server.url, home.admin_token, traffic.devices)
            load_before = machine_load()
            with bench_progress(console) as progress:
                load = send_all(server, db_url(home), traffic, tokens, args, progress)
            load_after = machine_load()
            with console.status(f"{kind}: checking what was stored"):
                checked = verify(home, server, load, tokens)
        size = database_size(home)
    sent = load.sent
    events = max(sent.accepted, 1)
    return {
        "events_per_s": round(sent.accepted / load.seconds),
        "batches_per_s": round(len(sent.batches) / load.seconds, 1),
        "p50_batch_ms": _percentile_ms(sent.latencies, 0.5),
        "p99_batch_ms": _percentile_ms(sent.latencies, 0.99),
        "mean_batch_ms": round(statistics.fmean(sent.latencies) * 1e3, 1) if sent.latencies else 0,
        "errors": sent.errors,
        "first_error": sent.first_error or None,
        "seconds": round(load.seconds, 2),
        "events_sent": sent.events,
        "events_accepted": sent.accepted,
        "all_generated_sent": sent.events == traffic.events,
        **cpu_figures(load, events),
        "database_bytes_per_event": None if size is None else round(size / events),
        "load_average": {"before": load_before, "after": load_after},
        **checked,
    }


def run(args: argparse.Namespace, folder: Path, console: Console) -> dict[str, Any]:
    with bench_progress(console) as progress:
        traffic = generate_traffic(args.devices, args.events, args.seed, progress)
    kinds = ["sqlite"]
    skipped: dict[str, str] = {}
    if args.skip_postgres:
        skipped["postgresql"] = "--skip-postgres"
    elif (why := postgres_unreachable(args.postgres_admin_url)) is not None:
        skipped["postgresql"] = f"PostgreSQL unreachable: {why}"
    else:
        kinds.append("postgresql")
    figures: dict[str, Any] = {}
    for kind in kinds:
        figures[kind] = measure(kind, traffic, args, folder, console)
        if figures[kind]["events_per_s"] < TARGETS[kind] or args.profile:
            with console.status(f"{kind}: profiling ingest_batch in-process"):
                figures[kind]["profile"] = profile(kind, traffic, args)
    for kind, why in skipped.items():
        figures[kind] = {"skipped": why}
    met: dict[str, bool] = {}
    for kind in kinds:
        met[f"{kind}_events_per_s"] = figures[kind]["events_per_s"] >= TARGETS[kind]
        met[f"{kind}_correct"] = all(figures[kind]["checks"].values())
    return {
        "benchmark": "ingest",
        "gunicorn": {"workers": args.workers, "threads": args.threads, "worker_class": "gthread"},
        "client": f"{args.senders} threads, one keep-alive http.client connection each",
        "devices": args.devices,
        "batch_events": BATCH_EVENTS,
        "events_generated": traffic.events,
        "bytes_generated": traffic.bytes,
        "simulated": {
            "days": traffic.config.days,
            "heartbeat_every_min": traffic.config.heartbeat_every_min,
            "inference_window_min": traffic.config.inference_window_min,
            "forecast_points": HORIZON,
        },
        "max_seconds": args.max_seconds,
        **figures,
        "ratios": {
            f"{kind}_events_per_s_over_target": round(
                figures[kind]["events_per_s"] / TARGETS[kind], 3
            )
            for kind in kinds
        },
        "targets": {f"{kind}_events_per_s": target for kind, target in TARGETS.items()},
        "targets_met": met,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--events", type=int, default=1_500_000, help="events generated")
    parser.add_argument("--senders", type=int, default=8, help="client threads (connections)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per worker")
    parser.add_argument(
        "--max-seconds", type=float, default=120, help="stop sending after this long"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres-admin-url", default=POSTGRES_ADMIN_URL)
    parser.add_argument("--profile", action="store_true", help="profile even when targets are met")
    parser.add_argument("--cprofile", action="store_true", help="add the hottest functions")
    args = parser.parse_args(argv)
    return run_and_report(run, args)


if __name__ == "__main__":
    sys.exit(main())
