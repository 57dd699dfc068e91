"""Where simulated telemetry goes: a JSONL file, or a running analytics service.

``post`` enrols every simulated device through the registry (``POST /v1/devices``, admin
token), then sends each device's events to ``POST /v1/telemetry`` with that device's
token, in batches within the endpoint's limits, retrying server errors and unreachable
servers with exponential backoff. Resending the same seed is safe: the events keep their
ids, so the service counts them as duplicates.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from storecast.analytics.schemas import MAX_BATCH_BYTES, MAX_EVENTS
from storecast.client import ApiRefused, CloudClient
from storecast.common.errors import ConfigError, DataError
from storecast.common.files import atomic_path
from storecast.sim.telemetry import Event, SimDevice, TelemetrySim, TelemetrySimConfig

log = logging.getLogger(__name__)

DEVICES = "/v1/devices"
TELEMETRY = "/v1/telemetry"
Progress = Callable[[int, int], None]  # (devices finished, events sent so far)
RETRIES = 5  # attempts per request after the first
MAX_REJECTION_SAMPLES = 20  # rejections kept in PostTotals for the report


@dataclass
class PostTotals:
    """What the service said about everything sent."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejection_samples: list[dict[str, Any]] = field(default_factory=list)  # the first few
    devices: int = 0  # devices whose events were all sent
    interrupted: bool = False  # Ctrl-C stopped the run early

    @property
    def sent(self) -> int:
        """Events the service answered for."""
        return self.accepted + self.duplicates + self.rejected


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # compact, strict JSON


def _dumps(event: Mapping[str, Any]) -> str:
    return _ENCODER.encode(event)


def write_jsonl(events: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write ``events`` one JSON object a line, atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(_dumps(event))
            fh.write("\n")
            n += 1
    return n


def load_tokens(path: Path) -> dict[str, str]:
    """Device tokens saved by an earlier run (``{device_id: token}``); empty if none yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a device token file ({exc})") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise DataError(f"{path}: expected a JSON object of device id to token")
    return data


def save_tokens(tokens: Mapping[str, str], path: Path) -> None:
    """Save device tokens (secrets: readable by the owner only), atomically."""
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_text(json.dumps(dict(sorted(tokens.items())), indent=1) + "\n", "utf-8")


def batches(events: Iterable[Event], batch_size: int) -> Iterator[tuple[int, bytes]]:
    """Request bodies ``{"events": [...]}`` of at most ``batch_size`` events and
    ``MAX_BATCH_BYTES`` bytes each, with their event counts."""
    if not 1 <= batch_size <= MAX_EVENTS:
        raise ConfigError(f"batch size must be in 1..{MAX_EVENTS}, got {batch_size}")
    head, tail = b'{"events":[', b"]}"
    parts: list[bytes] = []
    size = len(head) + len(tail)
    for event in events:
        part = _dumps(event).encode()
        if parts and (len(parts) == batch_size or size + len(part) + 1 > MAX_BATCH_BYTES):
            yield len(parts), head + b",".join(parts) + tail
            parts, size = [], len(head) + len(tail)
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield len(parts), head + b",".join(parts) + tail


def _retryable(exc: Exception) -> bool:
    """A server error, a busy server, or no server (CloudClient's "cannot reach")."""
    if isinstance(exc, ApiRefused):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, ConfigError)


def _with_retries(call: Callable[[], Any], what: str, backoff_s: float) -> Any:
    """``call()``, retried with exponential backoff while it fails in a retryable way."""
    attempt = 0
    while True:
        try:
            return call()
        except (ApiRefused, ConfigError) as exc:
            if attempt == RETRIES or not _retryable(exc):
                raise
            delay = backoff_s * 2**attempt
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            attempt += 1


def _device_token(
    client: CloudClient, device: SimDevice, tokens: MutableMapping[str, str], backoff_s: float
) -> str:
    """The device's token: a saved one, or a new one (enrolling the device, or replacing
    the token of a device enrolled before, which revokes its old token)."""
    if device.device_id in tokens:
        return tokens[device.device_id]
    body = {
        "device_id": device.device_id,
        "store_id": device.store_id,
        "region": device.region,
        "tags": [],
    }
    try:
        enrolled = _with_retries(
            partial(client.json, "POST", DEVICES, json=body),
            f"enrolling {device.device_id}",
            backoff_s,
        )
    except ApiRefused as exc:
        if exc.status != 409:
            raise
        enrolled = _with_retries(
            partial(client.json, "POST", f"{DEVICES}/{device.device_id}/token"),
            f"replacing the token of {device.device_id}",
            backoff_s,
        )
    token = str(enrolled["token"])
    tokens[device.device_id] = token
    return token


def post(
    url: str,
    admin_token: str,
    sim: TelemetrySim | TelemetrySimConfig,
    *,
    batch_size: int = 500,
    tokens: MutableMapping[str, str] | None = None,
    progress: Progress | None = None,
    backoff_s: float = 0.5,
) -> PostTotals:
    """Enrol ``sim``'s devices and send their events to ``url``; return the service's totals.

    ``tokens`` maps device ids to device tokens: known devices are not enrolled again, and
    newly enrolled ones are added (save it to resend later). Ctrl-C stops after the
    current request and returns what was sent so far with ``interrupted`` set.
    """
    if isinstance(sim, TelemetrySimConfig):
        sim = TelemetrySim(sim)
    totals = PostTotals()
    known: MutableMapping[str, str] = {} if tokens is None else tokens
    events_sent = 0
    try:
        with CloudClient(url, admin_token) as client:
            for device, events in sim.streams():
                token = _device_token(client, device, known, backoff_s)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                for count, body in batches(events, batch_size):
                    ack = _with_retries(
                        partial(client.json, "POST", TELEMETRY, content=body, headers=headers),
                        f"sending {count} events of {device.device_id}",
                        backoff_s,
                    )
                    _add(totals, ack)
                    events_sent += count
                    if progress is not None:
                        progress(totals.devices, events_sent)
                totals.devices += 1
                if progress is not None:
                    progress(totals.devices, events_sent)
    except KeyboardInterrupt:
        totals.interrupted = True
    return totals


def _add(totals: PostTotals, ack: Any) -> None:
    try:
        totals.accepted += int(ack["accepted"])
        totals.duplicates += int(ack["duplicates"])
        rejected = list(ack["rejected"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"unexpected answer from /v1/telemetry: {str(ack)[:200]}") from exc
    totals.rejected += len(rejected)
    room = MAX_REJECTION_SAMPLES - len(totals.rejection_samples)
    totals.rejection_samples.extend(rejected[: max(room, 0)])
