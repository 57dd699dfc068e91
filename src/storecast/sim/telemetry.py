"""The telemetry simulator: a fleet's event streams, generated instead of recorded.

One device per store of a synthetic chain (``storecast.forecasting.synthetic``), so the
forecasts and actuals the devices report come from the chain's oracle and its sales. Over
the span ``[end - days, end)`` each device reports, in time order:

    forecast    one per hour (origin = that hour, 24 points from the oracle quantiles,
                with multiplicative noise)
    actual      one per hour, stamped when the hour completes
    inference   one per window: count, errors and a latency histogram (lognormal)
    heartbeat   one every ``heartbeat_every_min`` minutes
    model       version 1 activated at the start; half the fleet moves to version 2
                halfway through (download_started, verified, activated)
    error       now and then (updater timeouts, upload 5xx, invalid sensor readings)

A fault, when asked for, covers the last ``fault_hours`` hours: ``bad-model`` (version 3
on ~30% of stores: errors, latency, biased forecasts), ``broken-store`` (the 2nd store's
sensors fail) or ``bad-agent`` (agent 1.5.0-rc1 on ~40% of devices: latency, errors).

Each event is stamped when a device would send it, so what completes with the span's last
hour (its actual, its last inference window) carries ``ts == end``. Every event is a
JSON-ready dict that passes ``validate_event``. Streams depend only on the config (each
device draws from its own generator, however the streams are read), and event ids come
from those generators, so the same config yields the same events: a resend is all
duplicates. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import numpy as np

from storecast.common.errors import ConfigError
from storecast.forecasting.schema import HORIZON
from storecast.forecasting.synthetic import ChainConfig, SyntheticChain, generate_chain
from storecast.sim._stream import FAULT_AGENT_VERSION, DeviceStream, Event, model_digest

__all__ = [
    "FAULTS",
    "FAULT_AGENT_VERSION",
    "Event",
    "FleetPlan",
    "SimDevice",
    "TelemetrySim",
    "TelemetrySimConfig",
    "generate",
    "model_digest",
]

FAULTS = ("bad-model", "broken-store", "bad-agent")
BAD_MODEL_SHARE = 0.3  # of stores that get version 3 under "bad-model"
BAD_AGENT_SHARE = 0.4  # of devices that get the release candidate under "bad-agent"
BROKEN_STORE_INDEX = 1  # the store "broken-store" breaks (the 2nd; the 1st if alone)


@dataclass(frozen=True, kw_only=True)
class TelemetrySimConfig:
    """What fleet to simulate, over which span."""

    end: datetime  # exclusive end of the span: an aware UTC hour start (the caller's clock)
    devices: int = 10  # one device per store
    days: int = 7
    seed: int = 7
    heartbeat_every_min: int = 5  # must divide 60
    inference_window_min: int = 15  # must divide 60
    model_name: str = "demand-lstm"
    agent_version: str = "1.4.0"
    error_rate: float = 0.002  # share of inferences that fail on a healthy device
    requests_per_hour: float = 30.0  # mean forecast requests per store-hour (Poisson)
    fault: str | None = None  # None, "bad-model", "broken-store" or "bad-agent"
    fault_hours: int = 24  # the fault covers the last fault_hours hours of the span

    def __post_init__(self) -> None:
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ConfigError("end must be timezone-aware (UTC)")
        if self.end.astimezone(UTC).minute or self.end.second or self.end.microsecond:
            raise ConfigError(f"end must be the start of an hour, got {self.end.isoformat()}")
        if not 1 <= self.devices <= 100_000:
            raise ConfigError(f"devices must be in 1..100000, got {self.devices}")
        if not 1 <= self.days <= 3650:
            raise ConfigError(f"days must be in 1..3650, got {self.days}")
        for name in ("heartbeat_every_min", "inference_window_min"):
            minutes = getattr(self, name)
            if minutes < 1 or 60 % minutes:
                raise ConfigError(f"{name} must divide 60 (1, 2, 3, 5, ... 60), got {minutes}")
        if not 0.0 <= self.error_rate < 1.0:
            raise ConfigError(f"error_rate must be in [0, 1), got {self.error_rate}")
        if not 0.0 <= self.requests_per_hour <= 1e6:
            raise ConfigError(
                f"requests_per_hour must be in [0, 1e6], got {self.requests_per_hour}"
            )
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", self.model_name):
            raise ConfigError(
                f"model_name must be a name ([A-Za-z0-9._:-]), got {self.model_name!r}"
            )
        if not 1 <= len(self.agent_version) <= 64:
            raise ConfigError("agent_version must be 1 to 64 characters")
        if self.fault is not None and self.fault not in FAULTS:
            raise ConfigError(f"fault must be one of {', '.join(FAULTS)}, got {self.fault!r}")
        if self.fault is not None and not 1 <= self.fault_hours < self.hours:
            raise ConfigError(
                f"fault_hours must be in 1..{self.hours - 1} (the span has {self.hours} hours)"
            )

    @property
    def hours(self) -> int:
        """Hours in the span."""
        return self.days * 24

    @property
    def start(self) -> datetime:
        """First hour of the span (UTC)."""
        return self.end.astimezone(UTC) - timedelta(days=self.days)


@dataclass(frozen=True)
class SimDevice:
    """One simulated edge device and the store it serves."""

    index: int
    device_id: str
    store_id: str
    region: str


@dataclass(frozen=True)
class FleetPlan:
    """Who runs what, and when: the ground truth analytics should recover."""

    upgrade_at: datetime | None  # when version 2 activates on ``upgraded`` (None: no upgrade)
    upgraded: frozenset[str]  # device ids moved to version 2
    fault_start: datetime | None  # None when there is no fault
    faulty: frozenset[str]  # device ids the fault hits


def _plan(config: TelemetrySimConfig, devices: tuple[SimDevice, ...]) -> FleetPlan:
    rng = np.random.default_rng([config.seed, 11])
    n = len(devices)
    ids = [d.device_id for d in devices]
    baseline = config.hours - (config.fault_hours if config.fault else 0)
    upgrade_hour = baseline // 2
    upgraded = frozenset(ids[i] for i in rng.permutation(n)[: n // 2]) if upgrade_hour else None
    chosen = rng.permutation(n)
    faulty: frozenset[str] = frozenset()
    if config.fault == "bad-model":
        faulty = frozenset(ids[i] for i in chosen[: max(1, round(BAD_MODEL_SHARE * n))])
    elif config.fault == "bad-agent":
        faulty = frozenset(ids[i] for i in chosen[: max(1, round(BAD_AGENT_SHARE * n))])
    elif config.fault == "broken-store":
        faulty = frozenset({ids[min(BROKEN_STORE_INDEX, n - 1)]})
    return FleetPlan(
        upgrade_at=config.start + timedelta(hours=upgrade_hour) if upgraded is not None else None,
        upgraded=upgraded or frozenset(),
        fault_start=config.end - timedelta(hours=config.fault_hours) if config.fault else None,
        faulty=faulty,
    )


class TelemetrySim:
    """A simulated fleet: its devices, its plan, and every device's event stream.

    Building one generates the synthetic chain (with a day to spare either side, so every
    forecast hour has an oracle); streams are generated lazily, a day at a time.
    """

    def __init__(self, config: TelemetrySimConfig) -> None:
        self.config = config
        start = config.start
        chain_start = (start - timedelta(days=1)).replace(hour=0)
        self.chain: SyntheticChain = generate_chain(
            ChainConfig(
                stores=config.devices,
                days=config.days + 3,
                seed=config.seed,
                start=chain_start.date().isoformat(),
            )
        )
        self.devices: tuple[SimDevice, ...] = tuple(
            SimDevice(i, f"sim-{p.store_id}", p.store_id, p.region)
            for i, p in enumerate(self.chain.profiles)
        )
        self.plan = _plan(config, self.devices)
        self._chain_offset = (start - chain_start) // timedelta(hours=1)
        first = np.datetime64(start.replace(tzinfo=None), "h")
        hours = first + np.arange(config.hours + HORIZON + 1)
        self._hour_iso = [f"{h}:00:00Z" for h in np.datetime_as_string(hours, unit="h")]

    def events(self, device: SimDevice | int) -> Iterator[Event]:
        """One device's events in time order (nondecreasing ``ts``), generated lazily."""
        return iter(self._stream(device))

    def _stream(self, device: SimDevice | int) -> DeviceStream:
        d = self.devices[device] if isinstance(device, int) else device
        upgrade_hour = None
        if self.plan.upgrade_at is not None and d.device_id in self.plan.upgraded:
            upgrade_hour = (self.plan.upgrade_at - self.config.start) // timedelta(hours=1)
        return DeviceStream(
            self.config,
            d,
            self.chain,
            self._chain_offset,
            self._hour_iso,
            upgrade_hour=upgrade_hour,
            faulty=d.device_id in self.plan.faulty,
        )

    def streams(self) -> Iterator[tuple[SimDevice, Iterator[Event]]]:
        """Every device with its lazy event stream, device by device."""
        for device in self.devices:
            yield device, self.events(device)

    def interleaved(self) -> Iterator[Event]:
        """Every device's events in one stream ordered by ``ts`` (ties: by device).

        Generated an hour at a time across the fleet; holds one day of numbers per device
        (tens of kB each) and one hour of events of the whole fleet.
        """
        hours = [self._stream(d).hours() for d in self.devices]
        for _ in range(self.config.hours):
            batch = [event for device in hours for event in next(device)]
            batch.sort(key=itemgetter("ts"))
            yield from batch


def generate(config: TelemetrySimConfig) -> Iterator[tuple[SimDevice, Iterator[Event]]]:
    """Every simulated device with its lazy event stream (see ``TelemetrySim``)."""
    return TelemetrySim(config).streams()
