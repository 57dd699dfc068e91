"""Model performance by version: accuracy with a confidence interval, latency, errors."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storecast.analytics import stats
from storecast.analytics.queries import (
    DEVICES,
    accuracy_of,
    accuracy_sums,
    hist_sums,
    latency_of,
    total,
)
from storecast.analytics.queries_rollouts import version_arms
from storecast.analytics.schemas import ModelPerformance, VersionPerformance, Window
from storecast.analytics.tables import (
    BUCKET_COLUMNS,
    NO_MODEL,
    AccuracyHourlyRow,
    DeviceStateRow,
    InferenceHourlyRow,
)

__all__ = ["model_performance"]


@dataclass
class _Version:
    accuracy: list[float] = field(default_factory=lambda: [0.0] * 5)
    clusters: list[tuple[float, float]] = field(default_factory=list)  # per store
    served: int = 0
    errors: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * len(BUCKET_COLUMNS))
    stores: set[str] = field(default_factory=set)


def model_performance(
    session: Session, window: Window, model_name: str | None = None
) -> ModelPerformance:
    """Every model version that forecast in the window (the no-model fallback aside).

    The WAPE interval treats stores as clusters (``stats.wape_interval``); ``devices``
    counts the devices whose newest heartbeat reports the version; ``arm`` names the
    version's arm in the newest canary deployment in force of its model.
    """
    a, i, s = AccuracyHourlyRow, InferenceHourlyRow, DeviceStateRow
    acc = (
        select(a.model_name, a.model_version, a.store_id, *accuracy_sums())
        .where(a.hour >= window.start, a.hour < window.end, a.model_name != NO_MODEL)
        .group_by(a.model_name, a.model_version, a.store_id)
    )
    inf = (
        select(
            i.model_name,
            i.model_version,
            i.store_id,
            total(i.count),
            total(i.errors),
            *hist_sums(InferenceHourlyRow.__table__),
        )
        .where(i.hour >= window.start, i.hour < window.end, i.model_name != NO_MODEL)
        .group_by(i.model_name, i.model_version, i.store_id)
    )
    retired = select(DEVICES.c.device_id).where(DEVICES.c.decommissioned_at.is_not(None))
    running = (
        select(s.model_name, s.model_version, func.count())
        .where(s.device_id.not_in(retired), s.model_name != NO_MODEL)
        .group_by(s.model_name, s.model_version)
    )
    if model_name is not None:
        acc = acc.where(a.model_name == model_name)
        inf = inf.where(i.model_name == model_name)
        running = running.where(s.model_name == model_name)

    versions: dict[tuple[str, int], _Version] = defaultdict(_Version)
    for name, version, store_id, *sums in session.execute(acc):
        v = versions[name, version]
        for k, value in enumerate(sums):
            v.accuracy[k] += float(value)
        v.clusters.append((float(sums[3]), float(sums[1])))  # (sum_abs_err, sum_actual)
        v.stores.add(store_id)
    for name, version, store_id, count, errors, *hist in session.execute(inf):
        v = versions[name, version]
        v.served += int(count)
        v.errors += int(errors)
        v.hist = [h + int(n) for h, n in zip(v.hist, hist, strict=True)]
        v.stores.add(store_id)
    devices = {(name, version): int(n) for name, version, n in session.execute(running)}
    arms = version_arms(session, model_name)

    return ModelPerformance(
        window=window,
        versions=[
            VersionPerformance(
                model_name=name,
                model_version=version,
                arm=arms[name, version][1] if (name, version) in arms else None,
                deployment_id=arms[name, version][0] if (name, version) in arms else None,
                accuracy=accuracy_of(v.accuracy),
                wape_ci95=stats.wape_interval(v.clusters),
                latency=latency_of(v.hist),
                forecasts_served=v.served,
                errors=v.errors,
                error_rate=stats.ratio(v.errors, v.served),
                devices=devices.get((name, version), 0),
                stores=len(v.stores),
            )
            for (name, version), v in sorted(versions.items())
        ],
    )
