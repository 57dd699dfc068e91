"""A/B arms: which arm of a deployment a store is in (pure, shared by registry and analytics).

The store is the unit. Its bucket is a deterministic hash of (deployment salt, store id)
mapped onto [0, 100): the same store always lands in the same bucket for the life of a
deployment, and two deployments (two salts) bucket independently.

Arms take consecutive ranges of buckets: the candidates (every arm after the first) from
0 upward in their order, the control (the first arm) the rest. With one candidate that
is ``bucket < weight_B → B, else A``, so growing B's weight only ever moves stores from A
to B: a store in the 5% canary is still in B at 25%.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["BUCKETS", "arm_for", "bucket_of", "check_weights", "split_stores"]

BUCKETS = 10_000  # resolution: weights are honoured to 0.01 percentage points


@functools.lru_cache(maxsize=1 << 18)  # a chain's stores x a few deployments, ~30 MB at most
def bucket_of(salt: str, store_id: str) -> int:
    """The store's bucket in ``[0, BUCKETS)`` for a deployment's ``salt``."""
    digest = hashlib.sha256(f"{salt}\x00{store_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def check_weights(weights: Sequence[tuple[str, float]]) -> None:
    """``ValueError`` unless arms are named once each and weights are in [0, 100] summing to 100."""
    if not weights:
        raise ValueError("a deployment needs at least one arm")
    names = [arm for arm, _ in weights]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names repeat: {names}")
    if any(not 0 <= w <= 100 for _, w in weights):
        raise ValueError("arm weights must lie in [0, 100]")
    if abs(sum(w for _, w in weights) - 100.0) > 1e-6:
        raise ValueError(f"arm weights must add up to 100, not {sum(w for _, w in weights):g}")


def _edges(weights: Sequence[tuple[str, float]]) -> list[tuple[float, str]]:
    """(upper bucket edge, arm) of each candidate, in order."""
    edges, edge = [], 0.0
    for arm, weight in weights[1:]:
        edge += weight * BUCKETS / 100.0
        edges.append((edge, arm))
    return edges


def _arm_at(point: int, edges: list[tuple[float, str]], control: str) -> str:
    for edge, arm in edges:
        if point < edge:
            return arm
    return control


def arm_for(salt: str, store_id: str, weights: Sequence[tuple[str, float]]) -> str:
    """The arm of ``store_id``: ``weights`` is ``[(control, w), (candidate, w), ...]`` in %."""
    return _arm_at(bucket_of(salt, store_id), _edges(weights), weights[0][0])


def split_stores(
    salt: str, stores: Iterable[str], weights: Sequence[tuple[str, float]]
) -> dict[str, list[str]]:
    """``stores`` by arm (every arm present, each store bucketed once), as ``arm_for``."""
    edges, control = _edges(weights), weights[0][0]
    found: dict[str, list[str]] = {arm: [] for arm, _ in weights}
    for store in stores:
        found[_arm_at(bucket_of(salt, store), edges, control)].append(store)
    return found
