"""Serving a storecast Flask app with gunicorn, on a socket we open ourselves.

Opening the listening socket before gunicorn starts lets ``--port 0`` pick a free port
and tell the caller which one, and means clients can connect (and queue) as soon as the
URL is printed.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from storecast.common.errors import ConfigError


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        sock = socket.create_server((host, port), backlog=2048, reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def prepare_metrics_dir(path: Path) -> None:
    """A fresh folder for Prometheus' multi-process metrics (set before the app is imported)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # untyped base
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


# Collect young objects after this many allocations instead of CPython's 700: a telemetry
# batch alone makes tens of thousands of short-lived objects, and at the default every
# request paid for several collections that found nothing to free.
GC_THRESHOLDS = (50_000, 20, 20)


def _tune_gc(_worker: Any) -> None:
    """In each worker, once the app is loaded: its long-lived objects are moved out of the
    collector's way (``gc.freeze``) and young collections made rarer."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def serve(
    factory: Callable[[], Flask],
    sock: socket.socket,
    *,
    workers: int = 2,
    threads: int = 4,
    name: str = "storecast",
) -> None:
    """Run ``factory()`` in gunicorn workers on ``sock`` until SIGINT/SIGTERM."""
    options = {
        "bind": [f"fd://{sock.fileno()}"],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "proc_name": name,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "graceful_timeout": 10,
        "timeout": 120,
        "keepalive": 5,
        "child_exit": _child_exit,
        "post_worker_init": _tune_gc,
    }
    _Gunicorn(factory, options).run()
