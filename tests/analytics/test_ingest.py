"""``POST /v1/telemetry``: exactly-once storage, per-event rejection, whole-batch refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from storecast.analytics.ingest import screen_batch, unpack
from storecast.analytics.tables import (
    AccuracyHourlyRow,
    ApiUsageRow,
    DeviceStateRow,
    ErrorHourlyRow,
    ForecastPointRow,
    InferenceHourlyRow,
    ModelEventRow,
    StoreActualRow,
    TelemetryBatchRow,
    TelemetryEventRow,
)
from tests.analytics.conftest import HOUR0, EventMaker
from tests.registry.conftest import LiveRegistry


def _count(cloud: LiveRegistry, row: Any) -> int:
    with cloud.database.transaction() as session:
        return int(session.execute(select(func.count()).select_from(row)).scalar_one())


def _post(http: httpx.Client, events: list[dict[str, Any]]) -> httpx.Response:
    return http.post("/v1/telemetry", json={"events": events})


def _day_of_events(maker: EventMaker) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for h in range(6):
        hour = HOUR0 + timedelta(hours=h)
        events.append(maker.heartbeat(hour))
        events.append(maker.forecast(hour, [10.0 + h, 12.0, 9.0]))
        events.append(maker.inference(hour, [5, 3, 1], errors=1))
        if h:
            events.append(maker.actual(hour - timedelta(hours=1), 11.0))
    events.append(maker.model_event(HOUR0, "activated", 1))
    events.append(maker.error(HOUR0, count=3))
    return events


def test_a_batch_sent_three_times_is_stored_and_counted_once(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    events = _day_of_events(EventMaker("dev-1", "S0001"))
    with cloud.client(token) as http:
        answers = [_post(http, events).json() for _ in range(3)]
    assert answers[0] == {"accepted": len(events), "duplicates": 0, "rejected": []}
    assert answers[1] == answers[2] == {"accepted": 0, "duplicates": len(events), "rejected": []}
    assert _count(cloud, TelemetryEventRow) == len(events)
    assert _count(cloud, TelemetryBatchRow) == 1
    assert _count(cloud, ModelEventRow) == 1
    with cloud.database.transaction() as session:
        served = session.execute(select(func.sum(InferenceHourlyRow.count))).scalar_one()
        failed = session.execute(select(func.sum(InferenceHourlyRow.errors))).scalar_one()
        errors = session.execute(select(func.sum(ErrorHourlyRow.count))).scalar_one()
        paired = session.execute(select(func.sum(AccuracyHourlyRow.points))).scalar_one()
    assert (served, failed, errors) == (6 * 9, 6, 3)
    # Actuals of hours 0..4; each pairs with the forecasts made for it: hour h is covered
    # by the origins h, h-1 and h-2 (horizons 1..3).
    assert paired == sum(min(h + 1, 3) for h in range(5))


def test_repeats_inside_one_batch_count_once(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    event = maker.inference(HOUR0, [2])
    with cloud.client(token) as http:
        answer = _post(http, [event, event, maker.heartbeat(HOUR0)]).json()
    assert answer == {"accepted": 2, "duplicates": 1, "rejected": []}


def test_forecast_and_actual_pair_whichever_arrives_first(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    with cloud.client(token) as http:
        _post(http, [maker.actual(HOUR0, 8.0)])
        _post(http, [maker.forecast(HOUR0, [10.0, 20.0])])  # hour 0 known, hour 1 not yet
        _post(http, [maker.actual(HOUR0 + timedelta(hours=1), 25.0)])
        # A second forecast of the same origin and model: the first report wins.
        _post(http, [maker.forecast(HOUR0, [99.0, 99.0])])
    with cloud.database.transaction() as session:
        rows = session.execute(
            select(
                AccuracyHourlyRow.hour, AccuracyHourlyRow.points, AccuracyHourlyRow.sum_abs_err
            ).order_by(AccuracyHourlyRow.hour)
        ).all()
        q50s = session.execute(select(ForecastPointRow.q50).order_by(ForecastPointRow.ts)).scalars()
        assert list(q50s) == [10.0, 20.0]
    assert [(r.hour, r.points, r.sum_abs_err) for r in rows] == [
        (HOUR0, 1, 2.0),
        (HOUR0 + timedelta(hours=1), 1, 5.0),
    ]


def test_newest_heartbeat_wins_the_device_state(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    with cloud.client(token) as http:
        _post(http, [maker.heartbeat(HOUR0 + timedelta(hours=2), agent="2.0.0", outbox_depth=7)])
        _post(http, [maker.heartbeat(HOUR0, agent="1.0.0")])  # late and old: ignored
    with cloud.database.transaction() as session:
        state = session.get(DeviceStateRow, "dev-1")
    assert state is not None
    assert (state.agent_version, state.outbox_depth) == ("2.0.0", 7)
    assert state.last_heartbeat_at == HOUR0 + timedelta(hours=2)


def test_bad_events_are_rejected_by_index_naming_the_field(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    good = maker.heartbeat(HOUR0)
    no_field = maker.heartbeat(HOUR0)
    del no_field["payload"]["cpu_pct"]
    wrong_type = maker.inference(HOUR0, [1])
    wrong_type["payload"]["count"] = "many"
    future = maker.heartbeat(datetime.now(UTC) + timedelta(days=2))
    crossed = maker.forecast(HOUR0, [5.0])
    crossed["payload"]["points"][0]["q10"] = 9.0
    batch = [
        good,
        maker.event("telepathy", {}, HOUR0),
        no_field,
        wrong_type,
        future,
        {**maker.actual(HOUR0, 3.0), "store_id": "S0999"},
        crossed,
        {**maker.heartbeat(HOUR0), "unexpected": 1},
        "not an event",
        maker.actual(HOUR0, float("nan"))
        | {"payload": {"ts": HOUR0.isoformat(), "sales_units": -1}},
    ]
    with cloud.client(token) as http:
        answer = _post(http, batch).json()
    fields = {r["index"]: r["field"] for r in answer["rejected"]}
    assert answer["accepted"] == 1
    assert fields == {
        1: "type",
        2: "payload.cpu_pct",
        3: "payload.count",
        4: "ts",
        5: "store_id",
        6: "payload",
        7: "unexpected",
        8: "(event)",
        9: "payload.sales_units",
    }
    assert all(r["reason"] for r in answer["rejected"])
    assert _count(cloud, TelemetryEventRow) == 1


def test_another_devices_event_refuses_the_whole_batch(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    cloud.enrol("dev-2", "S0002")
    mine, theirs = EventMaker("dev-1", "S0001"), EventMaker("dev-2", "S0002")
    with cloud.client(token) as http:
        response = _post(http, [mine.heartbeat(HOUR0), theirs.heartbeat(HOUR0)])
    assert response.status_code == 403
    assert "dev-2" in response.json()["error"]["message"]
    assert _count(cloud, TelemetryEventRow) == 0


def test_batches_refused_whole_lose_nothing_stored(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    with cloud.client(token) as http:
        assert _post(http, [maker.heartbeat(HOUR0)]).status_code == 200
        too_many = _post(http, [maker.heartbeat(HOUR0)] * 1001)
        assert too_many.status_code == 413
        blob = json.dumps({"events": [maker.heartbeat(HOUR0, agent="x" * 60)] * 900}).encode()
        padded = blob[:-2] + b" " * (2 * 1024 * 1024) + blob[-2:]
        headers = {"Content-Type": "application/json"}
        assert http.post("/v1/telemetry", content=padded, headers=headers).status_code == 413
        chunked = http.post("/v1/telemetry", content=iter([padded]), headers=headers)
        assert chunked.status_code == 413
        malformed = http.post("/v1/telemetry", content=b'{"events": [', headers=headers)
        assert malformed.status_code == 400
        assert malformed.json()["error"]["code"] == "malformed_json"
        form = http.post("/v1/telemetry", content=b"events=1")
        assert form.status_code == 415
        shapeless = http.post("/v1/telemetry", json={"events": 3})
        assert shapeless.status_code == 422
        assert shapeless.json()["error"]["fields"][0]["field"] == "events"
        assert http.post("/v1/telemetry", json={"events": [], "x": 1}).status_code == 422
    assert _count(cloud, TelemetryEventRow) == 1


def test_only_device_tokens_may_send_telemetry(cloud: LiveRegistry) -> None:
    maker = EventMaker("dev-1", "S0001")
    cloud.enrol("dev-1", "S0001")
    body = {"events": [maker.heartbeat(HOUR0)]}
    with cloud.client(None) as anonymous:
        assert anonymous.post("/v1/telemetry", json=body).status_code == 401
    for role in ("viewer", "admin"):
        with cloud.client(cloud.token(role) if role != "admin" else cloud.admin) as http:
            assert http.post("/v1/telemetry", json=body).status_code == 403
    assert _count(cloud, TelemetryEventRow) == 0
    assert _count(cloud, StoreActualRow) == 0


def test_every_batch_is_counted_once_in_the_usage_log(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    with cloud.client(token) as http:
        for _ in range(3):
            assert _post(http, [maker.heartbeat(HOUR0)]).status_code == 200
        assert _post(http, [EventMaker("dev-2", "S0002").heartbeat(HOUR0)]).status_code == 403
    with cloud.database.transaction() as session:
        rows = session.execute(
            select(ApiUsageRow.status, ApiUsageRow.count, ApiUsageRow.role).where(
                ApiUsageRow.endpoint == "/v1/telemetry"
            )
        ).all()
    assert sorted(rows) == [(200, 3, "device"), (403, 1, "device")]


def test_the_raw_record_keeps_each_event_once(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    first, second = maker.heartbeat(HOUR0), maker.inference(HOUR0, [1, 1])
    with cloud.client(token) as http:
        assert _post(http, [first]).json()["accepted"] == 1
        assert _post(http, [first, second]).json() == {
            "accepted": 1,
            "duplicates": 1,
            "rejected": [],
        }
        assert _post(http, [second, first]).json()["duplicates"] == 2
    with cloud.database.transaction() as session:
        bodies = session.execute(
            select(TelemetryBatchRow.events, TelemetryBatchRow.body).order_by(TelemetryBatchRow.id)
        ).all()
    assert [(n, [e["event_id"] for e in unpack(b)]) for n, b in bodies] == [
        (1, [first["event_id"]]),
        (1, [second["event_id"]]),
    ]


def test_times_out_of_range_are_rejected_per_event_never_a_500(cloud: LiveRegistry) -> None:
    token = cloud.enrol("dev-1", "S0001")
    maker = EventMaker("dev-1", "S0001")
    ancient = maker.heartbeat(datetime(999, 6, 1, tzinfo=UTC))
    edge_of_time = maker.forecast(datetime(2199, 12, 31, 23, tzinfo=UTC), [1.0, 2.0])
    odd_zone = maker.error(datetime(2026, 1, 1, tzinfo=UTC))
    odd_zone["ts"] = "0001-01-01T00:30:00+01:00"
    with cloud.client(token) as http:
        answer = _post(http, [ancient, edge_of_time, odd_zone, maker.heartbeat(HOUR0)])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2]
    assert body["rejected"][0]["field"] == "ts"


def test_a_batch_from_a_device_unknown_here_holds_one_stores_events() -> None:
    maker, other = EventMaker("dev-x", "S0001"), EventMaker("dev-x", "S0002")
    body = json.dumps({"events": [maker.actual(HOUR0, 3.0), other.actual(HOUR0, 4.0)]})
    screened = screen_batch(body.encode(), "dev-x", None, HOUR0 + timedelta(days=1))
    assert [e.store_id for e in screened.events] == ["S0001"]
    assert [(r.index, r.field) for r in screened.rejected] == [(1, "store_id")]
