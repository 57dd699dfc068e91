"""The model updater: poll the assignment, fetch through TUF, check, smoke-test, activate.

One pass (``check``):

    poll GET /v1/devices/{id}/assignment (ETag; 304 when unchanged)
      → nothing new (the assigned digest is active, or was rejected and its backoff runs)
      → tuf.ngclient.Updater: refresh, target info, download (hash and length checked)
      → the target's sha256 must be the assignment's
      → ModelStore.install: safe unpack, member hashes checked against metadata.json
      → load the candidate beside the active model → smoke test
      → ModelStore.activate (atomic pointer swap) → ModelHolder.swap

Any failure keeps the active model and is reported as a ``model`` event with action
``rejected`` and the reason; the digest is not tried again until the assignment changes
or ``reject_backoff_s`` passes. A registry that cannot be reached is not a rejection: the
poll backs off (exponentially, capped) and the agent keeps forecasting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
from tuf.api.exceptions import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    RepositoryError,
)

from storecast.common.clock import Clock
from storecast.common.errors import StorecastError
from storecast.common.files import atomic_write_bytes
from storecast.common.tuf_client import make_updater
from storecast.edge.backoff import Backoff
from storecast.edge.config import EdgeConfig, EdgeHome
from storecast.edge.forecaster import Forecaster, ModelHolder, has_full_lookback
from storecast.edge.modelstore import ModelStore
from storecast.edge.refusals import Refusals
from storecast.edge.runtime import LoadedModel, load_model
from storecast.edge.smoke import SmokeBudget, probe_level, probe_windows, smoke_test
from storecast.forecasting.features import WindowBuilder, Windows

__all__ = ["Assignment", "ModelUpdater", "Reporter", "UpdateResult"]

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where the updater sends lifecycle events (the telemetry outbox)."""

    def model_event(
        self,
        action: str,
        name: str,
        version: int,
        digest: str | None = None,
        reason: str | None = None,
        duration_ms: float | None = None,
    ) -> None: ...

    def error(self, component: str, kind: str, message: str) -> None: ...


@dataclass(frozen=True)
class Assignment:
    """What the registry wants this device to run."""

    model: str | None
    version: int | None
    target_path: str | None
    sha256: str | None

    @classmethod
    def from_json(cls, data: Any) -> Assignment:
        """The poll's JSON; ``ValueError`` when it is not an assignment."""
        if not isinstance(data, dict):
            raise ValueError("the assignment poll did not answer a JSON object")
        fields = (
            data.get("model"),
            data.get("version"),
            data.get("target_path"),
            data.get("sha256"),
        )
        model, version, target_path, sha256 = fields
        if not (
            (model is None or isinstance(model, str))
            and (version is None or isinstance(version, int))
            and (target_path is None or isinstance(target_path, str))
            and (sha256 is None or isinstance(sha256, str))
        ):
            raise ValueError(f"the assignment poll answered an unexpected body: {data!r:.200}")
        return cls(model, version, target_path, sha256)


@dataclass(frozen=True)
class UpdateResult:
    """How the last update attempt ended: activated, rejected or error."""

    outcome: str
    at: datetime
    model: str | None = None
    version: int | None = None
    digest: str | None = None
    reason: str | None = None
    duration_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
        }


class _Rejected(Exception):
    """The candidate is refused (kept out for ``reject_backoff_s``)."""


class ModelUpdater:
    """Keeps the device on its assigned model version."""

    def __init__(
        self,
        config: EdgeConfig,
        home: EdgeHome,
        store: ModelStore,
        holder: ModelHolder,
        forecaster: Forecaster,
        reporter: Reporter,
        clock: Clock,
        *,
        client: httpx.Client | None = None,
        rng: random.Random | None = None,
        on_activated: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self._config, self._home, self._store = config, home, store
        self._holder, self._forecaster, self._reporter = holder, forecaster, reporter
        self._clock = clock
        self._client = client or httpx.Client(timeout=httpx.Timeout(10.0))
        self._owns_client = client is None
        self._rng = rng or random.Random()
        settings = config.agent
        self._backoff = Backoff(
            min(5.0, settings.poll_interval_s), settings.poll_backoff_cap_s, self._rng
        )
        self._on_activated = on_activated
        self._etag: str | None = None
        self._assignment: Assignment | None = None
        self._refusals = Refusals(home.root / "refused.json")
        self._lock = threading.Lock()  # one pass at a time (the loop and a manual check)
        self._wake = threading.Event()
        self.last_poll_ok: bool | None = None
        self.last_result: UpdateResult | None = None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    @property
    def poll_failures(self) -> int:
        """Polls failed in a row (0 after a success)."""
        return self._backoff.failures

    def hold(self, digest: str, reason: str) -> None:
        """Do not install ``digest`` again until the assignment changes (a local rollback)."""
        with self._lock:
            self._refusals.refuse(digest, None, reason)

    def wake(self) -> None:
        """Poll now instead of at the next scheduled time."""
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set: every interval ±jitter, backing off after errors."""
        while not stop.is_set():
            ok = self.check()
            delay = self._next_delay(ok)
            self._wake.wait(delay)
            self._wake.clear()

    def _next_delay(self, ok: bool) -> float:
        if not ok:
            return self._backoff.next()
        self._backoff.reset()
        settings = self._config.agent
        jitter = settings.poll_jitter
        return settings.poll_interval_s * (1.0 + self._rng.uniform(-jitter, jitter))

    # -- one pass --------------------------------------------------------------------------

    def check(self) -> bool:
        """Poll once and act on the answer; False when it should be retried after a backoff.

        Never raises: whatever goes wrong (the network, an answer that is not the API's, a
        full disk) is reported and retried, and the active model keeps serving.
        """
        with self._lock:
            started = time.perf_counter()
            try:
                assignment = self._poll()
            except (httpx.HTTPError, _PollRefused, ValueError, KeyError, TypeError) as exc:
                self.last_poll_ok = False
                self._record("error", reason=f"assignment poll failed: {exc}")
                self._reporter.error("updater", "poll_failed", str(exc)[:2000])
                log.warning("assignment poll failed: %s", exc)
                return False
            self.last_poll_ok = True
            try:
                return self._act(assignment, started)
            except Exception as exc:  # a bug or the disk: report it, keep the active model
                log.exception("model update failed")
                self._record("error", reason=f"update failed: {type(exc).__name__}: {exc}")
                self._reporter.error("updater", "update_failed", f"{type(exc).__name__}: {exc}")
                return False

    def _poll(self) -> Assignment:
        config = self._config
        active = self._holder.current
        params: dict[str, str | int] = (
            {"current_model": active.name, "current_version": active.version} if active else {}
        )
        headers = {"Authorization": f"Bearer {config.token}"}
        if self._etag and self._assignment is not None:
            headers["If-None-Match"] = self._etag
        url = f"{config.registry()}/v1/devices/{config.device_id}/assignment"
        response = self._client.get(url, params=params, headers=headers)
        if response.status_code == 304 and self._assignment is not None:
            return self._assignment
        if response.status_code != 200:
            raise _PollRefused(f"HTTP {response.status_code}: {response.text[:200]}")
        self._etag = response.headers.get("ETag")
        assignment = Assignment.from_json(response.json())
        self._refusals.assigned(assignment.sha256)  # a new one: earlier refusals end
        self._assignment = assignment
        return assignment

    def _act(self, assignment: Assignment, started: float) -> bool:
        """Update when the assigned digest is neither active nor recently rejected.

        ``last_result`` keeps the last update attempt (activated, rejected, error), so a
        quiet poll does not hide why the device is not on its assigned version.
        """
        active = self._holder.current
        if assignment.sha256 is None or assignment.target_path is None:
            return True  # nothing is deployed to this device
        if active is not None and active.digest == assignment.sha256:
            return True
        if self._refusals.refused(assignment.sha256, self._clock.now()) is not None:
            return True
        return self._update(assignment, assignment.sha256, assignment.target_path, started)

    def _update(
        self, assignment: Assignment, digest: str, target_path: str, started: float
    ) -> bool:
        name, version = assignment.model or "?", assignment.version or 0
        self._reporter.model_event("download_started", name, version, digest)
        folder: Path | None = None
        try:
            bundle = self._download(target_path, digest)
            folder = self._store.install(bundle, digest)
            self._reporter.model_event("verified", name, version, digest)
            candidate = load_model(folder)
            self._smoke(candidate)
        except (_Rejected, StorecastError, RepositoryError, DownloadLengthMismatchError) as exc:
            reason = str(exc) or type(exc).__name__
            pointers = self._store.pointers()
            if folder is not None and folder.name not in (pointers.active, pointers.previous):
                self._store.remove(folder)  # a rejected candidate must never be loaded
            for leftover in self._home.downloads.glob("*"):
                leftover.unlink(missing_ok=True)
            return self._reject(assignment, digest, reason, started)
        except DownloadError as exc:
            if isinstance(exc, DownloadHTTPError) and exc.status_code in (404, 410):
                return self._reject(assignment, digest, f"download refused: {exc}", started)
            # The network or the server, not the bundle: try again after the backoff.
            reason = f"download failed: {exc}"
            self._record("error", model=name, version=version, digest=digest, reason=reason)
            self._reporter.error("updater", "download_failed", reason[:2000])
            return False
        self._store.activate(folder)
        self._holder.swap(candidate)
        duration = (time.perf_counter() - started) * 1000.0
        self._reporter.model_event("activated", name, version, digest, duration_ms=duration)
        self._record("activated", model=name, version=version, digest=digest, duration_ms=duration)
        log.info("activated %s v%s (%s) in %.0f ms", name, version, digest[:12], duration)
        if self._on_activated is not None:
            self._on_activated(candidate)
        self._store.prune()
        bundle.unlink(missing_ok=True)
        return True

    def _download(self, target_path: str, digest: str) -> Path:
        home = self._home
        home.downloads.mkdir(parents=True, exist_ok=True)
        restore_trusted_root(home)
        updater = make_updater(
            self._config.registry(),
            self._config.token,
            home.tuf_metadata,
            home.downloads,
            client=self._client,
        )
        updater.refresh()
        info = updater.get_targetinfo(target_path)
        if info is None:
            raise _Rejected(f"{target_path} is not a signed target of the registry (withdrawn?)")
        signed = info.hashes.get("sha256")
        if signed != digest:
            raise _Rejected(
                f"{target_path}: the signed sha256 {signed} is not the assigned {digest}"
            )
        cached = updater.find_cached_target(info)
        return Path(cached or updater.download_target(info))

    def _smoke(self, candidate: LoadedModel) -> None:
        spec = candidate.spec
        origin = self._forecaster.origin()
        window = self._forecaster.sensors.window(
            origin, spec.lookback, spec.horizon, self._config.store_id
        )
        windows: Windows
        if has_full_lookback(window, spec.lookback):
            windows = WindowBuilder(window.history, spec).build(
                np.array([0]), np.array([spec.lookback])
            )
            observed = window.history.observed[0, : spec.lookback]
            level: float | None = float(window.history.sales[0, : spec.lookback][observed].mean())
        else:
            windows = probe_windows(spec)
            level = probe_level(windows)
        budget = SmokeBudget(latency_ms=self._config.agent.smoke_latency_ms)
        result = smoke_test(candidate, windows, level, budget)
        if not result.ok:
            raise _Rejected(f"smoke test failed: {result.reason}")

    def _reject(self, assignment: Assignment, digest: str, reason: str, started: float) -> bool:
        until = self._clock.now() + timedelta(seconds=self._config.agent.reject_backoff_s)
        self._refusals.refuse(digest, until, reason[:500])
        duration = (time.perf_counter() - started) * 1000.0
        name, version = assignment.model or "?", assignment.version or 0
        self._reporter.model_event(
            "rejected", name, version, digest, reason=reason[:2000], duration_ms=duration
        )
        self._record("rejected", model=name, version=version, digest=digest, reason=reason)
        log.warning("rejected %s v%s (%s): %s", name, version, digest[:12], reason)
        return True

    def _record(self, outcome: str, **fields: Any) -> None:
        self.last_result = UpdateResult(outcome, self._clock.now(), **fields)


class _PollRefused(Exception):
    """The registry answered the poll with an error status."""


def restore_trusted_root(home: EdgeHome) -> None:
    """Make sure ``tuf/metadata/root.json`` is there before python-tuf reads it.

    python-tuf re-points that symlink after each refresh by deleting and recreating it; a
    power cut in between would leave no trusted root. Restore it from the newest root in
    python-tuf's own ``root_history`` (roots it verified), else from the provisioned root
    ``edge init`` stored.
    """
    link = home.tuf_metadata / "root.json"
    if link.exists():
        return
    history = sorted(
        (home.tuf_metadata / "root_history").glob("*.root.json"),
        key=lambda p: int(p.name.split(".", 1)[0]) if p.name.split(".", 1)[0].isdigit() else 0,
    )
    source = history[-1] if history else home.provisioned_root
    if not source.exists():
        return  # make_updater says what is missing
    if link.is_symlink():
        link.unlink()
    atomic_write_bytes(link, source.read_bytes())
    log.warning("restored the trusted TUF root from %s", source)
