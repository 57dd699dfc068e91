"""Starting a storecast server as a child process and stopping it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO

import httpx

from storecast.common.errors import ConfigError

_URL = re.compile(r"http://[\d.]+:\d+")
STORECAST = ("-m", "storecast")  # how the interpreter runs the CLI


def launch(
    args: Sequence[str],
    log: IO[str],
    *,
    pipe_stdout: bool = True,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    interpreter_args: Sequence[str] = STORECAST,
) -> subprocess.Popen[str]:
    """Start ``python -m storecast *args`` with stderr in ``log``, plain wide output, and
    stdout piped (where a server prints its URL) or in ``log`` too.

    ``new_session``: Ctrl-C in the terminal reaches the parent alone, which then stops the
    child (rather than both at once). ``interpreter_args`` replace ``-m storecast`` (e.g.
    ``-c`` and a script that runs the CLI).
    """
    return subprocess.Popen(
        [sys.executable, *interpreter_args, *args],
        stdout=subprocess.PIPE if pipe_stdout else log,
        stderr=log,
        text=True,
        env={**(os.environ if env is None else env), "COLUMNS": "200", "NO_COLOR": "1"},
        start_new_session=new_session,
    )


def announced_url(proc: subprocess.Popen[str], log: IO[str], what: str) -> str:
    """The URL a launched server prints on its first line; if none, the child is stopped and
    ``ConfigError`` says what it printed and the end of its log."""
    line = proc.stdout.readline() if proc.stdout else ""
    found = _URL.search(line)
    if found is None:
        stop(proc)
        log.seek(0)
        raise ConfigError(f"{what} did not start: {line}{log.read()[-3000:]}")
    return found.group(0)


@contextmanager
def running_server(
    *args: str,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    ready_timeout_s: float = 60,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``storecast *args`` (a ``serve`` command with ``--port 0``) and yield its URL and
    process once ``/healthz`` answers; SIGINT (then SIGKILL) when the block ends, also on
    error or Ctrl-C."""
    # The server's log goes to a file, not a pipe nobody drains (a full pipe would block it).
    with tempfile.TemporaryFile("w+") as log:
        proc = launch(args, log, env=env, new_session=new_session)
        try:
            url = announced_url(proc, log, f"`storecast {' '.join(args)}`")
            wait_healthy(url, proc, ready_timeout_s)
            yield url, proc
        finally:
            stop(proc)
            if proc.stdout:
                proc.stdout.close()


@contextmanager
def server_process(*args: str, ready_timeout_s: float = 60) -> Iterator[str]:
    """``running_server``'s URL alone."""
    with running_server(*args, ready_timeout_s=ready_timeout_s) as (url, _):
        yield url


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
