"""What the analytics benchmarks share: a scratch database, the cloud served by gunicorn,
the simulated fleet, and who used the CPU.

``scratch_database`` gives an empty database (SQLite in a folder, or a uniquely named
PostgreSQL database dropped afterwards, as ``tests/conftest.py`` makes them);
``cloud_server`` runs ``storecast cloud serve --port 0`` on it exactly as an operator
does, in a child process whose CPU time can be read (``Server.cpu_seconds``);
``edge_sim_config`` sets the simulator to what the edge agent really sends; ``CpuSample``
splits the machine's CPU between the server, PostgreSQL, the client and everyone else
(the machine is shared). The registry home, its first admin token and the gunicorn
``Server`` come from ``registry_publish``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from registry_publish import HOST, RegistryHome, Server
from storecast._process import running_server
from storecast.common.cloud import Database
from storecast.common.telemetry import hour_floor
from storecast.registry.config import RegistryConfig
from storecast.sim.telemetry import SimDevice, TelemetrySimConfig

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
THREADS = 4  # gunicorn threads per worker: fixed by `storecast cloud serve` (no flag)
BATCH_EVENTS = 500  # events per telemetry request
# What the edge agent sends: a heartbeat and an inference window a minute, and every hour
# a forecast (24 points) and the actual.
HEARTBEAT_EVERY_MIN = 1
INFERENCE_WINDOW_MIN = 1
EVENTS_PER_DEVICE_DAY = 24 * (60 // HEARTBEAT_EVERY_MIN + 60 // INFERENCE_WINDOW_MIN + 2)


# -- databases ------------------------------------------------------------------------------


def postgres_unreachable(admin_url: str) -> str | None:
    """None when the PostgreSQL server at ``admin_url`` answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means "not here"
        return f"{type(exc).__name__}: {exc}".strip()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on ``admin_url``'s server, dropped after."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"storecast_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(kind: str, admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """An empty database URL for ``kind`` ("sqlite": empty, the home's own file)."""
    if kind == "sqlite":
        yield ""
        return
    with postgres_database(admin_url) as url:
        yield url


def db_url(home: RegistryHome) -> str:
    """The SQLAlchemy URL of the home's database (its SQLite file when none was given)."""
    return RegistryConfig(home=home.home, database_url=home.database_url).db_url


def database_size(home: RegistryHome) -> int | None:
    """Bytes the database takes on disk (SQLite: file and WAL; PostgreSQL: the database)."""
    url = db_url(home)
    if url.startswith("sqlite"):
        files = [home.home / name for name in ("registry.db", "registry.db-wal")]
        return sum(path.stat().st_size for path in files if path.exists())
    from sqlalchemy import text

    from storecast.common.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    finally:
        engine.dispose()
    return None if size is None else int(size)


# -- the cloud, served --------------------------------------------------------------------


@contextmanager
def cloud_server(home: RegistryHome, *, workers: int, threads: int = 4) -> Iterator[Server]:
    """``storecast cloud serve`` on ``home`` (port 0) as a child process, until the block ends.

    The child is the gunicorn arbiter itself, so ``Server.cpu_seconds`` counts it and its
    workers. Stopped with SIGINT (then SIGKILL) when the block ends, also on error or Ctrl-C.
    """
    env = dict(os.environ)
    env.pop("STORECAST_DATABASE_URL", None)
    if home.database_url:
        env["STORECAST_DATABASE_URL"] = home.database_url
    command = [
        *("cloud", "serve"),
        *("--home", str(home.home), "--host", HOST, "--port", "0"),
        *("--workers", str(workers)),
        *("--threads", str(threads)),
    ]
    # Its own session: Ctrl-C reaches the benchmark alone, which then stops the server
    # (rather than both at once, the benchmark then failing on a closed connection).
    with running_server(*command, env=env, new_session=True) as (url, proc):
        yield Server(url, proc.pid)


def post_json(url: str, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST url+path`` with a bearer token; the JSON answer (raises on 4xx/5xx)."""
    response = httpx.post(
        url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    if response.status_code >= 400:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


def mint_token(url: str, admin_token: str, role: str) -> str:
    """A new token with ``role``, minted by the admin."""
    made = post_json(url, "/v1/tokens", admin_token, {"name": f"bench-{role}", "role": role})
    return str(made["token"])


def edge_sim_config(devices: int, days: int, seed: int) -> TelemetrySimConfig:
    """A simulated fleet reporting as real edge agents do, over the ``days`` up to this hour."""
    return TelemetrySimConfig(
        end=hour_floor(datetime.now(UTC)),
        devices=devices,
        days=days,
        seed=seed,
        heartbeat_every_min=HEARTBEAT_EVERY_MIN,
        inference_window_min=INFERENCE_WINDOW_MIN,
    )


def enrol_in_database(database: Database, devices: Iterable[SimDevice]) -> None:
    """Enrol ``devices`` by writing the registry's device rows directly (no tokens)."""
    from storecast.registry.tables import DeviceRow

    with database.transaction(write=True) as session:
        now = database.clock.now()
        session.add_all(
            DeviceRow(
                device_id=d.device_id,
                store_id=d.store_id,
                region=d.region,
                tags_json="[]",
                enrolled_at=now,
                enrolled_by="bench",
            )
            for d in devices
        )


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(database_url: str) -> float | None:
    """CPU seconds of the PostgreSQL backends connected to ``database_url``'s database
    (found by their process title; None for SQLite or off Linux)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or not Path("/proc").is_dir():
        return None
    title = f" {url.database} "
    total = 0.0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if title in cmdline.read_bytes().decode(errors="replace"):
                total += _process_cpu(int(cmdline.parent.name))
        except OSError:
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (all processes, anyone's)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds, to subtract: who used the machine during a measurement."""

    server: float | None  # the gunicorn arbiter and its workers
    database: float | None  # our PostgreSQL backends (None on SQLite)
    client: float  # this process
    machine: float  # every process on every core

    @classmethod
    def take(cls, server: Server, database_url: str) -> CpuSample:
        return cls(
            server.cpu_seconds(),
            postgres_cpu_seconds(database_url),
            time.process_time(),
            machine_busy_seconds(),
        )

    def __sub__(self, earlier: CpuSample) -> CpuSample:
        def minus(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a - b

        return CpuSample(
            minus(self.server, earlier.server),
            minus(self.database, earlier.database),
            self.client - earlier.client,
            self.machine - earlier.machine,
        )


def machine_load() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: figures are noisy)."""
    return [round(load, 2) for load in os.getloadavg()]
