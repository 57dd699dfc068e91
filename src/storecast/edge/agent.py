"""The agent: one store's sensors, model, forecasts and telemetry, and the threads that run them.

``Agent`` wires the parts together and owns their background work:

    updater   polls the assignment, fetches, checks and activates models (edge.updater)
    uploader  empties the telemetry outbox into the analytics service (edge.uploader)
    ticker    inference stats every ``inference_window_s``, a heartbeat every
              ``heartbeat_interval_s``

Readings come in through ``add_readings``: they are stored, each hour they complete is
queued once as an ``actual`` event in the same transaction, and each new origin hour
gets one ``forecast`` event (forecasts are reported per origin hour, never per request).
"""

from __future__ import annotations

import logging
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from storecast import __version__
from storecast.common.clock import Clock, SystemClock
from storecast.edge.config import EdgeConfig, EdgeHome, load_config
from storecast.edge.events import EventFactory, InferenceStats
from storecast.edge.forecaster import Forecast, Forecaster, ModelHolder
from storecast.edge.localdb import LocalDB
from storecast.edge.modelstore import ModelStore, ModelStoreError, Pointers
from storecast.edge.outbox import Outbox
from storecast.edge.runtime import LoadedModel, load_model
from storecast.edge.sensors import AddResult, Reading, SensorStore
from storecast.edge.updater import ModelUpdater
from storecast.edge.uploader import Uploader

__all__ = ["Agent"]

log = logging.getLogger(__name__)

_STATE_TABLE = "CREATE TABLE IF NOT EXISTS agent_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_REPORTED_ORIGIN = "reported_origin"  # the last origin hour a forecast event was queued for


def model_key(model: LoadedModel | None) -> tuple[str, int] | None:
    return (model.name, model.version) if model is not None else None


class Agent:
    """A store's edge agent over the device home ``home``."""

    def __init__(
        self,
        home: Path,
        *,
        clock: Clock | None = None,
        config: EdgeConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.home = EdgeHome(home)
        self.config = config or load_config(home)
        self.clock = clock or SystemClock()
        settings = self.config.agent
        self._started_mono = self.clock.monotonic()
        self.db = LocalDB(self.home.database)
        with self.db.transaction() as conn:
            conn.execute(_STATE_TABLE)
        self.sensors = SensorStore(
            self.db, retention=timedelta(days=settings.readings_retention_days)
        )
        self.outbox = Outbox(self.db, capacity=settings.outbox_capacity)
        self.events = EventFactory(self.config.device_id, self.config.store_id, self.clock)
        self.stats = InferenceStats(self.clock.now())
        self.models = ModelStore(self.home.models)
        startup = self.models.load_startup()
        self.holder = ModelHolder(startup.model)
        self.forecaster = Forecaster(self.sensors, self.holder, self.config.store_id, self.clock)
        self.updater = ModelUpdater(
            self.config, self.home, self.models, self.holder, self.forecaster, self, self.clock,
            rng=rng,
        )  # fmt: skip
        self.uploader = Uploader(
            self.outbox,
            self.config.analytics(),
            self.config.token,
            self.clock,
            batch_size=settings.upload_batch,
            poll_interval_s=settings.upload_interval_s,
        )
        self._stop = threading.Event()
        self._upload_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement
        self._report_startup(startup.fell_back, startup.problems)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the updater, uploader and ticker threads."""
        targets = {
            "updater": lambda: self.updater.run(self._stop),
            "uploader": lambda: self.uploader.run(self._stop, self._upload_wake),
            "ticker": self._tick_loop,
        }
        for name, target in targets.items():
            thread = threading.Thread(target=target, name=f"edge-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0, *, final_upload: bool = True) -> None:
        """Stop the threads, queue the last stats, try one last upload, close the database.

        The last upload is best effort: whatever the cloud does not take stays in the
        outbox for the next start.
        """
        self._stop.set()
        self.updater.wake()
        self._upload_wake.set()
        for thread in self._threads:
            thread.join(timeout_s)
        started = bool(self._threads)
        self._threads.clear()
        self._flush_stats()
        if final_upload and started:
            result = self.uploader.drain()
            if not result.ok:
                log.info("left %d event(s) in the outbox: %s", self.outbox.depth(), result.error)
        self.updater.close()
        self.uploader.close()
        self.db.close()

    @property
    def alive(self) -> bool:
        """Whether every background thread that was started still runs."""
        return all(t.is_alive() for t in self._threads)

    def uptime_s(self) -> float:
        return self.clock.monotonic() - self._started_mono

    # -- readings and forecasts ------------------------------------------------------------

    def add_readings(self, readings: Sequence[Reading]) -> AddResult:
        """Store readings; queue the actuals of the hours they complete, and a forecast for a
        new origin hour."""
        model = model_key(self.holder.current)
        with self.db.transaction() as conn:
            before = self.sensors.origin()
            result = self.sensors.add(readings)
            completed = self.sensors.take_completed(conn)
            self.outbox.put(
                [
                    self.events.actual(
                        hour=c.hour, sales_units=c.sales_units, footfall=c.footfall, model=model
                    )
                    for c in completed
                ]
            )
            if before is not None and any(r.ts < before for r in readings):
                self.forecaster.invalidate()
            if self.sensors.origin() != before:
                self._report_forecast(conn)  # in the same transaction: never lost, never twice
        if completed:
            self._upload_wake.set()
        return result

    def forecast(self, horizon: int) -> Forecast:
        """A forecast for the API, counted in the inference stats."""
        started = time.perf_counter()
        model = self.holder.current
        try:
            result = self.forecaster.forecast(horizon)
        except Exception:
            self.stats.record((time.perf_counter() - started) * 1000.0, False, model_key(model))
            raise
        # A model that failed (and was answered for by the fallback) counts as an error of
        # the model that was active, so its error rate shows it.
        failed_model = model if result.failure else result.model
        elapsed = (time.perf_counter() - started) * 1000.0
        self.stats.record(elapsed, result.failure is None, model_key(failed_model))
        return result

    def _report_forecast(self, conn: sqlite3.Connection) -> None:
        """Queue the forecast of a new origin hour (once per origin, in ``conn``'s transaction)."""
        origin = self.sensors.origin()
        if origin is None:
            return
        row = conn.execute(
            "SELECT value FROM agent_state WHERE key = ?", (_REPORTED_ORIGIN,)
        ).fetchone()
        if row is not None and datetime.fromisoformat(row[0]) >= origin:
            return  # already reported (or time went back: late data)
        forecast = self.forecaster.forecast()
        self.outbox.put(
            [
                self.events.forecast(
                    origin=forecast.origin,
                    points=forecast.points,
                    model=model_key(forecast.model),
                )
            ]
        )
        conn.execute(
            "INSERT INTO agent_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_REPORTED_ORIGIN, origin.isoformat()),
        )

    # -- model lifecycle -------------------------------------------------------------------

    def rollback(self) -> Pointers:
        """Go back to the previous model and stay there until the assignment changes.

        The previous model is loaded (and verified) before anything changes, so a failure
        leaves the device as it was. ``ModelStoreError`` when there is no previous model.
        """
        pointers = self.models.pointers()
        if pointers.previous is None:
            raise ModelStoreError("there is no previous model to roll back to")
        model = load_model(self.models.path(pointers.previous))
        pointers = self.models.rollback()
        old = self.holder.swap(model)
        reason = f"local rollback from {old.name} v{old.version}" if old else "local rollback"
        if old is not None:
            self.updater.hold(old.digest, reason)
        self.model_event("rolled_back", model.name, model.version, model.digest, reason=reason)
        return pointers

    def _report_startup(self, fell_back: bool, problems: list[str]) -> None:
        model = self.holder.current
        if fell_back and model is not None:
            reason = "; ".join(problems)[:2000] or "the active model could not be loaded"
            self.model_event("rolled_back", model.name, model.version, model.digest, reason=reason)
        for problem in problems:
            self.error("modelstore", "load_failed", problem)

    # -- the updater's reporter ------------------------------------------------------------

    def model_event(
        self,
        action: str,
        name: str,
        version: int,
        digest: str | None = None,
        reason: str | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """Queue a model lifecycle event."""
        event = self.events.model_event(
            action=action, name=name, version=version, digest=digest, reason=reason,
            duration_ms=duration_ms, model=model_key(self.holder.current),
        )  # fmt: skip
        self.outbox.put([event])
        self._upload_wake.set()

    def error(self, component: str, kind: str, message: str) -> None:
        """Queue an error event."""
        event = self.events.error(
            component=component, kind=kind, message=message, model=model_key(self.holder.current)
        )
        self.outbox.put([event])

    # -- periodic telemetry ----------------------------------------------------------------

    def _tick_loop(self) -> None:
        settings = self.config.agent
        next_stats = next_beat = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_stats:
                    self._flush_stats()
                    next_stats = now + settings.inference_window_s
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + settings.heartbeat_interval_s
            except Exception:  # a full disk must not end telemetry for good
                log.exception("periodic telemetry failed")
            self._stop.wait(max(0.05, min(next_stats, next_beat) - time.monotonic()))

    def _flush_stats(self) -> None:
        windows = self.stats.drain(self.clock.now())
        if windows:
            self.outbox.put([self.events.inference(**window) for window in windows])

    def heartbeat(self) -> None:
        """Queue a heartbeat with the agent's vital signs."""
        disk = shutil.disk_usage(self.home.root)
        event = self.events.heartbeat(
            cpu_pct=self._process.cpu_percent(None),
            rss_mb=self._process.memory_info().rss / 2**20,
            disk_free_mb=disk.free / 2**20,
            uptime_s=self.uptime_s(),
            agent_version=__version__,
            outbox_depth=self.outbox.depth(),
            dropped_events=self.outbox.dropped(),
            last_poll_ok=bool(self.updater.last_poll_ok),
            last_upload_ok=bool(self.uploader.last_ok),
            model=model_key(self.holder.current),
        )
        self.outbox.put([event])

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``storecast edge status`` shows."""
        model = self.holder.current
        pointers = self.models.pointers()
        latest = self.sensors.latest_ts()
        last = self.updater.last_result
        return {
            "device_id": self.config.device_id,
            "store_id": self.config.store_id,
            "agent_version": __version__,
            "uptime_s": round(self.uptime_s(), 1),
            "model": describe(model),
            "previous": pointers.previous,
            "last_update": last.to_json() if last else None,
            "last_poll_ok": self.updater.last_poll_ok,
            "poll_failures": self.updater.poll_failures,
            "last_upload_ok": self.uploader.last_ok,
            "outbox_depth": self.outbox.depth(),
            "events_created": self.outbox.created(),
            "dropped_events": self.outbox.dropped(),
            "rejected_events": self.outbox.moved_aside(),
            "latest_reading": latest.isoformat().replace("+00:00", "Z") if latest else None,
            "origin": self.forecaster.origin().isoformat().replace("+00:00", "Z"),
            "history_hours": self.sensors.hours_with_sales(),
        }


def describe(model: LoadedModel | None) -> dict[str, Any] | None:
    """A model as the API shows it."""
    if model is None:
        return None
    return {
        "name": model.name,
        "version": model.version,
        "digest": model.digest,
        "runtime": model.runtime,
        "folder": model.folder.name,
    }
