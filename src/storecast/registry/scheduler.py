"""Runs the rollout controller on a schedule inside a cloud process (a daemon thread).

Every gunicorn worker of every replica may run one: ``rollouts.tick`` is idempotent and
takes one decision per step however many run at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from storecast.common.cloud import Database
from storecast.registry import rollouts

log = logging.getLogger(__name__)

Tick = Callable[[Database], object]


class RolloutScheduler:
    """Calls ``tick(db)`` every ``interval_s`` seconds until ``stop``."""

    def __init__(self, db: Database, interval_s: float, tick: Tick = rollouts.tick) -> None:
        if interval_s <= 0:
            raise ValueError("the rollout interval must be positive")
        self._db = db
        self._interval_s = interval_s
        self._tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="storecast-rollouts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end and wait for it (a tick under way finishes first)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        log.info("rollout controller: every %g s", self._interval_s)
        while not self._stopped.wait(self._interval_s):
            try:
                self._tick(self._db)
            except Exception:  # the database is away: try again next time
                log.exception("rollout controller tick failed")
