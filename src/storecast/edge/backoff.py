"""Exponential backoff with a cap and jitter, for anything the agent retries over a network.

Pure: it computes waits; the caller does the waiting. Randomness is injected (a seeded
``random.Random`` or ``numpy.random.Generator``), so a test sees the same waits every run.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Backoff", "UniformSource"]


class UniformSource(Protocol):
    """A random source with ``uniform(low, high)`` (``random.Random``, numpy ``Generator``)."""

    def uniform(self, low: float, high: float, /) -> float: ...


class Backoff:
    """Waits of ``base_s * 2**failures`` seconds, capped at ``cap_s``, then scaled by a
    random factor in ``[1 - jitter, 1 + jitter]`` (so a fleet does not retry in step)."""

    def __init__(
        self, base_s: float, cap_s: float, rng: UniformSource, jitter: float = 0.2
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last ``reset``."""
        return self._failures

    def next(self) -> float:
        """The wait (seconds) after one more failure."""
        delay = self.cap_s
        if self._failures < 64:  # past that, 2**n alone exceeds any cap
            delay = min(self.cap_s, self.base_s * 2.0**self._failures)
        self._failures += 1
        if self.jitter:
            delay *= float(self._rng.uniform(1.0 - self.jitter, 1.0 + self.jitter))
        return delay

    def reset(self) -> None:
        """Back to the first wait (after a success)."""
        self._failures = 0
