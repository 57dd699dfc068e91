"""Sensor readings: validation, idempotent storage, hourly aggregates, windows, retention."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storecast.edge.localdb import LocalDB
from storecast.edge.sensors import (
    READING_KINDS,
    AddResult,
    CompletedHour,
    Reading,
    ReadingsRefused,
    SensorStore,
    parse_readings,
)
from storecast.forecasting.calendar import calendar

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 2, 20, 0, 0, tzinfo=UTC)  # a Friday
H = timedelta(hours=1)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def good(**overrides: Any) -> dict[str, Any]:
    return {"ts": "2026-03-01T11:05:00Z", "kind": "sales", "value": 3} | overrides


def refusal(body: Any, **kwargs: Any) -> ReadingsRefused:
    with pytest.raises(ReadingsRefused) as info:
        parse_readings(body, NOW, **kwargs)
    return info.value


def r(moment: datetime, kind: str, value: float) -> Reading:
    return Reading(ts=moment, kind=kind, value=value)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LocalDB]:
    database = LocalDB(tmp_path / "agent.db")
    yield database
    database.close()


@pytest.fixture
def store(db: LocalDB) -> SensorStore:
    return SensorStore(db)


# -- validation ---------------------------------------------------------------------------


def test_a_valid_batch_parses_to_utc_readings():
    body = {
        "readings": [
            good(ts="2026-03-01T13:05:00+02:00", kind="temperature", value=-3.5),
            good(kind="promo", value=1),
            good(kind="footfall", value=0),
            good(ts=iso(NOW + timedelta(minutes=59)), kind="precipitation", value=0.2),
        ]
    }
    readings = parse_readings(body, NOW)
    assert [x.kind for x in readings] == ["temperature", "promo", "footfall", "precipitation"]
    assert readings[0].ts == datetime(2026, 3, 1, 11, 5, tzinfo=UTC)
    assert readings[0].ts.tzinfo == UTC
    assert readings[1].value == 1.0
    assert set(READING_KINDS) == {"footfall", "sales", "temperature", "precipitation", "promo"}


@pytest.mark.parametrize(
    ("reading", "field", "reason"),
    [
        (good(kind="humidity"), "kind", "unknown kind 'humidity'"),
        (good(kind=3), "kind", "unknown kind 3"),
        (good(value=math.nan), "value", "finite"),
        (good(value=math.inf), "value", "finite"),
        (good(value=-math.inf, kind="temperature"), "value", "finite"),
        (good(value=-1), "value", "sales cannot be negative"),
        (good(kind="footfall", value=-0.5), "value", "footfall cannot be negative"),
        (good(kind="precipitation", value=-2), "value", "precipitation cannot be negative"),
        (good(kind="promo", value=0.5), "value", "promo must be 0 or 1"),
        (good(kind="promo", value=2), "value", "promo must be 0 or 1"),
        (good(kind="temperature", value=71), "value", "temperature must be within"),
        (good(kind="temperature", value=-81), "value", "temperature must be within"),
        (good(value="3"), "value", "valid number"),
        (good(value=True), "value", "valid number"),
        (good(value=None), "value", "valid number"),
        (good(ts="2026-03-01T11:05:00"), "ts", "timezone"),
        (good(ts="2026-03-01"), "ts", "timezone"),
        (good(ts="yesterday"), "ts", "datetime"),
        (good(ts=1772362800), "ts", "ISO 8601"),
        (good(ts=iso(NOW + timedelta(hours=1, seconds=1))), "ts", "in the future"),
        (good(ts="1999-12-31T23:59:59Z"), "ts", "before 2000"),
        (good(extra=1), "extra", "unknown field"),
        ({"kind": "sales", "value": 1}, "ts", "required"),
        ("sales=3", None, "must be an object"),
        ([1, 2], None, "must be an object"),
    ],
)
def test_an_invalid_reading_refuses_the_batch_with_its_index_and_field(reading, field, reason):
    body = {"readings": [good(), reading]}
    refused = refusal(body)
    assert (refused.status, refused.code) == (422, "invalid_readings")
    assert refused.errors[0]["index"] == 1
    assert refused.errors[0]["field"] == field
    assert reason in refused.errors[0]["reason"]
    assert "1 of 2 readings" in refused.message


def test_every_bad_reading_is_listed_not_just_the_first():
    body = {"readings": [good(), good(value=-1), good(), good(kind="x"), good(value=math.nan)]}
    refused = refusal(body)
    assert [(e["index"], e["field"]) for e in refused.errors] == [
        (1, "value"),
        (3, "kind"),
        (4, "value"),
    ]
    assert "3 of 5 readings" in refused.message


def test_the_error_list_is_capped_but_the_count_is_complete():
    refused = refusal({"readings": [good(value=-1)] * 250})
    assert len(refused.errors) == 100
    assert "250 of 250 readings" in refused.message


def test_a_reading_may_be_up_to_max_future_ahead_of_the_clock():
    ahead = good(ts=iso(NOW + timedelta(hours=3)))
    assert refusal({"readings": [ahead]}).errors[0]["field"] == "ts"
    assert parse_readings({"readings": [ahead]}, NOW, max_future=timedelta(hours=4))


@pytest.mark.parametrize(
    "body",
    [[good()], "readings", None, {"reading": [good()]}, {"readings": [good()], "store": "S001"}],
)
def test_a_body_that_is_not_a_readings_object_is_malformed(body):
    refused = refusal(body)
    assert (refused.status, refused.code) == (400, "malformed")


@pytest.mark.parametrize("readings", [good(), "x", 3, None])
def test_readings_that_are_not_a_list_are_malformed(readings):
    refused = refusal({"readings": readings})
    assert (refused.status, refused.code) == (400, "malformed")


def test_an_empty_batch_is_refused():
    refused = refusal({"readings": []})
    assert (refused.status, refused.code) == (400, "empty")


def test_a_batch_over_max_batch_is_too_large():
    refused = refusal({"readings": [good()] * 11}, max_batch=10)
    assert (refused.status, refused.code) == (413, "too_many")
    assert parse_readings({"readings": [good()] * 10}, NOW, max_batch=10)


def test_a_reading_is_frozen_and_refuses_extra_fields():
    reading = r(T0, "sales", 1)
    with pytest.raises(ValueError):
        reading.value = 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        Reading(ts=T0, kind="sales", value=1, unit="pcs")  # type: ignore[call-arg]


# -- storage and aggregates ---------------------------------------------------------------


def hour_values(store: SensorStore, first: datetime, hours: int) -> dict[str, np.ndarray]:
    """Hourly values of ``[first, first + hours)`` as the store aggregates them."""
    w = store.window(first + hours * H, hours, 1, "S001").history
    return {
        "sales": w.sales[0, :hours],
        "observed": w.observed[0, :hours],
        "footfall": w.footfall[0, :hours],
        "temperature": w.temperature_c[0, :hours],
        "precipitation": w.precip_mm[0, :hours],
        "promo": w.promo[0, :hours],
    }


def test_an_empty_store_has_no_origin(store: SensorStore):
    assert store.latest_ts() is None and store.origin() is None
    assert store.hours_with_sales() == 0
    assert store.add([]) == AddResult(0, 0)
    assert store.prune() == 0


def test_duplicates_are_idempotent_and_the_first_value_wins(store: SensorStore):
    batch = [r(T0 + k * timedelta(minutes=5), "sales", 2) for k in range(12)]
    batch += [r(T0, "temperature", 10), r(T0 + H, "sales", 1)]
    assert store.add(batch) == AddResult(accepted=14, duplicates=0)
    before = hour_values(store, T0, 1)
    assert store.add(batch) == AddResult(accepted=0, duplicates=14)
    assert store.add([r(T0, "sales", 50), r(T0, "temperature", 30)]) == AddResult(0, 2)
    after = hour_values(store, T0, 1)
    assert after["sales"][0] == before["sales"][0] == 24
    assert after["temperature"][0] == before["temperature"][0] == 10


def test_a_duplicate_inside_one_batch_counts_once(store: SensorStore):
    assert store.add([r(T0, "sales", 5), r(T0, "sales", 7)]) == AddResult(1, 1)
    assert store.add([r(T0 + H, "sales", 0)]) == AddResult(1, 0)
    assert hour_values(store, T0, 1)["sales"][0] == 5


def test_late_and_out_of_order_readings_land_in_their_hour(store: SensorStore):
    store.add([r(T0 + 3 * H, "sales", 1)])
    store.add([r(T0 + H + timedelta(minutes=50), "sales", 4), r(T0, "footfall", 9)])
    store.add([r(T0 + H, "sales", 2), r(T0, "sales", 7), r(T0 + 2 * H, "promo", 1)])
    assert store.origin() == T0 + 3 * H  # the newest reading, not the last one sent
    values = hour_values(store, T0, 3)
    np.testing.assert_array_equal(values["sales"], [7, 6, np.nan])
    np.testing.assert_array_equal(values["observed"], [True, True, False])
    np.testing.assert_array_equal(values["promo"], [0, 0, 1])


def test_add_joins_an_open_transaction_and_rolls_back_with_it(db: LocalDB, store: SensorStore):
    with pytest.raises(RuntimeError), db.transaction():
        store.add([r(T0, "sales", 1)])
        raise RuntimeError("the outbox write failed")
    assert store.latest_ts() is None
    assert store.add([r(T0, "sales", 1)]) == AddResult(1, 0)


def brute_force(batches: list[list[Reading]]) -> dict[tuple[int, str], list[float]]:
    """Per (hour, kind): the values kept (the first of each (ts, kind)), in any order."""
    first: dict[tuple[datetime, str], float] = {}
    for batch in batches:
        for x in batch:
            first.setdefault((x.ts, x.kind), x.value)
    out: dict[tuple[int, str], list[float]] = {}
    for (ts, kind), value in first.items():
        out.setdefault(((ts - T0) // H, kind), []).append(value)
    return out


_VALUES = {
    "sales": st.integers(0, 50).map(float),
    "footfall": st.floats(0, 500, allow_nan=False),
    "temperature": st.floats(-20, 40, allow_nan=False),
    "precipitation": st.floats(0, 5, allow_nan=False),
    "promo": st.sampled_from([0.0, 1.0]),
}


@st.composite
def reading_batches(draw: st.DrawFn) -> list[list[Reading]]:
    readings = []
    for _ in range(draw(st.integers(1, 60))):
        slot = draw(st.integers(0, 6 * 12 - 1))
        kind = draw(st.sampled_from(READING_KINDS))
        readings.append(r(T0 + slot * timedelta(minutes=5), kind, draw(_VALUES[kind])))
    cuts = sorted(draw(st.lists(st.integers(0, len(readings)), max_size=4)))
    bounds = [0, *cuts, len(readings)]
    batches = [readings[a:b] for a, b in itertools.pairwise(bounds)]
    return [b for b in batches if b] + draw(st.lists(st.sampled_from(batches), max_size=2))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=reading_batches())
def test_hourly_aggregates_equal_a_brute_force_recomputation(tmp_path_factory, batches):
    db = LocalDB(tmp_path_factory.mktemp("agg") / "agent.db")
    store = SensorStore(db)
    for batch in batches:
        store.add(batch)
    truth = brute_force(batches)
    values = hour_values(store, T0, 6)
    for hour in range(6):
        kept = {kind: truth.get((hour, kind)) for kind in READING_KINDS}
        if kept["sales"]:
            assert values["observed"][hour]
            assert values["sales"][hour] == pytest.approx(sum(kept["sales"]))
        else:
            assert not values["observed"][hour] and np.isnan(values["sales"][hour])
        if kept["footfall"]:
            assert values["footfall"][hour] == pytest.approx(sum(kept["footfall"]))
        if kept["temperature"]:
            mean = sum(kept["temperature"]) / len(kept["temperature"])
            assert values["temperature"][hour] == pytest.approx(mean)
        assert values["precipitation"][hour] == pytest.approx(sum(kept["precipitation"] or [0]))
        assert values["promo"][hour] == max(kept["promo"] or [0])
    with db.transaction() as conn:
        completed = store.take_completed(conn)
    origin_hour = (store.origin() - T0) // H  # type: ignore[operator]
    assert [c.hour for c in completed] == [
        T0 + h * H for h in range(origin_hour) if truth.get((h, "sales"))
    ]
    for c in completed:
        h = (c.hour - T0) // H
        assert c.sales_units == pytest.approx(sum(truth[(h, "sales")]))
        footfall = truth.get((h, "footfall"))
        assert c.footfall == (pytest.approx(sum(footfall)) if footfall else None)
    db.close()


# -- completed hours ----------------------------------------------------------------------


def test_take_completed_reports_each_complete_hour_once_across_restarts(tmp_path: Path):
    path = tmp_path / "agent.db"
    db = LocalDB(path)
    store = SensorStore(db)
    store.add([r(T0 + h * H, "sales", h + 1) for h in range(3)] + [r(T0, "footfall", 9)])
    store.add([r(T0 + 3 * H, "temperature", 5)])  # hour 3 has no sales
    store.add([r(T0 + 4 * H + timedelta(minutes=30), "sales", 1)])
    with db.transaction() as conn:
        first = store.take_completed(conn)
    assert first == [
        CompletedHour(T0, 1.0, 9.0),
        CompletedHour(T0 + H, 2.0, None),
        CompletedHour(T0 + 2 * H, 3.0, None),
    ]
    db.close()

    db = LocalDB(path)
    store = SensorStore(db)
    with db.transaction() as conn:
        assert store.take_completed(conn) == []  # hour 4 is the origin: not complete
    store.add([r(T0 + 5 * H, "sales", 0)])
    with db.transaction() as conn:
        assert store.take_completed(conn) == [CompletedHour(T0 + 4 * H, 1.0, None)]
    assert store.hours_with_sales() == 4
    db.close()


def test_hours_taken_in_a_rolled_back_transaction_are_reported_again(
    db: LocalDB, store: SensorStore
):
    store.add([r(T0, "sales", 2), r(T0 + H, "sales", 1)])
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert len(store.take_completed(conn)) == 1
        raise RuntimeError("queueing the actual failed")
    with db.transaction() as conn:
        assert store.take_completed(conn) == [CompletedHour(T0, 2.0, None)]


def test_a_late_reading_for_a_reported_hour_is_not_reported_again(db: LocalDB, store: SensorStore):
    store.add([r(T0, "sales", 2), r(T0 + 2 * H, "sales", 1)])
    with db.transaction() as conn:
        assert len(store.take_completed(conn)) == 1
    store.add([r(T0 + timedelta(minutes=10), "sales", 3), r(T0 + H, "sales", 4)])
    with db.transaction() as conn:
        assert store.take_completed(conn) == [CompletedHour(T0 + H, 4.0, None)]
    assert hour_values(store, T0, 1)["sales"][0] == 5  # forecasts see the late reading


# -- windows ------------------------------------------------------------------------------


def fill_hours(
    store: SensorStore, hours: range, skip: set[int] = frozenset(), **kinds: Any
) -> None:
    """One reading of each kind at the start of every hour (``kinds``: value per hour)."""
    batch = [
        r(T0 + h * H, kind, value(h))
        for h in hours
        if h not in skip
        for kind, value in kinds.items()
    ]
    store.add(batch)


def test_window_lays_the_lookback_and_horizon_on_an_hourly_grid(store: SensorStore):
    fill_hours(
        store,
        range(48),
        skip={30, 31, 32},
        sales=lambda h: h,
        footfall=lambda h: 10 * h,
        temperature=lambda h: h % 24,
        precipitation=lambda h: 0.5 if h % 24 == 3 else 0.0,
        promo=lambda h: 1.0 if h >= 46 else 0.0,
    )
    store.add([r(T0 + 48 * H + timedelta(minutes=20), "sales", 99)])  # the origin hour, partial
    origin = store.origin()
    assert origin == T0 + 48 * H
    w = store.window(origin, 36, 30, "S001")
    h = w.history
    assert (w.origin, w.observed_hours) == (origin, 33)
    assert h.store_ids == ("S001",) and h.n_hours == 66
    assert h.start == np.datetime64("2026-02-20T12", "h")
    past = slice(0, 36)  # hours 12 .. 47
    expected_observed = [t not in (30, 31, 32) for t in range(12, 48)]
    np.testing.assert_array_equal(h.observed[0, past], expected_observed)
    np.testing.assert_array_equal(h.sales[0, 18:21], [np.nan] * 3)
    assert h.filled_hours == 3
    # missing hours: footfall and temperature carried forward, precipitation and promo 0
    np.testing.assert_array_equal(h.footfall[0, 18:21], [290] * 3)
    np.testing.assert_array_equal(h.temperature_c[0, 18:21], [5] * 3)
    np.testing.assert_array_equal(h.precip_mm[0, 18:21], [0] * 3)
    # the future: no sales; temperature and precipitation a day earlier; promo carried
    future = slice(36, 66)
    assert not h.observed[0, future].any() and np.isnan(h.sales[0, future]).all()
    a_day_before = [*range(6), 5, 5, 5, *range(9, 24)]  # hours 30..32 were filled
    np.testing.assert_array_equal(h.temperature_c[0, 36:60], a_day_before)
    np.testing.assert_array_equal(h.temperature_c[0, 60:66], np.arange(6))
    np.testing.assert_array_equal(
        h.precip_mm[0, future], [0.5 if t % 24 == 3 else 0 for t in range(30)]
    )
    np.testing.assert_array_equal(h.promo[0, future], [1] * 30)
    np.testing.assert_array_equal(h.is_holiday[0], calendar(h.hours)["holiday"])


def test_window_fills_like_the_loader_when_covariates_are_missing(store: SensorStore):
    fill_hours(store, range(10), sales=lambda h: 1)  # sales only
    w = store.window(T0 + 10 * H, 10, 2, "S001").history
    np.testing.assert_array_equal(w.temperature_c, 15.0)
    np.testing.assert_array_equal(w.footfall, 0.0)
    np.testing.assert_array_equal(w.precip_mm, 0.0)
    np.testing.assert_array_equal(w.promo, 0.0)
    fill_hours(store, range(5, 7), temperature=lambda h: 20 + h)
    w = store.window(T0 + 10 * H, 10, 2, "S001").history
    # before the first temperature: the nearest later one; after it: carried forward
    np.testing.assert_array_equal(w.temperature_c[0, :10], [25] * 6 + [26] * 4)


def test_window_carries_values_from_before_its_start(store: SensorStore):
    fill_hours(store, range(5), sales=lambda h: 1, footfall=lambda h: 7, temperature=lambda h: -4)
    fill_hours(store, range(20, 30), sales=lambda h: 1)
    w = store.window(T0 + 30 * H, 12, 1, "S001").history  # starts at hour 18
    np.testing.assert_array_equal(w.footfall[0, :12], 7)
    np.testing.assert_array_equal(w.temperature_c[0, :12], -4)
    assert w.observed[0, :12].tolist() == [False] * 2 + [True] * 10


def test_window_marks_holidays_from_the_calendar(store: SensorStore):
    christmas = datetime(2026, 12, 26, 0, tzinfo=UTC)
    store.add([r(christmas, "sales", 1)])
    w = store.window(christmas, 48, 24, "S001").history
    np.testing.assert_array_equal(w.is_holiday[0], [0] * 24 + [1] * 48)


def test_window_refuses_an_origin_off_the_hour(store: SensorStore):
    with pytest.raises(ValueError, match="not the start of an hour"):
        store.window(T0 + timedelta(minutes=5), 24, 24, "S001")


# -- retention ----------------------------------------------------------------------------


def test_prune_deletes_readings_and_hours_older_than_the_retention(db: LocalDB):
    store = SensorStore(db, retention=timedelta(days=2))
    fill_hours(store, range(24), sales=lambda h: 1, temperature=lambda h: 3)
    assert store.hours_with_sales() == 23
    store.add([r(T0 + 60 * H, "sales", 1)])  # now hours before hour 12 are out of retention
    assert store.hours_with_sales() == 12
    values = hour_values(store, T0, 24)
    assert values["observed"].tolist() == [False] * 12 + [True] * 12
    assert store.prune() == 0  # nothing left to delete
    with db.reading() as conn:
        (oldest,) = conn.execute("SELECT min(ts_us) FROM sensor_readings").fetchone()
    assert oldest == (T0 + 12 * H - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_readings_older_than_the_retention_are_not_stored(db: LocalDB):
    store = SensorStore(db, retention=timedelta(days=2))
    store.add([r(T0 + 60 * H, "sales", 1)])
    assert store.add([r(T0, "sales", 5), r(T0 + 59 * H, "sales", 1)]) == AddResult(1, 0, 1)
    assert store.hours_with_sales() == 1


def test_prune_is_explicit_and_counts_rows(db: LocalDB):
    store = SensorStore(db, retention=timedelta(hours=1))
    store.add([r(T0, "sales", 1), r(T0, "promo", 0)])
    with db.transaction() as conn:  # a write the store does not know of: a second process
        conn.execute("UPDATE sensor_readings SET ts_us = ts_us - 7200000000 WHERE kind = 'promo'")
    assert store.prune() == 1
