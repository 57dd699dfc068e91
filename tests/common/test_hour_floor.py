"""``hour_floor``: the UTC hour holding a moment, whatever zone the moment is written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter

from storecast.common.telemetry import hour_floor

OFFSETS = st.sampled_from([0, 60, -180, 330, 345, -570, 840])  # minutes east of UTC


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2199, 12, 30)),
    offset=OFFSETS,
)
def test_the_floor_is_the_utc_hour_start(moment: datetime, offset: int) -> None:
    zoned = moment.replace(tzinfo=timezone(timedelta(minutes=offset)))
    expected = datetime.fromtimestamp(int(zoned.timestamp() // 3600) * 3600, UTC)
    floor = hour_floor(zoned)
    assert floor == expected and floor.tzinfo is UTC


def test_times_as_pydantic_parses_them() -> None:
    parse = TypeAdapter(AwareDatetime).validate_python
    assert hour_floor(parse("2026-11-26T22:59:59.999Z")) == datetime(2026, 11, 26, 22, tzinfo=UTC)
    assert hour_floor(parse("2026-11-27T03:50:00+05:30")) == datetime(2026, 11, 26, 22, tzinfo=UTC)
    assert hour_floor(parse("2026-11-27T03:10:00+05:30")) == datetime(2026, 11, 26, 21, tzinfo=UTC)
