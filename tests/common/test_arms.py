"""A/B bucketing of stores: deterministic, sticky, proportional, monotone, salt-independent."""

from __future__ import annotations

import pytest

from storecast.common.arms import BUCKETS, arm_for, bucket_of, check_weights

STORES = [f"S{i:05d}" for i in range(10_000)]


def b_share(salt: str, percent: float) -> float:
    weights = [("A", 100.0 - percent), ("B", percent)]
    return 100.0 * sum(arm_for(salt, s, weights) == "B" for s in STORES) / len(STORES)


@pytest.mark.parametrize("percent", [1, 5, 25, 50, 75, 95])
@pytest.mark.parametrize("salt", ["9f1c0d", "deployment-2"])
def test_bucketing_10000_stores_lands_within_3_points_of_each_weight(salt, percent):
    assert abs(b_share(salt, percent) - percent) <= 3.0


def test_three_arms_each_get_their_share_within_3_points():
    weights = [("A", 60.0), ("B", 30.0), ("C", 10.0)]
    arms = [arm_for("salt", s, weights) for s in STORES]
    for arm, weight in weights:
        assert abs(100.0 * arms.count(arm) / len(STORES) - weight) <= 3.0


def test_a_store_stays_in_its_arm_for_the_same_salt():
    weights = [("A", 80.0), ("B", 20.0)]
    first = [arm_for("sticky", s, weights) for s in STORES[:2000]]
    assert first == [arm_for("sticky", s, weights) for s in STORES[:2000]]
    assert all(0 <= bucket_of("sticky", s) < BUCKETS for s in STORES[:2000])


def test_growing_b_only_moves_stores_from_a_to_b():
    def in_b(percent: float) -> set[str]:
        weights = [("A", 100.0 - percent), ("B", percent)]
        return {s for s in STORES if arm_for("grow", s, weights) == "B"}

    at_5, at_25, at_50, at_100 = in_b(5), in_b(25), in_b(50), in_b(100)
    assert at_5 <= at_25 <= at_50 <= at_100 == set(STORES)
    assert in_b(0) == set()


def test_two_salts_bucket_stores_independently():
    weights = [("A", 50.0), ("B", 50.0)]
    one = [arm_for("salt-one", s, weights) == "B" for s in STORES]
    two = [arm_for("salt-two", s, weights) == "B" for s in STORES]
    both = sum(a and b for a, b in zip(one, two, strict=True)) / len(STORES)
    assert abs(both - 0.25) <= 0.03  # independent halves overlap on a quarter


@pytest.mark.parametrize(
    "weights",
    [[], [("A", 50.0), ("A", 50.0)], [("A", 120.0), ("B", -20.0)], [("A", 50.0), ("B", 40.0)]],
)
def test_check_weights_refuses_repeated_names_out_of_range_or_not_adding_to_100(weights):
    with pytest.raises(ValueError):
        check_weights(weights)


def test_check_weights_accepts_a_proper_split():
    check_weights([("A", 95.0), ("B", 5.0)])
