"""Starting a storecast server as a child process and stopping it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from storecast.common.errors import ConfigError

_URL = re.compile(r"http://[\d.]+:\d+")


@contextmanager
def server_process(*args: str, ready_timeout_s: float = 60) -> Iterator[str]:
    """Run ``storecast *args`` (a ``serve`` command with ``--port 0``) and yield its URL
    once ``/healthz`` answers; SIGINT (then SIGKILL) when the block ends, also on error."""
    # The server's log goes to a file, not a pipe nobody drains (a full pipe would block it).
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "storecast", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            found = _URL.search(line)
            if found is None:
                stop(proc)
                log.seek(0)
                raise ConfigError(
                    f"`storecast {' '.join(args)}` did not start: {line}{log.read()[-2000:]}"
                )
            wait_healthy(found.group(0), proc, ready_timeout_s)
            yield found.group(0)
        finally:
            stop(proc)
            if proc.stdout:
                proc.stdout.close()


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    """Poll ``url/healthz`` until it answers 200 (ConfigError if the process dies first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the server at {url} exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise ConfigError(f"the server at {url} did not become healthy in {timeout_s:.0f}s")


def stop(proc: subprocess.Popen[str], timeout_s: float = 30) -> int:
    """SIGINT, wait, then SIGKILL; the process's exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
