"""The uploader: sends the outbox to ``POST {analytics}/v1/telemetry`` in batches.

What each answer does to the batch's events:

    200                 acknowledged ones are deleted; the ones the server rejects (by
                        index) are set aside with its reason, never resent
    network error, 5xx, nothing changes; the caller backs off and tries again later
    401, 403, other
    413                 the batch is halved (and stays at most that size); a single event
                        too large on its own is set aside
    400, 422            the agent built this batch, so one of its events must be corrupt:
                        the batch is halved until the culprit is alone, then set aside

A batch is the oldest queued events, at most ``batch_size`` of them and ``max_batch_bytes``
of JSON, sent as the bytes stored at queueing time (a resend is byte-identical, so the
cloud counts it as duplicates). Every step removes events or halves the batch, so nothing
is retried forever except while the server is unreachable or refuses the token.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from dataclasses import dataclass
from datetime import datetime

import httpx
from pydantic import BaseModel, ValidationError

from storecast.common.clock import Clock
from storecast.common.telemetry import EventRejection
from storecast.edge.backoff import Backoff
from storecast.edge.outbox import Outbox, OutboxItem

__all__ = ["TELEMETRY_PATH", "UploadResult", "Uploader"]

log = logging.getLogger(__name__)

TELEMETRY_PATH = "/v1/telemetry"
MAX_BATCH_EVENTS = 500  # events per POST (the service takes up to 1000)
MAX_BATCH_BYTES = 1_000_000  # bytes of JSON per POST (the service takes up to 2 MiB)
_STOP_CHECK_S = 0.2  # how often an idle wait looks at the stop event


class _Ack(BaseModel):
    """The service's answer to a batch (mirrors ``TelemetryAck``)."""

    accepted: int
    duplicates: int
    rejected: list[EventRejection]


@dataclass
class UploadResult:
    """What one or more batches achieved. ``ok`` is False when the service was unreachable
    or refused the batch for a reason worth backing off for (``error`` says which)."""

    sent: int = 0  # events posted
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0  # set aside
    ok: bool = True
    error: str | None = None

    def add(self, other: UploadResult) -> None:
        """Fold a later batch's result into this one (``ok`` and ``error`` are the later's)."""
        self.sent += other.sent
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.ok, self.error = other.ok, other.error


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:500]
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


class Uploader:
    """Moves events from an ``Outbox`` to the analytics service with a device token."""

    def __init__(
        self,
        outbox: Outbox,
        analytics_url: str,
        token: str,
        clock: Clock,
        *,
        batch_size: int = MAX_BATCH_EVENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        client: httpx.Client | None = None,
        backoff: Backoff | None = None,
        poll_interval_s: float = 5.0,  # idle wait between outbox checks
        timeout_s: float = 30.0,  # per request, when the uploader makes its own client
    ) -> None:
        if batch_size < 1 or max_batch_bytes < 1:
            raise ValueError("batch_size and max_batch_bytes must be positive")
        self.outbox = outbox
        self.url = analytics_url.rstrip("/") + TELEMETRY_PATH
        self.clock = clock
        self.backoff = backoff or Backoff(1.0, 300.0, random.Random())
        self.poll_interval_s = poll_interval_s
        self.max_batch_bytes = max_batch_bytes
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        self._max_batch = batch_size  # lowered for good by a 413
        self._limit = batch_size  # lowered while a 400/422 batch is bisected
        self._last_ok: bool | None = None
        self.last_error: str | None = None
        self.last_success_at: datetime | None = None

    @property
    def last_ok(self) -> bool | None:
        """Whether the last attempt reached the service and was answered (None: no attempt)."""
        return self._last_ok

    def close(self) -> None:
        """Close the HTTP client, if the uploader made it."""
        if self._owns_client:
            self._client.close()

    def upload_once(self) -> UploadResult:
        """Send one batch of the oldest queued events and apply the answer."""
        items = self._next_batch()
        if not items:
            return UploadResult()
        body = b'{"events":[' + b",".join(item.body for item in items) + b"]}"
        try:
            response = self._client.post(self.url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return self._failed(len(items), f"network: {type(exc).__name__}: {exc}")
        status = response.status_code
        if status == 200:
            return self._acknowledged(items, response)
        if status in (400, 413, 422):
            return self._refused(items, status, _message(response))
        return self._failed(len(items), f"HTTP {status}: {_message(response)}")

    def drain(self) -> UploadResult:
        """Send batches until the outbox is empty or an attempt fails."""
        total = UploadResult()
        while True:
            result = self.upload_once()
            total.add(result)
            if not result.ok or result.sent == 0:
                return total

    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Drain, back off after failures, idle until ``wake`` or the poll interval; until
        ``stop`` is set. Never raises."""
        while not stop.is_set():
            try:
                result = self.drain()
            except Exception:  # the loop must outlive any one failure (a full disk, a bug)
                log.exception("telemetry upload failed")
                result = UploadResult(ok=False, error="internal error")
            if not result.ok:
                stop.wait(self.backoff.next())
                continue
            self.backoff.reset()
            self._idle(stop, wake)

    def _idle(self, stop: threading.Event, wake: threading.Event | None) -> None:
        if wake is None:
            stop.wait(self.poll_interval_s)
            return
        for _ in range(max(1, math.ceil(self.poll_interval_s / _STOP_CHECK_S))):
            if stop.is_set():
                return
            if wake.wait(min(self.poll_interval_s, _STOP_CHECK_S)):
                wake.clear()
                return

    def _next_batch(self) -> list[OutboxItem]:
        items = self.outbox.peek(self._limit)
        size = 0
        for n, item in enumerate(items):
            size += len(item.body) + 1
            if size > self.max_batch_bytes and n:
                return items[:n]
        return items

    def _failed(self, sent: int, error: str) -> UploadResult:
        self._last_ok, self.last_error = False, error
        log.warning("telemetry upload of %d events failed: %s", sent, error)
        return UploadResult(sent=sent, ok=False, error=error)

    def _acknowledged(self, items: list[OutboxItem], response: httpx.Response) -> UploadResult:
        try:
            ack = _Ack.model_validate_json(response.content)
        except ValidationError:
            return self._failed(len(items), "HTTP 200 with an unreadable acknowledgement")
        refused = {
            r.index: f"{r.field}: {r.reason}" for r in ack.rejected if 0 <= r.index < len(items)
        }
        with self.outbox.db.transaction():
            self.outbox.set_aside([(items[i].seq, reason) for i, reason in refused.items()])
            self.outbox.ack([item.seq for i, item in enumerate(items) if i not in refused])
        if ack.accepted + ack.duplicates + len(refused) != len(items):
            log.warning("telemetry acknowledgement does not add up to the %d sent", len(items))
        self._limit = self._max_batch
        self._last_ok, self.last_error = True, None
        self.last_success_at = self.clock.now()
        return UploadResult(
            sent=len(items), accepted=ack.accepted, duplicates=ack.duplicates, rejected=len(refused)
        )

    def _refused(self, items: list[OutboxItem], status: int, message: str) -> UploadResult:
        self._last_ok, self.last_error = True, None  # reachable; the batch was the problem
        reason = f"HTTP {status}: {message}"
        if len(items) == 1:
            self.outbox.set_aside([(items[0].seq, reason)])
            return UploadResult(sent=1, rejected=1)
        half = len(items) // 2
        if status == 413:
            self._max_batch = min(self._max_batch, half)
        self._limit = half
        log.warning("telemetry batch of %d refused (%s): retrying %d", len(items), reason, half)
        return UploadResult(sent=len(items))
