"""Publishing a model bundle to the registry: validate, store and sign, over HTTP.

Trains a tiny model for one epoch (hidden 64, so the bundle is about 300 KB), builds a
real bundle from it, re-stamps its metadata with distinct versions, and times sequential
``POST /v1/models`` uploads (publisher token) to a registry served by gunicorn, exactly
as ``storecast registry serve`` serves it. The baseline, measured in the same run, is
the same upload to a bare Flask app that only reads the body, served the same way.
Prints JSON with the median and p90 in seconds and the publish/upload ratio.
Target: median publish <= 0.5 s.

    python benchmarks/registry_publish.py [--publishes 20] [--workers 2]
        [--database-url postgresql://...]

The other registry benchmark (``registry_poll.py``) reuses the helpers below: the
bundle builder, the registry home and the gunicorn child process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from flask import Flask

TARGET_MEDIAN_S = 0.5
BUNDLE_MEDIA = "application/x-tar"
MODEL = "demand-lstm"
HOST = "127.0.0.1"


# -- a real bundle, quickly ---------------------------------------------------------------


def build_bench_bundle(folder: Path, hidden: int = 64) -> bytes:
    """A real bundle (ONNX export, parity check) of a model trained for two steps.

    ``hidden`` 64 with one LSTM layer gives a bundle of about 300 KB.
    """
    from storecast.bundle.packaging import build_bundle
    from storecast.forecasting.features import FeatureSpec
    from storecast.forecasting.model import ModelConfig
    from storecast.forecasting.synthetic import ChainConfig
    from storecast.forecasting.training import TrainConfig
    from storecast.forecasting.workflow import synthetic_source, train_and_evaluate

    checkpoint = folder / "bench.pt"
    train_and_evaluate(
        synthetic_source(ChainConfig(stores=4, days=70, seed=3)),
        checkpoint,
        train_config=TrainConfig(max_epochs=1, steps_per_epoch=2, batch_size=32, max_seconds=None),
        model_config=ModelConfig.for_features(
            FeatureSpec(), hidden=hidden, layers=1, head_hidden=hidden
        ),
    )
    built = build_bundle(checkpoint, name=MODEL, version=1, out_dir=folder / "dist")
    return built.path.read_bytes()


def restamp(bundle: bytes, version: int, folder: Path) -> bytes:
    """The same bundle with another version in its metadata (a valid, distinct bundle)."""
    from storecast.bundle import read_members
    from storecast.bundle.archive import write_tar
    from storecast.bundle.metadata import METADATA_MEMBER

    members = read_members(bundle)
    meta = json.loads(members[METADATA_MEMBER])
    meta["version"] = version
    stamped = json.dumps(meta, sort_keys=True, indent=2).encode() + b"\n"
    return write_tar({**members, METADATA_MEMBER: stamped}, folder / f"v{version}.tar").read_bytes()


# -- a registry and the apps it is compared with, served by gunicorn -----------------------


@dataclass(frozen=True)
class RegistryHome:
    """A freshly initialised registry and its first admin token."""

    home: Path
    database_url: str  # empty: SQLite in home
    admin_token: str


def init_home(folder: Path, database_url: str = "") -> RegistryHome:
    from storecast.registry.config import RegistryConfig
    from storecast.registry.setup import init_registry

    made = init_registry(RegistryConfig(home=folder / "registry", database_url=database_url))
    return RegistryHome(made.home, database_url, made.admin_token)


@dataclass(frozen=True)
class AppSpec:
    """What a gunicorn child serves: the registry of ``home``, or a bare Flask app."""

    kind: str  # "registry", "ping" (GET /ping -> "ok") or "upload" (POST /upload -> length)
    home: Path | None = None
    database_url: str = ""
    last_seen_every_s: float | None = None  # the registry's last_seen_every (None: default)

    @property
    def probe(self) -> str:
        return "/healthz" if self.kind == "registry" else "/ping"


def make_app(spec: AppSpec) -> Flask:
    """The Flask app of ``spec`` (called in each gunicorn worker)."""
    from flask import Flask, request

    if spec.kind == "registry":
        from storecast.registry.app import create_app
        from storecast.registry.config import RegistryConfig

        assert spec.home is not None
        config = RegistryConfig(home=spec.home, database_url=spec.database_url)
        if spec.last_seen_every_s is not None:
            config = replace(config, last_seen_every=timedelta(seconds=spec.last_seen_every_s))
        return create_app(config)
    app = Flask(f"bench-{spec.kind}")

    @app.get("/ping")
    def ping() -> str:
        return "ok"

    @app.post("/upload")
    def upload() -> dict[str, int]:
        return {"bytes": len(request.get_data(cache=False))}

    return app


def _serve_child(spec: AppSpec, workers: int, threads: int, ready: Connection) -> None:
    """Body of a server process: listen on a free port, say which, serve until stopped."""
    from storecast.common.serving import open_socket, prepare_metrics_dir, serve

    if spec.home is not None:  # as `storecast registry serve` does, one folder per server
        prepare_metrics_dir(spec.home / f".prometheus-{os.getpid()}")
    sock = open_socket(HOST, 0)
    ready.send(sock.getsockname()[1])
    ready.close()
    serve(lambda: make_app(spec), sock, workers=workers, threads=threads, name=f"bench-{spec.kind}")


@dataclass(frozen=True)
class Server:
    """A running gunicorn child: its URL and the CPU its processes used so far."""

    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the arbiter and its workers (None off Linux)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            ticks = 0
            for pid in [self.pid, *map(int, children)]:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError):
            return None
        return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(spec: AppSpec, *, workers: int, threads: int = 4) -> Iterator[Server]:
    """Serve ``spec`` with ``storecast.common.serving.serve`` in a child process."""
    context = multiprocessing.get_context("spawn")  # no torch state leaks into the workers
    ours, theirs = context.Pipe(duplex=False)
    process = context.Process(target=_serve_child, args=(spec, workers, threads, theirs))
    process.start()
    theirs.close()
    try:
        if not ours.poll(60):
            raise RuntimeError(f"the {spec.kind} server did not start")
        url = f"http://{HOST}:{ours.recv()}"
        _wait_ready(url + spec.probe, process)
        yield Server(url, process.pid or 0)
    finally:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)  # gunicorn: graceful stop
        process.join(20)
        if process.is_alive():
            process.kill()
            process.join()


def _wait_ready(url: str, process: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"the server behind {url} exited with {process.exitcode}")
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within 60 s")


def bench_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# -- the publish benchmark ------------------------------------------------------------------


def _time_posts(
    client: httpx.Client, path: str, bodies: list[bytes], expect: int, progress: Progress
) -> list[float]:
    task = progress.add_task(f"POST {path}", total=len(bodies))
    seconds = []
    for body in bodies:
        started = time.perf_counter()
        response = client.post(path, content=body, headers={"Content-Type": BUNDLE_MEDIA})
        seconds.append(time.perf_counter() - started)
        if response.status_code != expect:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
        progress.advance(task)
    progress.remove_task(task)
    return seconds


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_s": round(statistics.median(ordered), 4),
        "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        "max_s": round(ordered[-1], 4),
    }


def run(args: argparse.Namespace, folder: Path, console: Console) -> dict[str, object]:
    with console.status("training a tiny model and building its bundle"):
        bundle = build_bench_bundle(folder, args.hidden)
    warmup = 2
    versions = range(1, warmup + args.publishes + 1)
    bundles = [restamp(bundle, version, folder) for version in versions]
    home = init_home(folder, args.database_url)
    registry = AppSpec("registry", home.home, home.database_url)
    with (
        console.status(f"starting gunicorn ({args.workers} workers)"),
        served(registry, workers=args.workers) as registry_server,
        served(AppSpec("upload"), workers=args.workers) as upload_server,
    ):
        registry_url, upload_url = registry_server.url, upload_server.url
        admin = {"Authorization": f"Bearer {home.admin_token}"}
        made = httpx.post(
            f"{registry_url}/v1/tokens", json={"name": "bench", "role": "publisher"}, headers=admin
        )
        made.raise_for_status()
        publisher = {"Authorization": f"Bearer {made.json()['token']}"}
        with (
            httpx.Client(base_url=registry_url, headers=publisher, timeout=60) as reg,
            httpx.Client(base_url=upload_url, timeout=60) as up,
            bench_progress(console) as progress,
        ):
            _time_posts(up, "/upload", bundles[:warmup], 200, progress)
            _time_posts(reg, "/v1/models", bundles[:warmup], 201, progress)
            upload = _time_posts(up, "/upload", bundles[warmup:], 200, progress)
            publish = _time_posts(reg, "/v1/models", bundles[warmup:], 201, progress)
    median = statistics.median(publish)
    return {
        "benchmark": "registry_publish",
        "database": "postgresql" if args.database_url else "sqlite",
        "gunicorn": {"workers": args.workers, "threads": 4, "worker_class": "gthread"},
        "bundle_bytes": len(bundles[warmup]),
        "publishes": args.publishes,
        "publish": _summary(publish),
        "upload_baseline": _summary(upload),
        "publish_over_upload_median": round(median / statistics.median(upload), 1),
        "target_median_s": TARGET_MEDIAN_S,
        "target_met": median <= TARGET_MEDIAN_S,
    }


def run_and_report(
    run: Callable[[argparse.Namespace, Path, Console], dict[str, Any]], args: argparse.Namespace
) -> int:
    """Run a benchmark in a temporary folder, print its JSON with a verdict from its
    ``targets_met``; exit code 0 (pass), 1 (fail) or 130 (Ctrl-C)."""
    console = Console(stderr=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args, Path(tmp), console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    passed = all(result["targets_met"].values())
    result["verdict"] = "PASS" if passed else "FAIL"
    print(json.dumps(result, indent=2))
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=20, help="timed publishes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--hidden", type=int, default=64, help="LSTM width (sets bundle size)")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp folder")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args, Path(tmp), console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    result["verdict"] = "PASS" if result["target_met"] else "FAIL"
    print(json.dumps(result, indent=2))
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
