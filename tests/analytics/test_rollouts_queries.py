"""Canary rollouts in analytics: arms on model performance, the rollouts list, rollbacks as
incidents (pure parsing, then the queries on SQLite and PostgreSQL, then the API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from storecast.analytics import diagnostics, queries_models, queries_rollouts
from storecast.analytics.queries_rollouts import (
    current_percent,
    parse_arms,
    parse_gates,
    plan_percents,
)
from storecast.analytics.schemas import GateOut, RolloutArm, Window
from storecast.analytics.tables import InferenceHourlyRow
from storecast.common.db import make_engine, make_sessionmaker, transaction, upgrade
from storecast.registry.tables import AliasRow
from tests.analytics.rollout_rows import add_canary, add_decision
from tests.registry.conftest import LiveRegistry

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
A1_B2 = [{"arm": "A", "version": 1, "alias": None}, {"arm": "B", "version": 2, "alias": None}]
FAILED = [
    {"name": "activations", "passed": True, "value": 0.0, "limit": 0.0, "detail": "0 rejected"},
    {"name": "error_rate", "passed": False, "value": 0.2, "limit": 0.02, "detail": "20 of 100"},
    {"name": "accuracy", "passed": None, "value": None, "limit": 0.02, "detail": "thin"},
]

# -- the JSON columns ---------------------------------------------------------------------------


def test_parse_arms_reads_version_and_alias_arms_and_skips_malformed_ones() -> None:
    text = json.dumps(
        [
            {"arm": "A", "version": None, "alias": "production"},
            {"arm": "B", "version": 2, "alias": None, "weight": 5},
            {"version": 3},
            "junk",
        ]
    )
    assert parse_arms(text) == [
        RolloutArm(arm="A", version=None, alias="production"),
        RolloutArm(arm="B", version=2, alias=None),
    ]
    assert parse_arms(None) == parse_arms("not json") == parse_arms('{"arm": "A"}') == []


def test_plan_percents_are_the_step_shares_in_order() -> None:
    plan = {"steps": [{"percent": 5}, {"percent": 50.0}, {"percent": 100}], "gates": {}}
    assert plan_percents(json.dumps(plan)) == [5.0, 50.0, 100.0]
    assert plan_percents("[]") == plan_percents(None) == []


@pytest.mark.parametrize(
    ("status", "step_index", "percent"),
    [
        ("active", 1, 25.0),
        ("paused", 0, 5.0),
        ("completed", 1, 100.0),
        ("rolled_back", 1, 0.0),
        ("aborted", 0, 0.0),
        ("active", 7, None),
        ("active", None, None),
    ],
)
def test_current_percent_is_the_step_share_in_force_all_once_completed_none_once_undone(
    status: str, step_index: int | None, percent: float | None
) -> None:
    assert current_percent(status, [5.0, 25.0, 100.0], step_index) == percent


def test_parse_gates_reads_a_list_or_a_decision_dict() -> None:
    expected = [
        GateOut(name="activations", passed=True, value=0.0, limit=0.0, detail="0 rejected"),
        GateOut(name="error_rate", passed=False, value=0.2, limit=0.02, detail="20 of 100"),
        GateOut(name="accuracy", passed=None, value=None, limit=0.02, detail="thin"),
    ]
    assert parse_gates(json.dumps(FAILED)) == expected
    assert parse_gates(json.dumps({"action": "rollback", "gates": FAILED})) == expected
    assert parse_gates("{}") == parse_gates(None) == parse_gates("[1, {}]") == []


# -- queries ------------------------------------------------------------------------------------


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _served(session: Session, versions: list[int], model: str = "demand-lstm") -> None:
    zeros = {f"b{k:02d}": 0 for k in range(13)}
    session.execute(
        insert(InferenceHourlyRow),
        [
            {
                "hour": NOW - timedelta(hours=2),
                "store_id": f"S{v}",
                "model_name": model,
                "model_version": v,
                "agent_version": "1.4.0",
                "count": 10,
                "errors": 0,
                **zeros,
                "b03": 10,
            }
            for v in versions
        ],
    )


def test_version_arms_come_from_the_newest_canary_in_force_of_each_model(
    sessions: sessionmaker[Session],
) -> None:
    old = NOW - timedelta(days=2)
    with transaction(sessions, write=True) as session:
        add_canary(session, arms=A1_B2, created_at=old)
        newest = add_canary(
            session,
            arms=[{"arm": "A", "version": None, "alias": "production"}, A1_B2[1] | {"version": 3}],
            status="paused",
            created_at=old + timedelta(hours=1),
        )
        add_canary(session, arms=A1_B2, status="rolled_back", created_at=old + timedelta(hours=2))
        other = add_canary(session, model="demand-gbm", arms=A1_B2, created_at=old)
        session.execute(
            insert(AliasRow).values(
                name="demand-lstm", alias="production", version=1, updated_at=old, updated_by="x"
            )
        )
    with transaction(sessions) as session:
        arms = queries_rollouts.version_arms(session)
        assert arms == {
            ("demand-lstm", 1): (newest, "A"),
            ("demand-lstm", 3): (newest, "B"),
            ("demand-gbm", 1): (other, "A"),
            ("demand-gbm", 2): (other, "B"),
        }
        assert queries_rollouts.version_arms(session, "demand-gbm") == {
            ("demand-gbm", 1): (other, "A"),
            ("demand-gbm", 2): (other, "B"),
        }


def test_model_performance_labels_each_version_with_its_arm(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions, write=True) as session:
        deployment = add_canary(session, arms=A1_B2, created_at=NOW - timedelta(hours=5))
        _served(session, [1, 2, 3])
    with transaction(sessions) as session:
        found = queries_models.model_performance(
            session, Window(start=NOW - timedelta(days=1), end=NOW)
        )
    labels = {v.model_version: (v.arm, v.deployment_id) for v in found.versions}
    assert labels == {1: ("A", deployment), 2: ("B", deployment), 3: (None, None)}


def test_model_performance_has_no_arms_without_a_canary_in_force(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions, write=True) as session:
        add_canary(session, arms=A1_B2, status="completed", created_at=NOW - timedelta(hours=5))
        _served(session, [1, 2])
    with transaction(sessions) as session:
        found = queries_models.model_performance(
            session, Window(start=NOW - timedelta(days=1), end=NOW)
        )
    assert [(v.arm, v.deployment_id) for v in found.versions] == [(None, None), (None, None)]


def _three_canaries(session: Session) -> dict[str, int]:
    """An active canary promoted once, one rolled back in the window, one long finished."""
    week = NOW - timedelta(days=7)
    ids = {
        "active": add_canary(
            session, arms=A1_B2, step_index=1, created_at=NOW - timedelta(hours=9)
        ),
        "rolled_back": add_canary(
            session, arms=A1_B2, status="rolled_back", created_at=NOW - timedelta(hours=8)
        ),
        "old": add_canary(session, arms=A1_B2, status="completed", created_at=week),
    }
    add_decision(
        session, ids["active"], action="promote", decided_at=NOW - timedelta(hours=4),
        percent_after=25.0, reason="every gate passed: B grows to 25 %",
    )  # fmt: skip
    add_decision(
        session, ids["active"], action="resume", step_index=1, decided_at=NOW - timedelta(hours=1),
        percent_before=25.0, percent_after=25.0, reason="resumed by tok_x:ops",
    )  # fmt: skip
    add_decision(
        session, ids["rolled_back"], action="rollback", decided_at=NOW - timedelta(hours=2),
        reason="error_rate failed: 20 of 100", gates=FAILED,
    )  # fmt: skip
    add_decision(session, ids["old"], action="complete", decided_at=week, percent_after=100.0)
    return ids


def test_rollouts_lists_canaries_in_force_and_those_decided_on_in_the_window(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions, write=True) as session:
        ids = _three_canaries(session)
    window = Window(start=NOW - timedelta(hours=24), end=NOW)
    with transaction(sessions) as session:
        found = queries_rollouts.rollouts(session, NOW, window)
    assert [r.deployment_id for r in found.rollouts] == [ids["rolled_back"], ids["active"]]
    undone, active = found.rollouts
    assert (active.status, active.step_index, active.percent, active.steps) == (
        "active", 1, 25.0, [5.0, 25.0, 100.0],
    )  # fmt: skip
    assert active.latest_decision is not None
    assert (active.latest_decision.action, active.latest_decision.reason) == (
        "resume", "resumed by tok_x:ops",
    )  # fmt: skip
    assert [(a.arm, a.version) for a in active.arms] == [("A", 1), ("B", 2)]
    assert (undone.status, undone.percent) == ("rolled_back", 0.0)
    assert undone.latest_decision is not None
    assert undone.latest_decision.action == "rollback"
    assert [g.passed for g in undone.latest_decision.gates] == [True, False, None]


def test_a_rollback_in_the_window_is_a_rollout_incident_with_its_failed_gates(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions, write=True) as session:
        ids = _three_canaries(session)
        aborted = add_canary(
            session, arms=A1_B2, status="aborted", created_at=NOW - timedelta(hours=3)
        )
        add_decision(
            session, aborted, action="abort", decided_at=NOW - timedelta(minutes=30),
            reason="aborted by tok_x:ops",
        )  # fmt: skip
        earlier = add_canary(
            session, arms=A1_B2, status="rolled_back", created_at=NOW - timedelta(hours=9)
        )
        add_decision(  # before the window: not an incident any more
            session, earlier, action="rollback", decided_at=NOW - timedelta(hours=7)
        )
    with transaction(sessions) as session:
        found = diagnostics.incidents(session, NOW, 6)
    rollouts = [i for i in found.incidents if i.kind == "rollout"]
    assert [(i.deployment_id, i.action) for i in rollouts] == [
        (aborted, "abort"),
        (ids["rolled_back"], "rollback"),
    ]
    rollback = rollouts[1]
    assert (rollback.control_version, rollback.candidate_version) == (1, 2)
    assert rollback.percent_before == 5.0
    assert rollback.reason == "error_rate failed: 20 of 100"
    assert [(g.name, g.value, g.limit) for g in rollback.failed_gates] == [
        ("error_rate", 0.2, 0.02)
    ]
    assert rollouts[0].failed_gates == []


# -- the API ------------------------------------------------------------------------------------


def _get(live: LiveRegistry, token: str, path: str, **params: Any) -> Any:
    with live.client(token) as http:
        response = http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def test_the_api_serves_rollouts_arms_and_rollout_incidents(cloud: LiveRegistry) -> None:
    engine = make_engine(cloud.config.database_url)
    with transaction(make_sessionmaker(engine), write=True) as session:
        ids = _three_canaries(session)
        _served(session, [1, 2])
    engine.dispose()
    viewer = cloud.token("viewer")
    at = NOW.isoformat()

    listed = _get(cloud, viewer, "/v1/analytics/rollouts", at=at, window_hours=24)
    assert [r["deployment_id"] for r in listed["rollouts"]] == [ids["rolled_back"], ids["active"]]
    assert listed["rollouts"][1]["latest_decision"]["action"] == "resume"

    incidents = _get(cloud, viewer, "/v1/analytics/incidents", at=at, window_hours=6)
    assert [(i["kind"], i["deployment_id"]) for i in incidents["incidents"]] == [
        ("rollout", ids["rolled_back"])
    ]
    assert [g["name"] for g in incidents["incidents"][0]["failed_gates"]] == ["error_rate"]

    models = _get(
        cloud, viewer, "/v1/analytics/models", start=(NOW - timedelta(days=1)).isoformat(), end=at
    )
    assert [(v["model_version"], v["arm"], v["deployment_id"]) for v in models["versions"]] == [
        (1, "A", ids["active"]),
        (2, "B", ids["active"]),
    ]
