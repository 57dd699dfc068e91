"""An arm's evidence against a brute-force recomputation from the events posted to a live
cloud (through the real ingest), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest

from storecast.analytics.evidence import ArmEvidence, ArmScope, arm_evidence, arms_evidence
from storecast.common.db import make_engine, make_sessionmaker, transaction
from storecast.common.telemetry import HIST_BUCKETS
from tests.analytics.conftest import HOUR0, EventMaker
from tests.registry.conftest import LiveRegistry

MODEL = "demand-lstm"
SINCE, UNTIL = HOUR0 + timedelta(hours=1), HOUR0 + timedelta(hours=7)
HOURS = 8  # hours HOUR0 .. HOUR0 + 7 have forecasts, actuals and inference
VERSIONS = {"S1": 1, "S2": 1, "S3": 2, "S4": 2, "S5": 2}  # S5: v2 outside the arm


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def store_events(store: str, version: int, rng: random.Random) -> list[dict[str, Any]]:
    """A day's start of one store: forecasts (horizon 3), actuals, inference, model events."""
    make = EventMaker(f"dev-{store}", store, {"name": MODEL, "version": version})
    events = [make.heartbeat(HOUR0 - timedelta(minutes=5))]
    if store == "S3":  # an agent upgrade: hour 4 then holds points of two agents
        events.append(make.heartbeat(HOUR0 + timedelta(hours=3, minutes=30), agent="1.5.0"))
    for h in range(HOURS):
        hour = HOUR0 + timedelta(hours=h)
        events.append(make.forecast(hour, [rng.uniform(5, 30) for _ in range(3)]))
        events.append(make.actual(hour, round(rng.uniform(5, 30), 1)))
        hist = [rng.randrange(0, 20) for _ in range(6)] + [rng.randrange(0, 3)]
        events.append(
            make.inference(hour + timedelta(minutes=7), hist, errors=min(h % 3, sum(hist)))
        )
    other = EventMaker(make.device_id, store, {"name": "demand-gbm", "version": version})
    events.append(other.forecast(HOUR0 + timedelta(hours=2), [50.0, 50.0]))  # another model
    events.append(other.inference(HOUR0 + timedelta(hours=2), [9], errors=9))
    events += [
        make.model_event(HOUR0 + timedelta(minutes=10), "activated", version),
        make.model_event(HOUR0 + timedelta(hours=2), "rejected", version, reason="bad digest"),
        make.model_event(HOUR0 + timedelta(hours=3), "rejected", version + 1),  # other version
        make.model_event(HOUR0 - timedelta(hours=1), "activated", version),  # before the window
        make.model_event(HOUR0 + timedelta(hours=4), "activated", version, name="demand-gbm"),
    ]
    return sorted(events, key=lambda e: parse(e["ts"]))


def brute_force(
    events: list[dict[str, Any]], arm: str, version: int, stores: set[str] | None
) -> ArmEvidence:
    """The arm's figures recomputed from the raw events, the obvious way."""

    def mine(e: dict[str, Any]) -> bool:
        model = e["model"] or {}
        return (model.get("name"), model.get("version")) == (MODEL, version) and (
            stores is None or e["store_id"] in stores
        )

    actuals: dict[tuple[str, datetime], float] = {}
    for e in events:
        if e["type"] == "actual":
            actuals.setdefault(
                (e["store_id"], parse(e["payload"]["ts"])), e["payload"]["sales_units"]
            )
    per_store: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    hours: set[tuple[str, datetime]] = set()
    points = covered = inferences = errors = activations = rejected = 0
    q50_sum = 0.0
    hist = [0] * HIST_BUCKETS
    reporting: set[str] = set()
    for e in events:
        p = e["payload"]
        if e["type"] == "forecast" and mine(e):
            for point in p["points"]:
                key = (e["store_id"], parse(point["ts"]))
                if key not in actuals or not SINCE <= key[1] < UNTIL:
                    continue
                actual = actuals[key]
                hours.add(key)
                points += 1
                q50_sum += point["q50"]
                covered += point["q10"] <= actual <= point["q90"]
                per_store[key[0]][0] += abs(point["q50"] - actual)
                per_store[key[0]][1] += actual
                reporting.add(key[0])
        elif e["type"] == "inference" and mine(e):
            start = parse(p["window_start"]).replace(minute=0)
            if SINCE <= start < UNTIL:
                inferences += p["count"]
                errors += p["errors"]
                hist = [a + b for a, b in zip(hist, p["latency_hist"], strict=True)]
                reporting.add(e["store_id"])
        elif (
            e["type"] == "model"
            and SINCE <= parse(e["ts"]) < UNTIL
            and (p["name"], p["version"]) == (MODEL, version)
            and (stores is None or e["store_id"] in stores)
        ):
            activations += p["action"] == "activated"
            rejected += p["action"] == "rejected"
            reporting.add(e["store_id"])
    return ArmEvidence(
        arm=arm,
        model=MODEL,
        version=version,
        stores=len(reporting),
        forecast_hours=len(hours),
        points=points,
        sum_actual=sum(a for _, a in per_store.values()),
        sum_q50=q50_sum,
        sum_abs_err=sum(e for e, _ in per_store.values()),
        covered=covered,
        inferences=inferences,
        errors=errors,
        latency_hist=tuple(hist),
        activations=activations,
        failed_activations=rejected,
        per_store=tuple((e, a) for _, (e, a) in sorted(per_store.items())),
    )


def same(got: ArmEvidence, want: ArmEvidence) -> None:
    exact = ("arm", "model", "version", "stores", "forecast_hours", "points", "covered")
    exact += ("inferences", "errors", "latency_hist", "activations", "failed_activations")
    assert {k: getattr(got, k) for k in exact} == {k: getattr(want, k) for k in exact}
    for name in ("sum_actual", "sum_q50", "sum_abs_err"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-9), name
    assert len(got.per_store) == len(want.per_store)
    for g, w in zip(got.per_store, want.per_store, strict=True):
        assert g == pytest.approx(w, rel=1e-9)
    assert got.wape == pytest.approx(want.wape, rel=1e-9)
    assert got.coverage == want.coverage


@pytest.fixture
def posted(cloud: LiveRegistry) -> list[dict[str, Any]]:
    """Every store's events, posted through ``POST /v1/telemetry``."""
    rng = random.Random(7)
    events = []
    for store, version in VERSIONS.items():
        mine = store_events(store, version, rng)
        token = cloud.enrol(f"dev-{store}", store)
        with cloud.client(token) as http:
            answer = http.post("/v1/telemetry", json={"events": mine})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(mine), answer.json()["rejected"][:3]
        events += mine
    return events


def test_arm_evidence_is_the_brute_force_sum_over_the_arms_stores_and_window(
    cloud: LiveRegistry, posted: list[dict[str, Any]]
) -> None:
    engine = make_engine(cloud.config.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            window = {"model": MODEL, "since": SINCE, "until": UNTIL}
            a = arm_evidence(session, arm="A", version=1, stores=["S1", "S2"], **window)
            b = arm_evidence(session, arm="B", version=2, stores={"S3", "S4"}, **window)
            everywhere = arm_evidence(session, arm="B", version=2, stores=None, **window)
            both = arms_evidence(
                session,
                arms=[ArmScope("A", 1, ["S1", "S2"]), ArmScope("B", 2, ("S3", "S4"))],
                **window,
            )
            nothing = arm_evidence(session, arm="B", version=9, stores=None, **window)
    finally:
        engine.dispose()
    same(a, brute_force(posted, "A", 1, {"S1", "S2"}))
    same(b, brute_force(posted, "B", 2, {"S3", "S4"}))
    same(everywhere, brute_force(posted, "B", 2, None))
    assert set(both) == {"A", "B"}
    same(both["A"], a)  # PostgreSQL may add floats in another order: approximately
    same(both["B"], b)
    # Everywhere, v2 also reached S1 and S2: they rejected it (their "version + 1").
    assert (a.stores, b.stores, everywhere.stores, everywhere.failed_activations) == (2, 2, 5, 5)
    assert b.forecast_hours == 2 * 6  # S3's hour 4 holds two agents' rows: counted once
    assert (b.activations, b.failed_activations) == (0, 2)  # rejections at hour 2, S3 and S4
    assert nothing == ArmEvidence(arm="B", model=MODEL, version=9)
    assert nothing.latency_ms() == (None, None, None)
