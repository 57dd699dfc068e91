"""A synthetic store's sensors: the readings of one store of the synthetic chain, live.

Every simulated 5 minutes a step emits the store's readings, stamped with the step's start
(event time): the hour's sales and footfall split over its 12 steps (a seeded multinomial:
the same seed and hour always split the same way), its temperature at every step, its
precipitation split in 0.01 mm tips, and its promo flag. So the hourly aggregates an agent
computes (sums, the temperature mean, the promo maximum) are the chain's hour (counts
exactly; temperature and precipitation up to float rounding). Hours the chain leaves
unobserved send no sales and no footfall.

``send_readings`` posts a stream to an agent's ``POST /v1/readings``, paced so that
``speed`` simulated seconds pass per wall-clock second (``0``: as fast as possible),
several steps a request when it falls behind, retrying unreachable agents and server
errors with backoff. Pacing never stamps wall time on a reading.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import numpy as np

from storecast.client import ApiRefused
from storecast.common.clock import Clock
from storecast.common.errors import ConfigError
from storecast.forecasting.synthetic import ChainConfig, SyntheticChain, generate_chain

log = logging.getLogger(__name__)

STEP: Final = timedelta(minutes=5)
STEPS_PER_HOUR: Final = 12
READINGS_PATH: Final = "/v1/readings"
MAX_READINGS: Final = 2000  # per request (the agent takes up to 10,000)
RETRIES: Final = 6  # attempts per request after the first
Step = tuple[datetime, list[dict[str, Any]]]  # (simulated time it is sent, its readings)
Progress = Callable[["SendTotals"], None]
SPAN_DAYS: Final = 366  # a stream without an end covers a simulated year


def sensor_chain(
    store_id: str, start_hour: datetime, hours: int | None, *, seed: int, missing_rate: float = 0.0
) -> SyntheticChain:
    """The synthetic chain a sensor stream of ``store_id`` reads: it starts on
    ``start_hour``'s day and holds the stores up to ``store_id`` (a store depends only on
    the seed and its index, so the same store of a bigger chain is the same)."""
    if not (store_id[:1] == "S" and store_id[1:].isdigit() and int(store_id[1:]) >= 1):
        raise ConfigError(f"synthetic store ids are S001, S002, ...; got {store_id!r}")
    span = max(hours or 0, SPAN_DAYS * 24) + start_hour.hour
    config = ChainConfig(
        stores=int(store_id[1:]),
        days=-(-span // 24),
        seed=seed,
        start=f"{start_hour:%Y-%m-%d}",
        missing_rate=missing_rate,
    )
    return generate_chain(config)


class SensorStream:
    """The readings of one store of ``chain``, 5 simulated minutes a step."""

    def __init__(
        self, chain: SyntheticChain, store_id: str, start_hour: datetime, hours: int | None = None
    ) -> None:
        history = chain.history
        if store_id not in history.store_ids:
            raise ConfigError(
                f"no store {store_id!r} in the chain ({history.store_ids[0]}.."
                f"{history.store_ids[-1]})"
            )
        self.store_id = store_id
        self.index = history.store_ids.index(store_id)
        self.seed = chain.config.seed
        chain_start = datetime.fromisoformat(str(history.start)).replace(tzinfo=UTC)
        offset = (start_hour - chain_start) / timedelta(hours=1)
        if start_hour.tzinfo is None or offset != int(offset):
            raise ConfigError(f"the start {start_hour} is not an aware UTC hour")
        self.first = int(offset)
        self.end = history.n_hours if hours is None else self.first + hours
        if not 0 <= self.first < self.end <= history.n_hours:
            raise ConfigError(
                f"hours {start_hour:%Y-%m-%dT%H} + {self.end - self.first} are outside the "
                f"chain's {history.n_hours} hours from {chain_start:%Y-%m-%dT%H}"
            )
        self.chain = chain
        self.start = start_hour

    @property
    def hours(self) -> int:
        """Simulated hours the stream covers."""
        return self.end - self.first

    def hour_steps(self, t: int) -> list[list[dict[str, Any]]]:
        """The readings of chain hour ``t``'s 12 steps."""
        h, i = self.chain.history, self.index
        rng = np.random.default_rng([self.seed, 0x5E4, i, t])
        even = np.full(STEPS_PER_HOUR, 1.0 / STEPS_PER_HOUR)
        hour = self.start + timedelta(hours=t - self.first)
        stamps = [f"{hour + k * STEP:%Y-%m-%dT%H:%M:%SZ}" for k in range(STEPS_PER_HOUR)]
        columns: dict[str, list[float] | list[int]] = {}
        if h.observed[i, t]:
            columns["sales"] = rng.multinomial(int(h.sales[i, t]), even).tolist()
            columns["footfall"] = rng.multinomial(int(h.footfall[i, t]), even).tolist()
        columns["temperature"] = [float(h.temperature_c[i, t])] * STEPS_PER_HOUR
        tips = rng.multinomial(round(float(h.precip_mm[i, t]) * 100), even)
        columns["precipitation"] = (tips / 100).tolist()
        columns["promo"] = [int(h.promo[i, t])] * STEPS_PER_HOUR
        return [
            [{"ts": ts, "kind": kind, "value": values[k]} for kind, values in columns.items()]
            for k, ts in enumerate(stamps)
        ]

    def steps(self) -> Iterator[Step]:
        """Each step's readings with the simulated time it is sent (the step's end)."""
        for t in range(self.first, self.end):
            hour = self.start + timedelta(hours=t - self.first)
            for k, readings in enumerate(self.hour_steps(t)):
                yield hour + (k + 1) * STEP, readings


@dataclass
class SendTotals:
    """What was sent, and what the agent said."""

    readings: int = 0
    accepted: int = 0
    duplicates: int = 0
    requests: int = 0
    reached: datetime | None = None  # simulated time of the last step sent
    interrupted: bool = False  # Ctrl-C stopped the run


class ReadingsPoster:
    """Posts batches of readings to an agent, retrying what may succeed later."""

    def __init__(
        self,
        device_url: str,
        token: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = device_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=30.0, transport=transport
        )
        self._sleep, self._backoff_s = sleep, backoff_s

    def close(self) -> None:
        self._http.close()

    def post(self, readings: list[dict[str, Any]]) -> tuple[int, int]:
        """Send one batch; return the agent's ``(accepted, duplicates)``."""
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                response = self._http.post(READINGS_PATH, json={"readings": readings})
            except httpx.TransportError as exc:
                if last:
                    raise ConfigError(f"cannot reach {self.url}: {exc}") from exc
                why = str(exc) or type(exc).__name__
            else:
                if response.status_code < 400:
                    ack = response.json()
                    return int(ack.get("accepted", 0)), int(ack.get("duplicates", 0))
                if last or not (response.status_code >= 500 or response.status_code == 429):
                    raise _refusal(response)
                why = f"HTTP {response.status_code}"
            delay = self._backoff_s * 2**attempt
            log.warning(
                "posting %d readings failed (%s); retrying in %.1fs", len(readings), why, delay
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


def _refusal(response: httpx.Response) -> ApiRefused:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        if error.get("errors"):
            message += f": {error['errors'][:3]}"
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason_phrase
    return ApiRefused(response.status_code, code, message)


def send_readings(
    steps: Iterable[Step],
    post: Callable[[list[dict[str, Any]]], tuple[int, int]],
    *,
    speed: float,
    clock: Clock,
    sleep: Callable[[float], None] = time.sleep,
    paced_from: datetime | None = None,
    max_readings: int = MAX_READINGS,
    progress: Progress | None = None,
    totals: SendTotals | None = None,
) -> SendTotals:
    """Post ``steps`` through ``post``, ``speed`` simulated seconds per wall second.

    Steps sent before ``paced_from`` (simulated time; the backfill) and every step when
    ``speed`` is 0 go as fast as possible. Ctrl-C stops the run and returns what was sent,
    with ``interrupted`` set. ``totals`` (a new one if not given) is updated as requests
    are answered, so a caller holds what was sent even when a request fails.
    """
    if speed < 0:
        raise ConfigError(f"speed must be 0 (as fast as possible) or more, got {speed}")
    totals = SendTotals() if totals is None else totals
    pending: list[dict[str, Any]] = []
    pending_until: datetime | None = None
    anchor: tuple[datetime, float] | None = None  # (simulated, monotonic) when pacing began

    def flush() -> None:
        nonlocal pending, pending_until
        if not pending:
            return
        accepted, duplicates = post(pending)
        totals.readings += len(pending)
        totals.accepted += accepted
        totals.duplicates += duplicates
        totals.requests += 1
        totals.reached = pending_until
        pending, pending_until = [], None
        if progress is not None:
            progress(totals)

    try:
        for sent_at, readings in steps:
            if speed > 0 and (paced_from is None or sent_at > paced_from):
                if anchor is None:
                    anchor = (sent_at - STEP, clock.monotonic())
                due = anchor[1] + (sent_at - anchor[0]).total_seconds() / speed
                if due > clock.monotonic():
                    flush()  # send what is due before waiting
                    wait = due - clock.monotonic()
                    if wait > 0:
                        sleep(wait)
            pending.extend(readings)
            pending_until = sent_at
            if len(pending) >= max_readings:
                flush()
        flush()
    except KeyboardInterrupt:
        totals.interrupted = True
    return totals
