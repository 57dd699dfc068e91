"""The demo's processes: the cloud, one edge agent and one sensor simulator per store.

``Processes`` starts each as a real ``storecast`` child process with its log in
``<home>/logs``, and stops every one of them (SIGINT, then SIGKILL) when its block ends,
also on Ctrl-C or failure.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from storecast._process import announced_url, launch, stop, wait_healthy
from storecast.common.errors import ConfigError


@dataclass
class Child:
    """A started process."""

    name: str
    proc: subprocess.Popen[str]
    log: IO[str]
    url: str | None = None

    @property
    def base_url(self) -> str:
        """The URL of a started server (``ConfigError`` for a process that serves nothing)."""
        if self.url is None:
            raise ConfigError(f"{self.name} serves no URL")
        return self.url


class Processes:
    """Every process the demo starts; all stopped when the ``with`` block ends."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[Child] = []

    def __enter__(self) -> Processes:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, name: str, *args: str, serves: bool = False, ready_s: float = 60) -> Child:
        """Run ``storecast *args``; for a server, wait for its URL and ``/healthz``."""
        log = (self.logs / f"{name}.log").open("w+")
        # Its own session: Ctrl-C in the terminal reaches the demo, which stops it.
        proc = launch(args, log, pipe_stdout=serves, new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        if serves:
            child.url = announced_url(proc, log, f"{name} (log: {log.name})")
            wait_healthy(child.url, proc, ready_s)
        return child

    def stop(self, child: Child, timeout_s: float = 30) -> int:
        """SIGINT (a clean stop), then SIGKILL; the exit code."""
        code = stop(child.proc, timeout_s)
        if child.proc.stdout:
            child.proc.stdout.close()
        child.log.close()
        return code

    def stop_all(self) -> None:
        """Stop every child, newest first (simulators before agents before the cloud)."""
        for child in reversed(self.children):
            self.stop(child)

    def alive(self) -> list[str]:
        return [c.name for c in self.children if c.proc.poll() is None]


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    """Poll ``check`` until it returns something true; ``ConfigError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise ConfigError(f"timed out after {timeout_s:.0f}s waiting for {what}")
