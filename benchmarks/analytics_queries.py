"""Analytics query latency as history grows: p95 at 1M and at 10M stored events.

A fleet of ``--stores`` stores (one device each) reports as the edge agent does: a
heartbeat and an inference window every minute, a forecast (24 points) and an actual
every hour. Its history is ingested oldest first, in-process (``ingest_batch`` in write
transactions of ``--batches-per-transaction`` batches of 500, the simulator running in a
second process), so the database grows as a real one does. When ``--events-small``
events are stored, and again at ``--events-large``, the cloud is served by
``storecast cloud serve`` (gunicorn) and each endpoint is timed ``--requests`` times
over HTTP with a viewer token, after ``--warmup`` requests, the endpoints taking turns:

    summary   GET /v1/analytics/stores/<store>/summary  the last 7 days, hourly (stores
                                                        taking turns)
    models    GET /v1/analytics/models                  the last 7 days
    fleet     GET /v1/analytics/fleet                   the last 24 hours (the default)

Windows end at the newest hour every device has reported, so both sizes ask about the
same span of recent history; the rollups should keep the cost flat. ``--stores``
defaults to as many as let the small history cover the 7-day window (48 at 1M, so 10M
is about 70 days). On PostgreSQL the tables are ANALYZEd after each load, as autovacuum
would have done in steady state.

Prints JSON: p50/p95/p99 per endpoint at each size, the large/small p95 ratio, how fast
the history was ingested, and the verdict. Targets: p95 <= 200 ms at the large size and
<= 1.5x the small size's.

    python benchmarks/analytics_queries.py [--quick] [--events-small 1000000]
        [--events-large 10000000] [--stores N] [--requests 200] [--postgres]
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from rich.console import Console
from rich.progress import Progress

from _cloud import (
    BATCH_EVENTS,
    EVENTS_PER_DEVICE_DAY,
    POSTGRES_ADMIN_URL,
    THREADS,
    cloud_server,
    database_size,
    db_url,
    edge_sim_config,
    enrol_in_database,
    machine_load,
    mint_token,
    postgres_unreachable,
    scratch_database,
)
from registry_publish import RegistryHome, bench_progress, init_home, run_and_report
from storecast.common.clock import SystemClock
from storecast.common.cloud import Database
from storecast.common.telemetry import hour_floor
from storecast.sim.sender import batches
from storecast.sim.telemetry import TelemetrySim, TelemetrySimConfig

TARGET_P95_MS = 200.0  # at the large size
TARGET_RATIO = 1.5  # large p95 / small p95
WINDOW = timedelta(days=7)  # of the store summary and model performance
FLEET_WINDOW_HOURS = 24
MAX_STORES = 100
QUICK = (50_000, 200_000)  # --quick: events small, large


# -- the history: simulated in a child process, ingested in this one --------------------------

Item = tuple[int, int, str, bytes]  # device index, events, last event's ts, request body


def _simulate(config: TelemetrySimConfig, events: int, out: Queue[Any]) -> None:
    """Child process: the devices' events in batches of 500, devices taking turns, oldest
    first, until ``events`` are out; then None."""
    sim = TelemetrySim(config)
    streams = [sim.events(device) for device in sim.devices]
    produced = 0
    try:
        while produced < events and streams:
            for index, stream in enumerate(streams):
                chunk = list(islice(stream, BATCH_EVENTS))
                if not chunk:
                    return  # every device's span is over (they all end together)
                for count, body in batches(chunk, BATCH_EVENTS):
                    out.put((index, count, str(chunk[-1]["ts"]), body))
                    produced += count
                if produced >= events:
                    return
    except KeyboardInterrupt:
        return
    finally:
        out.put(None)


@dataclass
class History:
    """What has been ingested so far."""

    devices: list[str]  # device ids, by index
    events: int = 0
    seconds: float = 0.0  # spent ingesting
    last_ts: dict[int, str] = field(default_factory=dict)  # per device index
    finished: bool = False  # the simulator has nothing more

    @property
    def reported_until(self) -> datetime:
        """The end of the newest hour every device has reported in full.

        An hour's last events (its last inference window, its actual) are stamped with the
        next hour's start, so a device whose newest event is stamped 16:00:00 may still owe
        the 15:00 actual: its hours are complete up to 15:00.
        """
        if len(self.last_ts) < len(self.devices):
            raise RuntimeError("too few events for every store to report: use fewer --stores")
        oldest = datetime.fromisoformat(min(self.last_ts.values()).replace("Z", "+00:00"))
        return hour_floor(oldest - timedelta(seconds=1))


def ingest_until(
    database: Database,
    feed: Queue[Any],
    history: History,
    events: int,
    per_transaction: int,
    progress: Progress,
) -> None:
    """Ingest batches from ``feed`` until ``events`` are stored (or the feed ends)."""
    from storecast.analytics.ingest import ingest_batch

    task = progress.add_task(f"ingesting up to {events:,} events", total=events)
    progress.update(task, completed=history.events)
    while history.events < events and not history.finished:
        items: list[Item] = []
        while len(items) < per_transaction and history.events < events:
            item = feed.get()
            if item is None:
                history.finished = True
                break
            items.append(item)
            history.events += item[1]
        started = time.perf_counter()
        with database.transaction(write=True) as session:
            now = database.clock.now()
            for index, count, last_ts, body in items:
                ack = ingest_batch(session, history.devices[index], body, now)
                if ack.accepted != count or ack.rejected:
                    raise RuntimeError(f"batch of {count} events: {ack.model_dump_json()[:300]}")
                history.last_ts[index] = last_ts
        history.seconds += time.perf_counter() - started
        progress.update(
            task,
            completed=history.events,
            description=f"ingesting: {history.events / max(history.seconds, 1e-9):,.0f} events/s",
        )
    progress.remove_task(task)
    if database.engine.dialect.name == "postgresql":
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# -- timing the endpoints ---------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def query_paths(stores: list[str], end: datetime) -> dict[str, list[str]]:
    """Each endpoint's requests (taken in turn) for windows ending at ``end``."""
    window = urlencode({"start": _iso(end - WINDOW), "end": _iso(end)})
    return {
        "summary": [f"/v1/analytics/stores/{s}/summary?{window}" for s in stores],
        "models": [f"/v1/analytics/models?{window}"],
        "fleet": [
            "/v1/analytics/fleet?"
            + urlencode({"at": _iso(end), "window_hours": FLEET_WINDOW_HOURS})
        ],
    }


def time_queries(
    url: str, token: str, paths: dict[str, list[str]], args: argparse.Namespace, progress: Progress
) -> dict[str, list[float]]:
    """Seconds per request of each endpoint, over one keep-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    task = progress.add_task("querying", total=(args.warmup + args.requests) * len(paths))
    try:
        for i in range(args.warmup + args.requests):
            for name, cycle in paths.items():
                path = cycle[i % len(cycle)]
                started = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
                if i >= args.warmup:
                    seconds[name].append(elapsed)
                progress.advance(task)
    finally:
        conn.close()
        progress.remove_task(task)
    return seconds


def answers(url: str, token: str, paths: dict[str, list[str]]) -> dict[str, Any]:
    """A few figures from each answer: both sizes must be asked about comparable data."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        summary = http.get(paths["summary"][0]).json()
        models = http.get(paths["models"][0]).json()
        fleet = http.get(paths["fleet"][0]).json()
    return {
        "summary_hours": len(summary["series"]),
        "summary_hours_with_actual": sum(p["actual"] is not None for p in summary["series"]),
        "summary_points_scored": summary["accuracy"]["points"],
        "models_versions": len(models["versions"]),
        "fleet_forecasts_served": fleet["forecasts_served"],
        "fleet_devices_online": fleet["devices"]["online"],
    }


def _stats_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 1)

    return {
        "p50_ms": at(0.5),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 1),
    }


# -- the benchmark ---------------------------------------------------------------------------


def auto_stores(events_small: int) -> int:
    """The most stores (up to 100) whose small history still covers the 7-day window."""
    return max(1, min(MAX_STORES, events_small // (EVENTS_PER_DEVICE_DAY * WINDOW.days)))


def measure_size(
    home: RegistryHome,
    history: History,
    stores: list[str],
    token: str | None,
    args: argparse.Namespace,
    console: Console,
) -> tuple[str, dict[str, Any]]:
    """Serve the cloud and time the endpoints on what is stored now; the viewer token too."""
    end = history.reported_until
    paths = query_paths(stores, end)
    with (
        console.status("starting storecast cloud serve"),
        cloud_server(home, workers=args.workers) as server,
    ):
        token = token or mint_token(server.url, home.admin_token, "viewer")
        load_before = machine_load()
        with bench_progress(console) as progress:
            seconds = time_queries(server.url, token, paths, args, progress)
        figures = {
            "events": history.events,
            "history_days": round(history.events / len(stores) / EVENTS_PER_DEVICE_DAY, 1),
            "window_end": _iso(end),
            "database_bytes": database_size(home),
            **{name: _stats_ms(s) for name, s in seconds.items()},
            "answers": answers(server.url, token, paths),
            "load_average": {"before": load_before, "after": machine_load()},
        }
    return token, figures


def run(args: argparse.Namespace, folder: Path, console: Console) -> dict[str, Any]:
    small, large = QUICK if args.quick else (args.events_small, args.events_large)
    if not 0 < small < large:
        raise SystemExit("--events-small must be positive and below --events-large")
    stores = args.stores or auto_stores(small)
    days = math.ceil(large / (stores * EVENTS_PER_DEVICE_DAY)) + 1
    config = edge_sim_config(stores, days, args.seed)
    kind = "postgresql" if args.postgres else "sqlite"
    if args.postgres and (why := postgres_unreachable(args.postgres_admin_url)) is not None:
        raise SystemExit(f"PostgreSQL unreachable: {why}")
    context = multiprocessing.get_context("spawn")
    feed: Queue[Any] = context.Queue(maxsize=64)
    simulator = context.Process(target=_simulate, args=(config, large, feed), daemon=True)
    sizes: dict[str, dict[str, Any]] = {}
    with scratch_database(kind, args.postgres_admin_url) as url:
        home = init_home(folder, url)
        database = Database.connect(db_url(home), SystemClock())
        sim = TelemetrySim(config)  # the devices only: streams are generated by the child
        enrol_in_database(database, sim.devices)
        history = History([d.device_id for d in sim.devices])
        store_ids = [d.store_id for d in sim.devices]
        simulator.start()
        token: str | None = None
        try:
            for name, events in (("small", small), ("large", large)):
                before, seconds_before = history.events, history.seconds
                with bench_progress(console) as progress:
                    ingest_until(
                        database, feed, history, events, args.batches_per_transaction, progress
                    )
                ingested = history.events - before
                rate = round(ingested / max(history.seconds - seconds_before, 1e-9))
                token, sizes[name] = measure_size(home, history, store_ids, token, args, console)
                sizes[name]["ingested_events_per_s"] = rate
        finally:
            simulator.kill()
            simulator.join()
            feed.close()
            feed.cancel_join_thread()
            database.engine.dispose()
    endpoints = ("summary", "models", "fleet")
    ratios = {
        name: round(sizes["large"][name]["p95_ms"] / max(sizes["small"][name]["p95_ms"], 0.1), 2)
        for name in endpoints
    }
    met = {
        **{f"{n}_p95_ms": sizes["large"][n]["p95_ms"] <= TARGET_P95_MS for n in endpoints},
        **{f"{n}_ratio": ratios[n] <= TARGET_RATIO for n in endpoints},
    }
    return {
        "benchmark": "analytics_queries",
        "database": kind,
        "gunicorn": {"workers": args.workers, "threads": THREADS, "worker_class": "gthread"},
        "stores": stores,
        "requests_per_endpoint": args.requests,
        "windows": {"summary": "7 days, hourly", "models": "7 days", "fleet": "24 hours"},
        "small": sizes["small"],
        "large": sizes["large"],
        "p95_large_over_small": ratios,
        "targets": {"p95_ms_at_large": TARGET_P95_MS, "p95_large_over_small": TARGET_RATIO},
        "targets_met": met,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-small", type=int, default=1_000_000)
    parser.add_argument("--events-large", type=int, default=10_000_000)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK[0]:,} and {QUICK[1]:,} events"
    )
    parser.add_argument("--stores", type=int, default=0, help="default: see above")
    parser.add_argument("--requests", type=int, default=200, help="timed, per endpoint")
    parser.add_argument("--warmup", type=int, default=20, help="untimed, per endpoint")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--batches-per-transaction", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--postgres-admin-url", default=POSTGRES_ADMIN_URL)
    args = parser.parse_args(argv)
    return run_and_report(run, args)


if __name__ == "__main__":
    sys.exit(main())
