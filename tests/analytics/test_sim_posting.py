"""``storecast.sim`` posting to a live cloud: every generated event lands exactly once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from storecast.analytics.tables import InferenceHourlyRow, TelemetryEventRow
from storecast.sim.sender import post
from storecast.sim.telemetry import TelemetrySim, TelemetrySimConfig
from tests.analytics.conftest import HOUR0
from tests.registry.conftest import LiveRegistry


def test_posted_streams_land_once_even_after_the_tokens_are_lost(cloud: LiveRegistry) -> None:
    sim = TelemetrySim(TelemetrySimConfig(end=HOUR0 + timedelta(days=1), devices=3, days=1))
    streams = {device.device_id: list(events) for device, events in sim.streams()}
    total = sum(len(events) for events in streams.values())
    first = post(cloud.url, cloud.admin, sim, batch_size=400, backoff_s=0.0)
    assert (first.accepted, first.duplicates, first.rejected, first.devices) == (total, 0, 0, 3)
    # A second run without the first run's tokens replaces each device's token, then its
    # resent events are recognised as duplicates.
    again = post(cloud.url, cloud.admin, sim.config, batch_size=400, backoff_s=0.0)
    assert (again.accepted, again.duplicates, again.rejected) == (0, total, 0)
    database = cloud.database
    served = sum(
        e["payload"]["count"]
        for events in streams.values()
        for e in events
        if e["type"] == "inference"
    )
    with database.transaction() as session:
        assert (
            session.execute(select(func.count()).select_from(TelemetryEventRow)).scalar() == total
        )
        assert session.execute(select(func.sum(InferenceHourlyRow.count))).scalar() == served
