from datetime import UTC, datetime

import pytest

from storecast.common.clock import FixedClock, SystemClock


def test_fixed_clock_moves_only_when_told():
    clock = FixedClock(datetime(2025, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2025, 1, 1, tzinfo=UTC)
    clock.advance(90)
    assert clock.now() == datetime(2025, 1, 1, 0, 1, 30, tzinfo=UTC)
    assert clock.monotonic() == 90
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_fixed_clock_needs_an_aware_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2025, 1, 1))


def test_system_clock_is_utc():
    assert SystemClock().now().tzinfo is UTC
