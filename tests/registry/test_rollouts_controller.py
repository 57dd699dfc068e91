"""The rollout controller end to end (SQLite and PostgreSQL): real telemetry through the
analytics API, ticks under an injected clock, devices following their arms."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storecast.analytics.evidence import ArmEvidence, ArmScope, arms_evidence
from storecast.common.audit import AuditRow
from storecast.common.clock import FixedClock
from storecast.registry import rollouts
from storecast.registry.arms import EvidenceQuery, analytics_evidence
from storecast.registry.setup import init_registry
from storecast.registry.tables import RolloutDecisionRow
from tests.registry._rollouts import MODEL, canary_body, enrol_stores, publish_versions, report
from tests.registry.conftest import LiveRegistry, MakeBundle, registry_config, serve_registry

T0 = datetime(2026, 11, 2, tzinfo=UTC)
STORES = 30


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def cloud(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[LiveRegistry]:
    """A live cloud whose clock moves only when a test says so."""
    config = registry_config(tmp_path / "cloud", database_url, clock=clock)
    with serve_registry(config, init_registry(config)) as live:
        yield live


def decisions(live: LiveRegistry) -> list[RolloutDecisionRow]:
    with live.database.transaction() as session:
        return list(
            session.execute(select(RolloutDecisionRow).order_by(RolloutDecisionRow.id)).scalars()
        )


def audit_actions(live: LiveRegistry, actor: str = rollouts.CONTROLLER) -> list[str]:
    with live.database.transaction() as session:
        rows = session.execute(
            select(AuditRow).where(AuditRow.actor == actor).order_by(AuditRow.seq)
        )
        return [row.action for row in rows.scalars()]


def test_a_worse_candidate_is_rolled_back_and_its_stores_return_to_a(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    with cloud.client(cloud.admin) as admin:
        publish_versions(admin, make_bundle, 1, 2)
        stores = enrol_stores(cloud, STORES)
        created = admin.post("/v1/deployments", json=canary_body([50, 100]))
        assert created.status_code == 201, created.text
        deployment = created.json()["id"]
        arms = report(cloud, stores, T0, 12, bias={1: 0.0, 2: 0.5})  # B forecasts 50% high
        clock.advance(12 * 3600)
        readout = admin.get(f"/v1/deployments/{deployment}/readout").json()
        assert readout["verdict"] == "worse"
        assert readout["gates_now"]["action"] == "rollback"  # seen, not acted on
        assert readout["status"] == "active" and readout["decisions"] == []

        done = rollouts.tick(cloud.database)

        assert [(t.deployment_id, t.decision.action, t.applied) for t in done] == [
            (deployment, "rollback", True)
        ]
        shown = admin.get(f"/v1/deployments/{deployment}").json()
        assert shown["status"] == "rolled_back"
        assert {a["arm"]: a["weight"] for a in shown["arms"]} == {"A": 100.0, "B": 0.0}
        after = admin.get(f"/v1/deployments/{deployment}/readout").json()
    in_b = [s for s in stores if arms[s.store_id] == "B"]
    assert len(in_b) >= 2
    for store in in_b:
        got = store.assignment(cloud)
        assert (got["version"], got["arm"]) == (1, "A")
    [decision] = decisions(cloud)
    assert (decision.action, decision.kind, decision.step_index) == ("rollback", "step", 0)
    assert (decision.percent_before, decision.percent_after) == (50.0, 0.0)
    assert "accuracy failed" in decision.reason and decision.decided_by == "controller"
    assert audit_actions(cloud) == ["rollout.rollback"]
    assert [d["action"] for d in after["decisions"]] == ["rollback"]
    assert any(
        g["name"] == "accuracy" and g["passed"] is False for g in after["decisions"][0]["gates"]
    )
    assert {a["arm"]: a["stores"] for a in after["arms"]}["B"] == len(in_b)  # the last step's
    assert rollouts.tick(cloud.database) == []  # nothing active is left to decide


def test_a_better_candidate_is_promoted_step_by_step_to_100_and_the_alias_moves(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    with cloud.client(cloud.admin) as admin:
        publish_versions(admin, make_bundle, 1, 2)
        admin.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1}).raise_for_status()
        stores = enrol_stores(cloud, STORES)
        body = canary_body([30, 60, 100], promote_alias="production")
        body["control"] = {"alias": "production"}
        deployment = admin.post("/v1/deployments", json=body).json()["id"]

        report(cloud, stores, T0, 12, bias={1: 0.3, 2: 0.0})  # A forecasts 30% high
        clock.advance(12 * 3600)
        first = rollouts.tick(cloud.database)
        assert [(t.decision.action, t.applied) for t in first] == [("promote", True)]
        assert admin.get(f"/v1/deployments/{deployment}").json()["step_index"] == 1

        started = clock.now()
        waited = rollouts.tick(cloud.database)  # the new step has no evidence yet
        assert [(t.decision.action, t.applied) for t in waited] == [("wait", False)]

        report(cloud, stores, started, 12, bias={1: 0.3, 2: 0.0})
        clock.advance(12 * 3600)
        last = rollouts.tick(cloud.database)
        assert [(t.decision.action, t.applied) for t in last] == [("complete", True)]

        shown = admin.get(f"/v1/deployments/{deployment}").json()
        model = admin.get(f"/v1/models/{MODEL}").json()
    assert shown["status"] == "completed"
    assert {a["arm"]: a["weight"] for a in shown["arms"]} == {"A": 0.0, "B": 100.0}
    assert model["aliases"]["production"] == 2
    assert {(s.assignment(cloud)["version"]) for s in stores} == {2}
    assert [(d.action, d.step_index, d.percent_after) for d in decisions(cloud)] == [
        ("promote", 0, 60.0),
        ("complete", 1, 100.0),
    ]
    assert audit_actions(cloud) == ["rollout.promote", "rollout.complete", "model.alias"]


def passing(
    barrier: threading.Barrier,
) -> EvidenceQuery:
    """Evidence on which every gate passes; each tick waits for the other at the barrier,
    so both have decided before either applies."""

    def query(
        session: Session,
        *,
        model: str,
        arms: Sequence[ArmScope],
        since: datetime,
        until: datetime,
    ) -> dict[str, ArmEvidence]:
        barrier.wait(timeout=30)
        hist = (0,) * 6 + (500,) + (0,) * 6
        return {
            scope.arm: ArmEvidence(
                scope.arm,
                model,
                scope.version,
                stores=4,
                forecast_hours=100,
                sum_actual=400.0,
                sum_q50=400.0,
                sum_abs_err=40.0,
                inferences=500,
                latency_hist=hist,
                per_store=((9.0, 100.0), (10.0, 100.0), (11.0, 100.0), (10.0, 100.0)),
            )
            for scope in arms
        }

    return query


def test_two_ticks_at_once_take_one_decision_per_step(
    cloud: LiveRegistry, clock: FixedClock, make_bundle: MakeBundle
):
    with cloud.client(cloud.admin) as admin:
        publish_versions(admin, make_bundle, 1, 2)
        enrol_stores(cloud, 20)
        deployment = admin.post("/v1/deployments", json=canary_body([50, 75, 100])).json()["id"]
    clock.advance(3600)
    barrier = threading.Barrier(2)
    results: list[list[rollouts.Ticked]] = []

    def run() -> None:  # the barrier pairs the decisions' reads: no readout snapshots here
        results.append(rollouts.tick(cloud.database, evidence=passing(barrier), snapshots=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    applied = [t for ticked in results for t in ticked if t.applied]
    assert len(results) == 2 and [t.decision.action for t in applied] == ["promote"]
    assert [(d.deployment_id, d.step_index) for d in decisions(cloud)] == [(deployment, 0)]
    with cloud.client(cloud.admin) as admin:
        assert admin.get(f"/v1/deployments/{deployment}").json()["step_index"] == 1


def test_one_step_ending_decision_per_step_is_a_database_constraint(
    cloud: LiveRegistry, make_bundle: MakeBundle
):
    with cloud.client(cloud.admin) as admin:
        publish_versions(admin, make_bundle, 1, 2)
        deployment = admin.post("/v1/deployments", json=canary_body([50, 100])).json()["id"]

    def add(kind: str | None) -> None:
        with cloud.database.transaction(write=True) as session:
            session.add(
                RolloutDecisionRow(
                    deployment_id=deployment,
                    step_index=0,
                    kind=kind,
                    action="promote" if kind else "pause",
                    percent_before=50.0,
                    percent_after=100.0,
                    reason="test",
                    decided_at=T0,
                    decided_by="test",
                )
            )

    add("step")
    add(None)
    add(None)  # pauses and resumes may repeat within a step
    with pytest.raises(IntegrityError):
        add("step")
    assert len(decisions(cloud)) == 3


def test_the_real_evidence_query_matches_the_controller_signature():
    query: EvidenceQuery = arms_evidence
    assert analytics_evidence() is query
    assert timedelta(0) == timedelta(0)
