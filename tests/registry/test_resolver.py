"""The assignment resolver: a pure function over devices, deployments and the catalog."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storecast.registry.deployments import spec_of
from storecast.registry.resolver import (
    Assignment,
    Catalog,
    DeploymentSpec,
    DeviceFacts,
    Release,
    Selector,
    SelectorKind,
    etag_of,
    resolve,
)
from storecast.registry.rollout import CanaryPlan, Step
from storecast.registry.tables import DeploymentRow

DEVICE = DeviceFacts("dev-1", "S001", "north", frozenset({"pilot"}))


def release(version: int, model: str = "demand-lstm") -> Release:
    return Release(model, version, f"{model}/{model}-v{version}.tar", f"{version:064x}", 1000)


CATALOG = Catalog(
    releases={("demand-lstm", v): release(v) for v in (1, 2, 3)},
    aliases={("demand-lstm", "production"): 2},
)
ALL = Selector(SelectorKind.ALL)


def deployment(id: int, selector: Selector = ALL, **target: object) -> DeploymentSpec:
    return DeploymentSpec.single(id, "demand-lstm", selector, **target)  # type: ignore[arg-type]


def test_no_deployment_means_no_assignment() -> None:
    assert resolve(DEVICE, [], CATALOG) is None


def test_a_version_deployment_assigns_that_release() -> None:
    got = resolve(DEVICE, [deployment(1, version=3)], CATALOG)
    assert got == Assignment(
        1, "demand-lstm", 3, release(3).target_path, release(3).sha256, 1000, "A"
    )


def test_an_alias_deployment_follows_the_alias() -> None:
    got = resolve(DEVICE, [deployment(1, alias="production")], CATALOG)
    assert got is not None and got.version == 2


def test_the_newest_matching_deployment_wins() -> None:
    deployments = [deployment(5, version=1), deployment(9, version=3), deployment(7, version=2)]
    got = resolve(DEVICE, deployments, CATALOG)
    assert got is not None and (got.deployment_id, got.version) == (9, 3)


def test_a_deployment_for_other_stores_regions_or_tags_does_not_apply() -> None:
    others = [
        deployment(10, Selector(SelectorKind.STORES, frozenset({"S002"})), version=3),
        deployment(11, Selector(SelectorKind.REGIONS, frozenset({"south"})), version=3),
        deployment(12, Selector(SelectorKind.TAGS, frozenset({"beta"})), version=3),
        deployment(1, version=1),
    ]
    got = resolve(DEVICE, others, CATALOG)
    assert got is not None and got.version == 1


def test_store_region_and_tag_selectors_match_the_device() -> None:
    for selector in (
        Selector(SelectorKind.STORES, frozenset({"S001", "S002"})),
        Selector(SelectorKind.REGIONS, frozenset({"north"})),
        Selector(SelectorKind.TAGS, frozenset({"pilot", "x"})),
    ):
        got = resolve(
            DEVICE, [deployment(1, version=1), deployment(2, selector, version=3)], CATALOG
        )
        assert got is not None and got.version == 3, selector


def test_a_withdrawn_version_is_passed_over_for_an_older_matching_deployment() -> None:
    withdrawn = Catalog({k: v for k, v in CATALOG.releases.items() if k[1] != 3}, CATALOG.aliases)
    got = resolve(DEVICE, [deployment(1, version=1), deployment(2, version=3)], withdrawn)
    assert got is not None and got.version == 1


def test_an_unset_alias_is_passed_over() -> None:
    got = resolve(DEVICE, [deployment(1, version=1), deployment(2, alias="canary")], CATALOG)
    assert got is not None and got.version == 1


def test_etag_changes_with_the_assignment_and_is_stable_otherwise() -> None:
    a = resolve(DEVICE, [deployment(1, version=1)], CATALOG)
    b = resolve(DEVICE, [deployment(1, version=2)], CATALOG)
    assert etag_of(a) == etag_of(resolve(DEVICE, [deployment(1, version=1)], CATALOG))
    assert etag_of(a) != etag_of(b) != etag_of(None)
    assert etag_of(None).startswith('"') and etag_of(None).endswith('"')


@given(
    st.lists(
        st.tuples(st.integers(1, 1000), st.integers(1, 3)), max_size=20, unique_by=lambda x: x[0]
    )
)
def test_resolution_does_not_depend_on_the_order_deployments_come_in(
    specs: list[tuple[int, int]],
) -> None:
    deployments = [deployment(i, version=v) for i, v in specs]
    forward = resolve(DEVICE, deployments, CATALOG)
    assert forward == resolve(DEVICE, list(reversed(deployments)), CATALOG)
    if specs:
        newest = max(specs)
        assert forward is not None and (forward.deployment_id, forward.version) == newest


# -- arms --------------------------------------------------------------------------------------

STORES = [f"S{i:04d}" for i in range(400)]


def canary_row(status: str = "active", step_index: int = 0) -> DeploymentRow:
    """A canary A = v1, B = v2 over every store, steps 10 / 50 / 100 %."""
    plan = CanaryPlan(tuple(Step(p) for p in (10, 50, 100)))
    return DeploymentRow(
        id=7,
        model="demand-lstm",
        version=2,
        alias=None,
        selector_json=json.dumps({"kind": "all", "values": []}),
        status=status,
        strategy="canary",
        salt="c0ffee",
        variants_json=json.dumps(
            [{"arm": "A", "version": 1, "alias": None}, {"arm": "B", "version": 2, "alias": None}]
        ),
        plan_json=json.dumps(plan.to_dict()),
        step_index=step_index,
    )


def arms_of(spec: DeploymentSpec) -> dict[str, float]:
    return {arm.name: arm.weight for arm in spec.arms}


@pytest.mark.parametrize(
    ("status", "step", "b_weight"),
    [
        ("active", 0, 10.0),
        ("active", 1, 50.0),
        ("paused", 1, 50.0),
        ("completed", 1, 100.0),
        ("rolled_back", 1, 0.0),
        ("aborted", 0, 0.0),
    ],
)
def test_a_canary_weighs_b_by_its_step_while_in_progress_and_by_its_outcome_after(
    status, step, b_weight
):
    assert arms_of(spec_of(canary_row(status, step))) == {"A": 100 - b_weight, "B": b_weight}


def test_an_immediate_deployment_has_one_arm_at_100():
    spec = DeploymentSpec.single(1, "demand-lstm", ALL, version=3)
    assert arms_of(spec) == {"A": 100.0}
    got = resolve(DEVICE, [spec], CATALOG)
    assert got is not None and got.arm == "A"


def resolved(spec: DeploymentSpec, catalog: Catalog = CATALOG) -> dict[str, tuple[str, int]]:
    found = {}
    for store in STORES:
        got = resolve(DeviceFacts(f"d-{store}", store, "north"), [spec], catalog)
        assert got is not None
        found[store] = (got.arm, got.version)
    return found


def test_each_store_runs_its_arms_release():
    found = resolved(spec_of(canary_row("active", 1)))
    assert {v for _, v in found.values()} == {1, 2}
    assert all(version == (1 if arm == "A" else 2) for arm, version in found.values())
    share = sum(arm == "B" for arm, _ in found.values()) / len(STORES)
    assert 0.4 < share < 0.6


def test_a_rolled_back_canary_keeps_resolving_its_stores_to_a():
    assert set(resolved(spec_of(canary_row("rolled_back", 1))).values()) == {("A", 1)}


def test_a_completed_canary_resolves_every_store_to_b():
    assert set(resolved(spec_of(canary_row("completed", 1))).values()) == {("B", 2)}


def test_stores_of_a_withdrawn_candidate_go_back_to_the_control():
    without_v2 = Catalog({k: v for k, v in CATALOG.releases.items() if k[1] != 2}, CATALOG.aliases)
    assert set(resolved(spec_of(canary_row("active", 1)), without_v2).values()) == {("A", 1)}


def test_the_etag_changes_when_a_store_changes_arm():
    before = resolved(spec_of(canary_row("active", 0)))
    after = resolved(spec_of(canary_row("active", 1)))
    moved = next(s for s in STORES if before[s][0] == "A" and after[s][0] == "B")
    device = DeviceFacts("d", moved, "north")
    old = resolve(device, [spec_of(canary_row("active", 0))], CATALOG)
    new = resolve(device, [spec_of(canary_row("active", 1))], CATALOG)
    assert etag_of(old) != etag_of(new)
