"""The assignment resolver: a pure function over devices, deployments and the catalog."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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

DEVICE = DeviceFacts("dev-1", "S001", "north", frozenset({"pilot"}))


def release(version: int, model: str = "demand-lstm") -> Release:
    return Release(model, version, f"{model}/{model}-v{version}.tar", f"{version:064x}", 1000)


CATALOG = Catalog(
    releases={("demand-lstm", v): release(v) for v in (1, 2, 3)},
    aliases={("demand-lstm", "production"): 2},
)
ALL = Selector(SelectorKind.ALL)


def deployment(id: int, selector: Selector = ALL, **target: object) -> DeploymentSpec:
    return DeploymentSpec(id, "demand-lstm", selector, **target)  # type: ignore[arg-type]


def test_no_deployment_means_no_assignment() -> None:
    assert resolve(DEVICE, [], CATALOG) is None


def test_a_version_deployment_assigns_that_release() -> None:
    got = resolve(DEVICE, [deployment(1, version=3)], CATALOG)
    assert got == Assignment(1, "demand-lstm", 3, release(3).target_path, release(3).sha256, 1000)


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
