"""One simulated device's event stream (the engine behind ``storecast.sim.telemetry``).

Numbers are drawn a day at a time with numpy (Poisson requests, binomial failures,
lognormal latencies, noisy oracle forecasts); events are built hour by hour as plain dicts
in time order, so a consumer holding many streams holds one day of numbers per device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from storecast.common.telemetry import HIST_BUCKETS, LATENCY_BOUNDS_MS
from storecast.forecasting.schema import HORIZON
from storecast.forecasting.synthetic import SyntheticChain

if TYPE_CHECKING:
    from storecast.sim.telemetry import SimDevice, TelemetrySimConfig

Event = dict[str, Any]
FAULT_AGENT_VERSION = "1.5.0-rc1"  # the agent release "bad-agent" rolls out

# How a faulty device behaves while its fault lasts: (inference error rate, latency
# multiplier, forecast bias).
_FAULT_HEALTH = {
    "bad-model": (0.10, 8.0, 1.6),
    "broken-store": (0.25, 1.0, 1.0),
    "bad-agent": (0.08, 20.0, 1.0),
}
_LATENCY_MEDIAN_MS = 0.6  # on-device inference, healthy
_LATENCY_SIGMA = 0.45  # of log latency
_BOUNDS = np.asarray(LATENCY_BOUNDS_MS)
_ERRORS_PER_HOUR = 0.01  # chance of an incidental error event in a device-hour
_INCIDENTS = (
    ("updater", "timeout", "registry poll timed out after 10 s"),
    ("uploader", "http_5xx", "analytics answered 503"),
    ("sensors", "invalid_reading", "footfall counter sent a negative count"),
)
_CHUNK_HOURS = 24  # hours generated per vectorised step
_Keyed = tuple[tuple[int, int], Event]  # ((offset in the hour s, tie rank), event)


class DeviceStream:
    """Generates one device's events, a day of numbers at a time."""

    def __init__(
        self,
        config: TelemetrySimConfig,
        device: SimDevice,
        chain: SyntheticChain,
        chain_offset: int,  # chain hour index of the span's first hour
        hour_iso: list[str],  # "YYYY-MM-DDTHH:00:00Z" of span hours 0 .. hours + HORIZON
        *,
        upgrade_hour: int | None,  # span hour version 2 activates (None: never)
        faulty: bool,  # whether config.fault hits this device
    ) -> None:
        cfg = config
        self.cfg, self.device = cfg, device
        self.rng = np.random.default_rng([cfg.seed, 0x7E1E, device.index])
        self.id_rng = np.random.default_rng([cfg.seed, 0x1D, device.index])
        i, oracle, history = device.index, chain.oracle, chain.history
        self.mean, self.quantiles = oracle.mean[i], oracle.quantiles[i]
        self.sales, self.footfall = history.sales[i], history.footfall[i]
        self.avg_mean = max(float(self.mean.mean()), 1e-9)
        self.base, self.iso = chain_offset, hour_iso
        self.prefix = [s[:14] for s in hour_iso]  # "YYYY-MM-DDTHH:"
        self.upgrade_hour = upgrade_hour
        self.fault = cfg.fault if faulty else None
        self.fault_hour = cfg.hours - cfg.fault_hours if faulty else cfg.hours
        hb_s, self.window_min = cfg.heartbeat_every_min * 60, cfg.inference_window_min
        phase = int(self.rng.integers(0, hb_s))
        self.hb_offsets = np.arange(0, 3600, hb_s) + phase
        self.hb_mmss = [f"{s // 60:02d}:{s % 60:02d}Z" for s in self.hb_offsets.tolist()]
        self.win_mm = [f"{m:02d}:00Z" for m in range(0, 60, self.window_min)]
        n_hb, n_win = len(self.hb_mmss), len(self.win_mm)
        # The hour's events are built as [forecast, heartbeats..., inferences..., actual];
        # ``keys`` say when each is sent, ``order`` is the time order.
        self.keys = [(0, 0)] + [(s, 2) for s in self.hb_offsets.tolist()]
        self.keys += [((k + 1) * self.window_min * 60, 1) for k in range(n_win)] + [(3600, 3)]
        self.order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        self.per_hour = 2 + n_hb + n_win
        self.boot_age_s = float(self.rng.uniform(3600.0, 20 * 86400.0))
        self.disk0_mb = float(self.rng.uniform(8000.0, 30000.0))
        self.digests = {v: model_digest(cfg.model_name, v) for v in (1, 2, 3)}

    def __iter__(self) -> Iterator[Event]:
        for hour in self.hours():
            yield from hour

    def hours(self) -> Iterator[list[Event]]:
        """The events of each span hour in time order, hour by hour.

        Hour ``h``'s events are stamped in ``[h, h + 1h]`` (what completes with the hour is
        stamped at its end), so concatenating the hours keeps the time order.
        """
        for c0 in range(0, self.cfg.hours, _CHUNK_HOURS):
            yield from self._chunk(c0, min(c0 + _CHUNK_HOURS, self.cfg.hours))

    def version_at(self, hour: int) -> int:
        """The model version running during span hour ``hour``."""
        if self.fault == "bad-model" and hour >= self.fault_hour:
            return 3
        return 2 if self.upgrade_hour is not None and hour >= self.upgrade_hour else 1

    def _ids(self, n: int) -> Iterator[str]:
        """``n`` random (version 4) UUIDs from the device's own id generator."""
        raw = np.frombuffer(self.id_rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.tobytes().hex()
        for j in range(0, 32 * n, 32):
            yield f"{h[j : j + 8]}-{h[j + 8 : j + 12]}-{h[j + 12 : j + 16]}-" + (
                f"{h[j + 16 : j + 20]}-{h[j + 20 : j + 32]}"
            )

    def _event(self, kind: str, ts: str, version: int | None, payload: dict[str, Any]) -> Event:
        model = None if version is None else {"name": self.cfg.model_name, "version": version}
        d = self.device
        return {
            "event_id": "",  # filled in when the event is sent
            "device_id": d.device_id,
            "store_id": d.store_id,
            "type": kind,
            "ts": ts,
            "model": model,
            "payload": payload,
        }

    def _sparse(self, c0: int, c1: int) -> dict[int, list[_Keyed]]:
        """Model and error events of hours ``c0 .. c1 - 1``, by hour."""
        out: dict[int, list[_Keyed]] = {}
        name = self.cfg.model_name
        if c0 == 0:
            payload = {"action": "activated", "name": name, "version": 1}
            payload |= {"digest": self.digests[1], "duration_ms": 120.0}
            out[0] = [((0, -1), self._event("model", self.iso[0], 1, payload))]
        targets = [
            (self.upgrade_hour, 2),
            (self.fault_hour if self.fault == "bad-model" else None, 3),
        ]
        for hour, version in targets:
            if hour is None or not c0 <= hour - 1 < c1:
                continue
            old, pre = self.version_at(hour - 1), self.prefix[hour - 1]
            steps = (("download_started", "55:00Z", old), ("verified", "57:00Z", old))
            for action, mmss, running in (*steps, ("activated", None, version)):
                ts = self.iso[hour] if mmss is None else pre + mmss
                payload = {"action": action, "name": name, "version": version}
                payload |= {"digest": self.digests[version], "duration_ms": 150.0}
                offset = 3600 if mmss is None else int(mmss[:2]) * 60
                out.setdefault(hour - 1, []).append(
                    ((offset, 4), self._event("model", ts, running, payload))
                )
        n = c1 - c0
        happens = self.rng.random(n) < _ERRORS_PER_HOUR
        which = self.rng.integers(0, len(_INCIDENTS), n)
        offsets = self.rng.integers(1, 3600, n)
        counts = self.rng.integers(1, 13, n)
        for i in range(n):
            hour = c0 + i
            broken = self.fault == "broken-store" and hour >= self.fault_hour
            if not (happens[i] or broken):
                continue
            component, kind, message = (
                ("sensors", "sensor_offline", "footfall sensor offline")
                if broken
                else _INCIDENTS[which[i]]
            )
            s = int(offsets[i])
            payload = {"component": component, "kind": kind, "message": message}
            payload["count"] = int(counts[i]) if broken else 1
            ts = f"{self.prefix[hour]}{s // 60:02d}:{s % 60:02d}Z"
            event = self._event("error", ts, self.version_at(hour), payload)
            out.setdefault(hour, []).append(((s, 5), event))
        return out

    def _chunk(self, c0: int, c1: int) -> Iterator[list[Event]]:
        """The events of span hours ``c0 .. c1 - 1``, hour by hour."""
        cfg, rng, n = self.cfg, self.rng, c1 - c0
        hours = np.arange(c0, c1)
        t = self.base + hours  # chain hour indices
        faulted = hours >= self.fault_hour
        err_rate, slow, bias = _FAULT_HEALTH.get(self.fault or "", (cfg.error_rate, 1.0, 1.0))
        n_win, n_hb = len(self.win_mm), len(self.hb_mmss)
        # inference: Poisson requests following the store's traffic, binomial failures,
        # lognormal latencies counted into the fixed buckets; per window [count, errors, *hist]
        activity = 0.25 + 0.75 * self.mean[t] / self.avg_mean
        lam = np.repeat(activity * cfg.requests_per_hour * self.window_min / 60.0, n_win)
        counts = rng.poisson(lam)
        errors = rng.binomial(counts, np.repeat(np.where(faulted, err_rate, cfg.error_rate), n_win))
        window = np.repeat(np.arange(n * n_win), counts)
        median = _LATENCY_MEDIAN_MS * np.repeat(np.where(faulted, slow, 1.0), n_win)
        latency = np.exp(rng.normal(np.log(median[window]), _LATENCY_SIGMA))
        bucket = np.searchsorted(_BOUNDS, latency, side="left")
        hist = np.bincount(window * HIST_BUCKETS + bucket, minlength=n * n_win * HIST_BUCKETS)
        windows = np.column_stack((counts, errors, hist.reshape(n * n_win, HIST_BUCKETS)))
        windows = windows.reshape(n, n_win, 2 + HIST_BUCKETS)
        # forecasts: the oracle's quantiles times a per-origin level error and per-point
        # noise growing with the horizon (WAPE about 0.2-0.3 against the sales)
        steps = np.arange(HORIZON)
        noise = rng.normal(0.0, 0.08, (n, 1)) + rng.normal(0.0, 0.12 + 0.004 * steps, (n, HORIZON))
        factor = np.exp(noise) * np.where(faulted, bias, 1.0)[:, None]
        quant = np.round(self.quantiles[t[:, None] + steps] * factor[..., None], 2)
        # heartbeats: [cpu, rss, disk, uptime] floats, [outbox] ints, [poll ok, upload ok]
        rc = faulted if self.fault == "bad-agent" else np.zeros(n, dtype=bool)
        cpu = np.clip(rng.normal(14.0, 4.0, (n, n_hb)) * np.where(rc, 2.0, 1.0)[:, None], 1, 100)
        rss = rng.normal(210.0, 8.0, (n, n_hb))
        since_start = hours[:, None] * 3600.0 + self.hb_offsets[None, :]
        disk = self.disk0_mb - since_start / 3600.0 * 0.5
        restarted = since_start - self.fault_hour * 3600.0
        uptime = np.round(np.where(rc[:, None], restarted, since_start + self.boot_age_s))
        flags = rng.random((n, n_hb, 2)) > np.array([0.01, 0.005])
        outbox = rng.poisson(0.4, (n, n_hb)) + np.where(
            flags[..., 1], 0, rng.poisson(15.0, (n, n_hb))
        )
        gauges = np.round(np.stack((cpu, rss, disk, uptime), axis=-1), 1)
        sales, foot = self.sales[t].tolist(), self.footfall[t].tolist()
        no_footfall = (
            faulted if self.fault == "broken-store" else np.zeros(n, dtype=bool)
        ).tolist()
        agents = [FAULT_AGENT_VERSION if x else cfg.agent_version for x in rc.tolist()]

        sparse = self._sparse(c0, c1)
        ids = self._ids(n * self.per_hour + sum(len(v) for v in sparse.values()))
        iso, prefix, mk = self.iso, self.prefix, self._event
        for i in range(n):
            h = c0 + i
            version, agent = self.version_at(h), agents[i]
            points = [
                {"ts": ts, "q10": q[0], "q50": q[1], "q90": q[2]}
                for ts, q in zip(iso[h : h + HORIZON], quant[i].tolist(), strict=True)
            ]
            forecast = {"origin": iso[h], "horizon": HORIZON, "points": points}
            items = [mk("forecast", iso[h], version, forecast)]
            for mmss, (c, r, d, u), o, (p, ok) in zip(
                self.hb_mmss, gauges[i].tolist(), outbox[i].tolist(), flags[i].tolist(), strict=True
            ):
                payload = {
                    "cpu_pct": c,
                    "rss_mb": r,
                    "disk_free_mb": d,
                    "uptime_s": u,
                    "agent_version": agent,
                    "outbox_depth": o,
                    "dropped_events": 0,
                    "last_poll_ok": p,
                    "last_upload_ok": ok,
                }
                items.append(mk("heartbeat", prefix[h] + mmss, version, payload))
            starts = [prefix[h] + mm for mm in self.win_mm]
            ends = [*starts[1:], iso[h + 1]]
            for ws, we, row in zip(starts, ends, windows[i].tolist(), strict=True):
                payload = {
                    "window_start": ws,
                    "window_end": we,
                    "count": row[0],
                    "errors": row[1],
                    "latency_hist": row[2:],
                }
                items.append(mk("inference", we, version, payload))
            footfall = None if no_footfall[i] else foot[i]
            payload = {"ts": iso[h], "sales_units": sales[i], "footfall": footfall}
            items.append(mk("actual", iso[h + 1], None, payload))
            if h in sparse:
                keyed = [(self.keys[j], items[j]) for j in range(len(items))] + sparse[h]
                keyed.sort(key=itemgetter(0))
                ordered = [e for _, e in keyed]
            else:
                ordered = [items[j] for j in self.order]
            for event in ordered:
                event["event_id"] = next(ids)
            yield ordered


def model_digest(name: str, version: int) -> str:
    """The (stand-in) sha256 of a model version's bundle: the same on every device."""
    return hashlib.sha256(f"{name}:{version}".encode()).hexdigest()
