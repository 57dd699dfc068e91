"""Rollups equal a brute-force recomputation from the raw events, whatever the order.

Random event streams are cut into random batches, sent out of order and partly resent;
the rollup tables kept at ingest must then equal what a plain replay of the stored raw
batches computes.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from storecast.analytics.ingest import ingest_batch, unpack
from storecast.analytics.tables import (
    BUCKET_COLUMNS,
    AccuracyHourlyRow,
    ErrorHourlyRow,
    InferenceHourlyRow,
    TelemetryBatchRow,
)
from storecast.common.clock import FixedClock
from storecast.common.cloud import Database
from storecast.common.db import upgrade
from tests.analytics.conftest import HOUR0, EventMaker

NOW = HOUR0 + timedelta(days=1)


def _hour(text: str) -> datetime:
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One device's events over a few hours: every type, two models, two agent versions."""
    makers = [
        EventMaker("dev-1", "S0001", {"name": "demand-lstm", "version": 1}),
        EventMaker("dev-1", "S0001", {"name": "demand-lstm", "version": 2}),
        EventMaker("dev-1", "S0001", None),
    ]
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 40))):
        maker = draw(st.sampled_from(makers))
        hour = HOUR0 + timedelta(hours=draw(st.integers(0, 5)))
        kind = draw(st.sampled_from(["heartbeat", "inference", "forecast", "actual", "error"]))
        if kind == "heartbeat":
            minute = timedelta(minutes=draw(st.integers(0, 59)))
            events.append(maker.heartbeat(hour + minute, agent=draw(st.sampled_from("AB"))))
        elif kind == "inference":
            hist = draw(st.lists(st.integers(0, 5), min_size=1, max_size=len(BUCKET_COLUMNS)))
            errors = draw(st.integers(0, sum(hist)))
            events.append(maker.inference(hour, hist, errors))
        elif kind == "forecast":
            q50 = draw(st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=4))
            events.append(maker.forecast(hour, q50))
        elif kind == "actual":
            events.append(maker.actual(hour, draw(st.floats(0, 60, allow_nan=False))))
        else:
            events.append(maker.error(hour, draw(st.sampled_from(["timeout", "http_5xx"]))))
    return events


def _replay(batches: list[list[dict[str, Any]]]) -> dict[str, dict[tuple[Any, ...], list[float]]]:
    """The rollups, recomputed the obvious way from the stored raw batches (in order)."""
    inference: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * 15)
    errors: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0])
    accuracy: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * 5)
    newest: tuple[str, str] | None = None  # (ts, agent) of the newest heartbeat so far
    actuals: dict[tuple[str, datetime], float] = {}
    points: list[tuple[Any, ...]] = []
    forecasts_seen: set[tuple[Any, ...]] = set()
    for batch in batches:
        agent = newest[1] if newest else ""
        for e in batch:
            model = e["model"] or {"name": "", "version": 0}
            mkey = (model["name"], model["version"])
            p = e["payload"]
            if e["type"] == "heartbeat":
                agent = p["agent_version"]
            elif e["type"] == "inference":
                key = (_hour(p["window_start"]), e["store_id"], *mkey, agent)
                sums = inference[key]
                for i, value in enumerate([p["count"], p["errors"], *p["latency_hist"]]):
                    sums[i] += value
            elif e["type"] == "error":
                key = (_hour(e["ts"]), e["store_id"], p["component"], p["kind"], *mkey, agent)
                errors[key][0] += p["count"]
            elif e["type"] == "actual":
                actuals.setdefault((e["store_id"], _hour(p["ts"])), p["sales_units"])
            elif e["type"] == "forecast":
                fkey = (e["store_id"], _hour(p["origin"]), *mkey)
                if fkey not in forecasts_seen:
                    forecasts_seen.add(fkey)
                    for pt in p["points"]:
                        points.append((e["store_id"], _hour(pt["ts"]), mkey, agent, pt))
        for e in batch:
            if e["type"] == "heartbeat" and (newest is None or _hour_ts(e) >= newest[0]):
                newest = (_hour_ts(e), e["payload"]["agent_version"])
    for store, ts, mkey, agent, pt in points:
        if (store, ts) in actuals:
            actual = actuals[(store, ts)]
            sums = accuracy[(ts, store, *mkey, agent)]
            sums[0] += 1
            sums[1] += actual
            sums[2] += pt["q50"]
            sums[3] += abs(pt["q50"] - actual)
            sums[4] += 1 if pt["q10"] <= actual <= pt["q90"] else 0
    return {"inference": inference, "errors": errors, "accuracy": accuracy}


def _hour_ts(event: dict[str, Any]) -> str:
    return datetime.fromisoformat(event["ts"]).astimezone(UTC).isoformat()


def _stored(database: Database) -> dict[str, dict[tuple[Any, ...], list[float]]]:
    inf, err, acc = InferenceHourlyRow, ErrorHourlyRow, AccuracyHourlyRow
    with database.transaction() as session:
        inference = {
            (r.hour, r.store_id, r.model_name, r.model_version, r.agent_version): [
                float(r.count),
                float(r.errors),
                *(float(getattr(r, c)) for c in BUCKET_COLUMNS),
            ]
            for r in session.execute(select(inf)).scalars()
        }
        errors = {
            (
                r.hour,
                r.store_id,
                r.component,
                r.kind,
                r.model_name,
                r.model_version,
                r.agent_version,
            ): [float(r.count)]
            for r in session.execute(select(err)).scalars()
        }
        accuracy = {
            (r.hour, r.store_id, r.model_name, r.model_version, r.agent_version): [
                float(r.points),
                r.sum_actual,
                r.sum_q50,
                r.sum_abs_err,
                float(r.covered),
            ]
            for r in session.execute(select(acc)).scalars()
        }
    return {"inference": inference, "errors": errors, "accuracy": accuracy}


def _raw_batches(database: Database) -> list[list[dict[str, Any]]]:
    with database.transaction() as session:
        bodies = session.execute(select(TelemetryBatchRow.body).order_by(TelemetryBatchRow.id))
        return [unpack(body) for body in bodies.scalars()]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=streams(),
    data=st.data(),
)
def test_rollups_equal_a_replay_of_the_raw_events(events: list[dict[str, Any]], data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'cloud.db'}"
        upgrade(url)
        database = Database.connect(url, FixedClock(NOW))
        try:
            cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=6)))
            bounds = [0, *cuts, len(events)]
            batches = [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
            order = data.draw(st.permutations(range(len(batches))))
            resend = data.draw(st.lists(st.sampled_from(range(len(batches))), max_size=3))
            for index in [*order, *resend]:
                body = json.dumps({"events": batches[index]}).encode()
                with database.transaction(write=True) as session:
                    ingest_batch(session, "dev-1", body, NOW)
            expected = _replay(_raw_batches(database))
            stored = _stored(database)
        finally:
            database.engine.dispose()
    for table in ("inference", "errors", "accuracy"):
        assert set(stored[table]) <= set(expected[table]), table
        for key, values in expected[table].items():
            assert stored[table].get(key, [0.0] * len(values)) == pytest.approx(values), (
                table,
                key,
            )
