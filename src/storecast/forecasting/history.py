"""``StoreHistory``: a chain's store-hour observations on a dense hourly grid (numpy only).

Every store shares one grid of ``T`` consecutive UTC hours starting at ``start``. A cell
with no observation is *missing*: ``observed`` is False there, ``sales`` is NaN, and the
covariates hold filled values (see ``storecast.forecasting.loader`` for the policy). Models
never learn from a missing target and metrics never score one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storecast.common.files import atomic_path
from storecast.forecasting import schema


def iso_hour(hour: np.datetime64) -> str:
    """An hour as an ISO 8601 UTC timestamp: ``2025-03-01T14:00:00Z``."""
    return f"{np.datetime_as_string(hour, unit='h')}:00:00Z"


@dataclass(frozen=True)
class Oracle:
    """The true conditional distribution of sales, known only for synthetic data."""

    mean: np.ndarray  # (S, T) expected sales
    quantiles: np.ndarray  # (S, T, 3) true 10/50/90% quantiles


@dataclass(frozen=True)
class StoreHistory:
    """Hourly observations of ``S`` stores over ``T`` hours."""

    start: np.datetime64  # first hour, UTC, unit "h"
    store_ids: tuple[str, ...]
    sales: np.ndarray  # (S, T) units sold, NaN where missing
    observed: np.ndarray  # (S, T) bool, True where sales were reported
    footfall: np.ndarray  # (S, T) visitors (filled)
    temperature_c: np.ndarray  # (S, T) degrees Celsius (filled)
    precip_mm: np.ndarray  # (S, T) precipitation (filled)
    is_holiday: np.ndarray  # (S, T) 0/1
    promo: np.ndarray  # (S, T) 0/1
    filled_hours: int = 0  # missing hours inside each store's span that were filled
    oracle: Oracle | None = None
    source: str = "memory"
    columns: tuple[str, ...] = field(default=schema.REQUIRED_COLUMNS + schema.COVARIATE_COLUMNS)

    def __post_init__(self) -> None:
        shape = (len(self.store_ids), self.sales.shape[1] if self.sales.ndim == 2 else -1)
        for name in (
            "sales",
            "observed",
            "footfall",
            "temperature_c",
            "precip_mm",
            "is_holiday",
            "promo",
        ):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")

    @property
    def n_stores(self) -> int:
        return len(self.store_ids)

    @property
    def n_hours(self) -> int:
        return int(self.sales.shape[1])

    @property
    def hours(self) -> np.ndarray:
        """The grid's timestamps as ``datetime64[h]``."""
        return self.start + np.arange(self.n_hours).astype("timedelta64[h]")

    def rows(self) -> Iterator[dict[str, object]]:
        """Observed cells as schema rows, ordered by store then hour."""
        for s, store in enumerate(self.store_ids):
            for t in np.flatnonzero(self.observed[s]):
                row: dict[str, object] = {
                    schema.TS: iso_hour(self.hours[t]),
                    schema.STORE_ID: store,
                    schema.SALES: int(self.sales[s, t]),
                    schema.FOOTFALL: int(self.footfall[s, t]),
                    schema.TEMPERATURE: round(float(self.temperature_c[s, t]), 2),
                    schema.PRECIP: round(float(self.precip_mm[s, t]), 2),
                    schema.HOLIDAY: int(self.is_holiday[s, t]),
                    schema.PROMO: int(self.promo[s, t]),
                }
                if self.oracle is not None:
                    q = self.oracle.quantiles[s, t]
                    row["oracle_mean"] = round(float(self.oracle.mean[s, t]), 4)
                    row["oracle_q10"], row["oracle_q50"], row["oracle_q90"] = (
                        int(q[0]),
                        int(q[1]),
                        int(q[2]),
                    )
                yield row

    def write_csv(self, path: Path) -> int:
        """Write observed cells as CSV in the store-hour schema; return the row count."""
        fields = list(schema.REQUIRED_COLUMNS + schema.COVARIATE_COLUMNS)
        if self.oracle is not None:
            fields += list(schema.ORACLE_COLUMNS)
        n = 0
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for row in self.rows():
                writer.writerow(row)
                n += 1
        return n
