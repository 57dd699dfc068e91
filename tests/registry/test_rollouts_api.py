"""The rollout API: canary bodies, deployment views, the readout, operator actions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storecast.registry.setup import init_registry
from tests.registry._rollouts import MODEL, canary_body, publish_versions
from tests.registry.conftest import LiveRegistry, MakeBundle, registry_config, serve_registry


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, make_bundle: MakeBundle
) -> Iterator[LiveRegistry]:
    """One SQLite cloud with v1, v2 and production -> v1, for calls that change little."""
    home = tmp_path_factory.mktemp("rollouts-api")
    config = registry_config(home / "registry", f"sqlite:///{home / 'cloud.db'}")
    with serve_registry(config, init_registry(config)) as live:
        with live.client(live.admin) as http:
            publish_versions(http, make_bundle, 1, 2)
            http.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1})
        yield live


@pytest.fixture
def admin(shared: LiveRegistry) -> Iterator[httpx.Client]:
    with shared.client(shared.admin) as http:
        yield http


def test_a_canary_is_created_with_its_arms_plan_and_first_step(admin):
    response = admin.post("/v1/deployments", json=canary_body([5, 25, 100]))
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["strategy"] == "canary" and out["status"] == "active"
    assert out["arms"] == [
        {"arm": "A", "version": 1, "alias": None, "resolved_version": 1, "weight": 95.0},
        {"arm": "B", "version": 2, "alias": None, "resolved_version": 2, "weight": 5.0},
    ]
    assert [s["percent"] for s in out["plan"]["steps"]] == [5, 25, 100]
    assert out["plan"]["gates"]["wape_margin"] == 0.02
    assert (out["step_index"], out["step_percent"]) == (0, 5.0)
    assert out["version"] == 2 and out["step_started_at"] == out["created_at"]
    assert admin.get(f"/v1/deployments/{out['id']}").json() == out


def test_an_immediate_deployment_shows_one_arm_at_100(admin):
    out = admin.post("/v1/deployments", json={"model": MODEL, "alias": "production"}).json()
    assert out["strategy"] == "immediate" and out["plan"] is None and out["step_index"] is None
    assert out["arms"] == [
        {"arm": "A", "version": None, "alias": "production", "resolved_version": 1, "weight": 100.0}
    ]


def strategy(**changes: Any) -> dict[str, Any]:
    return {**canary_body([5, 100])["strategy"], **changes}


BAD_BODIES = [
    (
        "steps_not_increasing",
        {"strategy": strategy(steps=[{"percent": 50}, {"percent": 5}])},
        "strategy.steps",
    ),
    (
        "last_step_not_100",
        {"strategy": strategy(steps=[{"percent": 5}, {"percent": 50}])},
        "strategy.steps",
    ),
    (
        "zero_percent",
        {"strategy": strategy(steps=[{"percent": 0}, {"percent": 100}])},
        "strategy.steps.0.percent",
    ),
    (
        "negative_duration",
        {"strategy": strategy(steps=[{"percent": 100, "min_duration_s": -1}])},
        "strategy.steps.0.min_duration_s",
    ),
    ("no_steps", {"strategy": {"kind": "canary"}}, "strategy"),
    (
        "error_rate_over_1",
        {"strategy": strategy(gates={"max_error_rate": 2})},
        "strategy.gates.max_error_rate",
    ),
    (
        "confidence_1",
        {"strategy": strategy(gates={"confidence": 1.0})},
        "strategy.gates.confidence",
    ),
    (
        "negative_margin",
        {"strategy": strategy(gates={"wape_margin": -0.1})},
        "strategy.gates.wape_margin",
    ),
    ("zero_p99", {"strategy": strategy(gates={"max_p99_ms": 0})}, "strategy.gates.max_p99_ms"),
    ("unknown_gate", {"strategy": strategy(gates={"max_cpu": 1})}, "strategy.gates.max_cpu"),
    ("same_candidate", {"candidate": {"version": 1}}, "candidate"),
    ("no_candidate", {"candidate": None}, "candidate"),
    ("two_targets", {"control": {"version": 1, "alias": "production"}}, "control"),
    ("version_too", {"version": 2}, "version"),
    ("bad_promote_alias", {"promote_alias": "Not An Alias"}, "promote_alias"),
    ("unknown_kind", {"strategy": strategy(kind="blue-green")}, "strategy.kind"),
]


@pytest.mark.parametrize(("change", "field"), [pytest.param(c, f, id=i) for i, c, f in BAD_BODIES])
def test_a_bad_canary_body_is_a_422_naming_the_field(admin, change, field):
    body = {**canary_body([5, 100]), **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = admin.post("/v1/deployments", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [f["field"] for f in error["fields"]], error
    assert error["message"].startswith(error["fields"][0]["field"])


def test_canary_fields_on_an_immediate_deployment_are_a_422(admin):
    response = admin.post(
        "/v1/deployments", json={"model": MODEL, "version": 1, "candidate": {"version": 2}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "candidate"


def test_a_candidate_resolving_to_the_controls_version_is_a_422(admin):
    body = canary_body([5, 100])
    body["control"] = {"alias": "production"}  # production -> v1
    body["candidate"] = {"version": 1}
    response = admin.post("/v1/deployments", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == [
        {"field": "candidate", "message": "the candidate and the control are both v1"}
    ]


@pytest.mark.parametrize(
    ("arm", "target", "status"),
    [("candidate", {"version": 9}, 404), ("control", {"alias": "nope"}, 404)],
)
def test_an_unknown_arm_release_is_a_404(admin, arm, target, status):
    body = canary_body([5, 100])
    body[arm] = target
    assert admin.post("/v1/deployments", json=body).status_code == status


def test_the_readout_of_a_fresh_canary_has_every_part(shared, admin):
    for i in range(6):
        shared.enrol(f"ro-{i}", f"RO{i}")
    created = admin.post("/v1/deployments", json=canary_body([50, 100])).json()
    with shared.client(shared.token("viewer")) as viewer:
        response = viewer.get(f"/v1/deployments/{created['id']}/readout")
    assert response.status_code == 200, response.text
    out = response.json()
    assert set(out) == {
        "deployment_id", "model", "strategy", "status", "as_of", "source", "window", "step",
        "arms", "difference", "verdict", "gates_now", "decisions",
    }  # fmt: skip
    assert out["source"] == "live" and out["as_of"] == out["window"]["until"]
    assert out["window"]["since"] == created["created_at"]
    assert "since the deployment started" in out["window"]["basis"]
    assert out["step"]["index"] == 0 and out["step"]["of"] == 2 and out["step"]["percent"] == 50
    assert [a["arm"] for a in out["arms"]] == ["A", "B"]
    assert sum(a["stores"] for a in out["arms"]) >= 6
    assert all(a["forecast_hours"] == 0 and a["wape"] is None for a in out["arms"])
    assert out["difference"] is None and out["verdict"] == "inconclusive"
    assert out["gates_now"]["action"] == "wait"
    assert {g["name"] for g in out["gates_now"]["gates"]} == {
        "activations", "error_rate", "latency_p99", "accuracy",
    }  # fmt: skip
    assert out["decisions"] == []


def test_the_readout_of_an_unknown_deployment_is_a_404(admin):
    assert admin.get("/v1/deployments/999999/readout").status_code == 404


def act(http: httpx.Client, deployment: int, action: str, **body: Any) -> httpx.Response:
    return http.post(f"/v1/deployments/{deployment}/{action}", json=body)


def test_operators_pause_resume_promote_and_abort_with_409_for_bad_moves(
    live: LiveRegistry, make_bundle
):
    with live.client(live.admin) as http:
        publish_versions(http, make_bundle, 1, 2)
        http.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1})
        body = canary_body([10, 50, 100], promote_alias="production")
        one = http.post("/v1/deployments", json=body).json()["id"]
        two = http.post("/v1/deployments", json=body).json()["id"]
        plain = http.post("/v1/deployments", json={"model": MODEL, "version": 1}).json()["id"]

        paused = act(http, one, "pause", reason="stores report oddities")
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        assert paused.json()["step_percent"] == 10.0  # weights stay
        again = act(http, one, "pause")
        assert again.status_code == 409
        assert again.json()["error"]["message"] == (
            f"deployment {one} is paused: only active canaries can be paused"
        )
        assert act(http, one, "resume").json()["status"] == "active"
        assert act(http, one, "resume").status_code == 409
        promoted = act(http, one, "promote").json()
        assert (promoted["step_index"], promoted["step_percent"]) == (1, 50.0)
        completed = act(http, one, "promote").json()
        assert completed["status"] == "completed" and completed["step_percent"] == 100.0
        assert http.get(f"/v1/models/{MODEL}").json()["aliases"]["production"] == 2
        for action in ("promote", "pause", "resume", "abort"):
            refused = act(http, one, action)
            assert refused.status_code == 409, action
            assert "is completed" in refused.json()["error"]["message"]

        aborted = act(http, two, "abort", reason="bad week").json()
        assert aborted["status"] == "aborted"
        assert {a["arm"]: a["weight"] for a in aborted["arms"]} == {"A": 100.0, "B": 0.0}
        assert act(http, two, "resume").status_code == 409
        immediate = act(http, plain, "promote")
        assert immediate.status_code == 409
        assert immediate.json()["error"]["message"] == (
            f"deployment {plain} is immediate: it has no rollout to promote"
        )
        assert act(http, 999999, "pause").status_code == 404
        assert http.post(f"/v1/deployments/{one}/pause").status_code == 415  # no JSON body

        readout = http.get(f"/v1/deployments/{one}/readout").json()
        audit = http.get("/v1/audit").json()["records"]
    assert [
        (d["action"], d["percent_before"], d["percent_after"]) for d in readout["decisions"]
    ] == [
        ("pause", 10.0, 10.0),
        ("resume", 10.0, 10.0),
        ("operator_promote", 10.0, 50.0),
        ("operator_promote", 50.0, 100.0),
    ]
    assert readout["decisions"][0]["reason"] == "stores report oddities"
    rollout = [
        (r["action"], r["outcome"], r["resource"])
        for r in audit
        if r["action"].startswith("rollout.")
    ]
    assert ("rollout.pause", "ok", f"deployment:{one}") in rollout
    assert ("rollout.pause", "failed", f"deployment:{one}") in rollout
    assert ("rollout.abort", "ok", f"deployment:{two}") in rollout
    assert len(rollout) == 15
    alias = [r for r in audit if r["action"] == "model.alias" and r["detail"].get("deployment_id")]
    assert [(r["resource"], r["detail"]["version"]) for r in alias] == [
        (f"model:{MODEL}@production", 2)
    ]


def test_a_viewer_reads_the_readout_but_may_not_act(shared, admin):
    created = admin.post("/v1/deployments", json=canary_body([50, 100])).json()["id"]
    with shared.client(shared.token("viewer")) as viewer:
        assert viewer.get(f"/v1/deployments/{created}/readout").status_code == 200
        for action in ("promote", "pause", "resume", "abort"):
            refused = act(viewer, created, action)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
    with shared.client(shared.token("publisher")) as publisher:
        assert act(publisher, created, "pause").status_code == 200


def test_a_device_poll_names_its_arm(shared, admin):
    token = shared.enrol("arm-dev", "ARM1")
    created = admin.post(
        "/v1/deployments",
        json=canary_body([100], selector={"kind": "stores", "values": ["ARM1"]}),
    ).json()
    with shared.client(token) as device:
        got = device.get("/v1/devices/arm-dev/assignment").json()
    assert (got["deployment_id"], got["arm"], got["version"]) == (created["id"], "B", 2)
