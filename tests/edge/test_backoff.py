"""Backoff: exponential, capped, jittered, reproducible with a seeded generator."""

from __future__ import annotations

import random

import numpy as np
import pytest

from storecast.edge.backoff import Backoff


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(0.5, 10.0, random.Random(0), jitter=0.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.failures == 7


def test_backoff_jitter_stays_within_its_share() -> None:
    backoff = Backoff(1.0, 60.0, np.random.default_rng(7), jitter=0.2)
    for n in range(200):
        nominal = min(60.0, 2.0**n)
        assert 0.8 * nominal <= backoff.next() <= 1.2 * nominal


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(2.0, 100.0, random.Random(1), jitter=0.0)
    backoff.next()
    backoff.next()
    backoff.reset()
    assert backoff.next() == 2.0


def test_backoff_with_the_same_seed_waits_the_same() -> None:
    first = Backoff(1.0, 30.0, random.Random(42))
    second = Backoff(1.0, 30.0, random.Random(42))
    assert [first.next() for _ in range(10)] == [second.next() for _ in range(10)]


def test_backoff_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0, random.Random())
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0, random.Random())
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0, random.Random(), jitter=1.0)
