"""The device poll under load: ``GET /v1/devices/{id}/assignment`` against a bare Flask app.

Sets up a registry (SQLite by default), publishes a real bundle, enrols ``--devices``
devices (each with its own token), deploys the bundle to all of them, and serves the
registry with gunicorn as ``storecast registry serve`` does. The baseline is a bare Flask
app (``GET /ping`` -> "ok") served the same way: same gunicorn settings and workers.
wrk then drives ``--connections`` keep-alive connections, rotating over every device's
token, through these phases, alternated for ``--rounds`` rounds so that all of them see
the same machine:

    ping           the bare Flask app
    poll_304       If-None-Match with the current ETag: what a fleet sends almost always
    poll_200       no ETag: the full answer
    poll_304_seen  poll_304 where every poll also writes the device's last-seen time

Each device polls several times a second here, so with the default ``last_seen_every``
(5 min) the throttled last-seen write would land in bursts in whichever phase runs when
the 5 minutes are up. The registry of poll_304 and poll_200 therefore runs with
``last_seen_every`` = 1 h (the write is always skipped) and that of poll_304_seen with 0
(always written): the worst case. A fleet polling every 60 s with the default writes on
one poll in five.

Without wrk, a multi-process Python client stands in; it needs far more CPU itself, so
its figures are lower and closer together.

Prints JSON: requests/s, p50 and p99 (the worst round) per phase, the registry workers'
CPU per request, poll_304/ping, how many devices one server serves at a 60 s interval,
and the verdict. Targets: poll_304 >= 0.7 x ping requests/s, poll_304 p99 <= 50 ms.

    python benchmarks/registry_poll.py [--devices 1000] [--connections 64] [--duration 8]
        [--rounds 2] [--workers 2] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import Progress

from registry_publish import (
    MODEL,
    AppSpec,
    Server,
    bench_progress,
    build_bench_bundle,
    init_home,
    run_and_report,
    served,
)

TARGET_RATIO = 0.7
TARGET_P99_MS = 50.0
POLL_INTERVAL_S = 60
THREADS = 4  # gunicorn threads per worker, as `storecast registry serve` runs
REGIONS = ("north", "south", "east", "west")

# Each wrk thread pre-formats every device's request once, then cycles through them.
WRK_SCRIPT = """
local requests = {}
local next_request = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local mode = args[2]
  for line in io.lines(args[1]) do
    local path, token, etag = line:match("^(%S+) (%S+) (%S+)$")
    local headers = {}
    if mode == "ping" then
      path = "/ping"
    else
      headers["Authorization"] = "Bearer " .. token
    end
    if mode == "304" then headers["If-None-Match"] = etag end
    table.insert(requests, wrk.format("GET", path, headers))
  end
  next_request = (id * 7919) % #requests
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str
    etag: str = ""

    @property
    def path(self) -> str:
        return f"/v1/devices/{self.device_id}/assignment?current_model={MODEL}&current_version=1"


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write errors, timeouts and 4xx/5xx answers
    cpu_seconds: float | None = None  # the server's, when known


@dataclass(frozen=True)
class Phase:
    name: str
    server: Server
    mode: str  # what the requests carry: "ping", "304" (the ETag) or "200" (none)


# -- setting up the fleet ---------------------------------------------------------------------


def set_up_fleet(
    url: str, admin: str, bundle: bytes, count: int, progress: Progress
) -> list[Device]:
    """Publish ``bundle``, enrol ``count`` devices, deploy to all, poll each once."""
    auth = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
        http.post(
            "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
        ).raise_for_status()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        return local.client  # type: ignore[no-any-return]

    task = progress.add_task("enrolling devices", total=count)

    def enrol(i: int) -> Device:
        device_id = f"dev-{i:05d}"
        body = {"device_id": device_id, "store_id": f"store-{i:05d}", "region": REGIONS[i % 4]}
        response = client().post("/v1/devices", json=body, headers=auth)
        response.raise_for_status()
        progress.advance(task)
        return Device(device_id, response.json()["token"])

    def first_poll(device: Device) -> Device:
        headers = {"Authorization": f"Bearer {device.token}"}
        response = client().get(device.path, headers=headers)
        if response.status_code != 200 or response.json()["model"] != MODEL:
            raise RuntimeError(f"{device.path}: {response.status_code} {response.text[:300]}")
        etag = response.headers["ETag"]
        again = client().get(device.path, headers={**headers, "If-None-Match": etag})
        if again.status_code != 304:
            raise RuntimeError(f"{device.path} with its ETag: {again.status_code}, not 304")
        progress.advance(task)
        return Device(device.device_id, device.token, etag)

    with ThreadPoolExecutor(8) as pool:
        devices = list(pool.map(enrol, range(count)))
        with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
            http.post("/v1/deployments", json={"model": MODEL, "version": 1}).raise_for_status()
        progress.reset(task, description="first poll of each device", total=count)
        devices = list(pool.map(first_poll, devices))
    progress.remove_task(task)
    return devices


# -- load generators -----------------------------------------------------------------------


def run_wrk(phase: Phase, seconds: float, folder: Path, args: argparse.Namespace) -> Load:
    done = subprocess.run(
        [
            "wrk",
            f"--threads={args.wrk_threads}",
            f"--connections={args.connections}",
            f"--duration={seconds:g}s",
            "--timeout=5s",
            f"--script={folder / 'poll.lua'}",
            phase.server.url,
            "--",
            str(folder / "devices.txt"),
            phase.mode,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Load(**json.loads(done.stdout.strip().splitlines()[-1]))


Request = tuple[str, dict[str, str]]  # path, headers


def _client_connection(
    url: str, requests: list[Request], until: float, first: int
) -> tuple[int, list[float]]:
    """One keep-alive connection sending ``requests`` in turn until ``until``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    errors, latencies = 0, []
    i = first
    while time.monotonic() < until:
        path, headers = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            continue
        latencies.append(time.perf_counter() - started)
        errors += response.status >= 400
    conn.close()
    return errors, latencies


def _client_process(
    url: str, requests: list[Request], connections: int, until: float, first: int
) -> tuple[int, list[float]]:
    with ThreadPoolExecutor(connections) as pool:
        done = list(
            pool.map(
                lambda k: _client_connection(url, requests, until, (first + k) * 7919),
                range(connections),
            )
        )
    return sum(errors for errors, _ in done), [t for _, latencies in done for t in latencies]


def run_python(
    phase: Phase, seconds: float, devices: list[Device], args: argparse.Namespace
) -> Load:
    """The stand-in for wrk: ``--wrk-threads`` processes sharing ``--connections``."""
    requests: list[Request] = []
    for device in devices:
        headers = {} if phase.mode == "ping" else {"Authorization": f"Bearer {device.token}"}
        if phase.mode == "304":
            headers["If-None-Match"] = device.etag
        requests.append(("/ping" if phase.mode == "ping" else device.path, headers))
    per_process = max(1, args.connections // args.wrk_threads)
    started = time.monotonic()
    until = started + seconds
    with multiprocessing.get_context("spawn").Pool(args.wrk_threads) as pool:
        done = pool.starmap(
            _client_process,
            [
                (phase.server.url, requests, per_process, until, n * per_process)
                for n in range(args.wrk_threads)
            ],
        )
    latencies = sorted(t for _, part in done for t in part)

    def percentile_ms(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 if latencies else 0

    return Load(
        len(latencies),
        time.monotonic() - started,
        percentile_ms(0.5),
        percentile_ms(0.99),
        sum(errors for errors, _ in done),
    )


def measure(phase: Phase, seconds: float, run: Callable[[Phase, float], Load]) -> Load:
    """One load run, with the server's CPU time over it."""
    before = phase.server.cpu_seconds()
    load = run(phase, seconds)
    after = phase.server.cpu_seconds()
    if before is None or after is None:
        return load
    return replace(load, cpu_seconds=after - before)


# -- the benchmark ---------------------------------------------------------------------------


def summarise(loads: list[Load]) -> dict[str, Any]:
    requests = sum(load.requests for load in loads)
    cpu = [load.cpu_seconds for load in loads if load.cpu_seconds is not None]
    return {
        "requests_per_s": round(requests / sum(load.seconds for load in loads)),
        "p50_ms": round(statistics.median(load.p50_ms for load in loads), 2),
        "p99_ms": round(max(load.p99_ms for load in loads), 2),
        "server_cpu_us_per_request": (
            round(sum(cpu) / requests * 1e6) if len(cpu) == len(loads) else None
        ),
        "rounds_requests_per_s": [round(load.requests / load.seconds) for load in loads],
        "errors": sum(load.errors for load in loads),
    }


def run(args: argparse.Namespace, folder: Path, console: Console) -> dict[str, Any]:
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    if not use_wrk and not args.python_client:
        console.print("[yellow]wrk not found (apt-get install wrk): using a Python client[/]")
    with console.status("training a tiny model and building its bundle"):
        bundle = build_bench_bundle(folder, hidden=16)
    home = init_home(folder, args.database_url)
    # Two servers of the one registry: last-seen written never, and on every poll.
    registry = AppSpec("registry", home.home, home.database_url, last_seen_every_s=3600)
    every_poll_seen = AppSpec("registry", home.home, home.database_url, last_seen_every_s=0)
    with (
        console.status(f"starting gunicorn ({args.workers} workers x {THREADS} threads)"),
        served(registry, workers=args.workers, threads=THREADS) as registry_server,
        served(every_poll_seen, workers=args.workers, threads=THREADS) as seen_server,
        served(AppSpec("ping"), workers=args.workers, threads=THREADS) as ping_server,
    ):
        with bench_progress(console) as progress:
            devices = set_up_fleet(
                registry_server.url, home.admin_token, bundle, args.devices, progress
            )
        (folder / "devices.txt").write_text(
            "".join(f"{d.path} {d.token} {d.etag}\n" for d in devices)
        )
        (folder / "poll.lua").write_text(WRK_SCRIPT)
        phases = [
            Phase("ping", ping_server, "ping"),
            Phase("poll_304", registry_server, "304"),
            Phase("poll_200", registry_server, "200"),
            Phase("poll_304_seen", seen_server, "304"),
        ]

        def load(phase: Phase, seconds: float) -> Load:
            if use_wrk:
                return run_wrk(phase, seconds, folder, args)
            return run_python(phase, seconds, devices, args)

        loads: dict[str, list[Load]] = {phase.name: [] for phase in phases}
        with bench_progress(console) as progress:
            task = progress.add_task("load", total=args.rounds * len(phases))
            for round_ in range(1, args.rounds + 1):
                for phase in phases:
                    progress.update(task, description=f"round {round_}: {phase.name}")
                    load(phase, args.warmup)
                    loads[phase.name].append(measure(phase, args.duration, load))
                    progress.advance(task)
    figures = {name: summarise(runs) for name, runs in loads.items()}
    rps = {name: figure["requests_per_s"] for name, figure in figures.items()}
    ratio = rps["poll_304"] / rps["ping"]
    checks = {
        "poll_304_over_ping": ratio >= TARGET_RATIO,
        "poll_304_p99_ms": figures["poll_304"]["p99_ms"] <= TARGET_P99_MS,
        "no_errors": all(figure["errors"] == 0 for figure in figures.values()),
    }
    return {
        "benchmark": "registry_poll",
        "database": "postgresql" if args.database_url else "sqlite",
        "load_generator": (
            f"wrk, {args.wrk_threads} threads"
            if use_wrk
            else f"python, {args.wrk_threads} processes"
        ),
        "connections": args.connections,
        "gunicorn": {"workers": args.workers, "threads": THREADS, "worker_class": "gthread"},
        "devices": args.devices,
        "seconds_per_phase": args.duration,
        "rounds": args.rounds,
        **figures,
        "poll_304_over_ping": round(ratio, 3),
        "poll_200_over_ping": round(rps["poll_200"] / rps["ping"], 3),
        "poll_304_seen_over_ping": round(rps["poll_304_seen"] / rps["ping"], 3),
        "devices_at_60s_interval": {
            name: rps[name] * POLL_INTERVAL_S for name in ("poll_304", "poll_304_seen")
        },
        "targets": {"poll_304_over_ping": TARGET_RATIO, "poll_304_p99_ms": TARGET_P99_MS},
        "targets_met": checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=8, help="seconds per timed phase")
    parser.add_argument("--warmup", type=float, default=2, help="seconds before each phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (every app)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (or processes)")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp folder")
    parser.add_argument("--python-client", action="store_true", help="even when wrk is here")
    args = parser.parse_args(argv)
    return run_and_report(run, args)


if __name__ == "__main__":
    sys.exit(main())
