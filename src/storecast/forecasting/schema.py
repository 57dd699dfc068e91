"""The store-hour schema and the forecasting constants every component agrees on."""

from __future__ import annotations

from typing import Final

TS: Final = "ts"
STORE_ID: Final = "store_id"
SALES: Final = "sales_units"
FOOTFALL: Final = "footfall"
TEMPERATURE: Final = "temperature_c"
PRECIP: Final = "precip_mm"
HOLIDAY: Final = "is_holiday"
PROMO: Final = "promo"

REQUIRED_COLUMNS: Final = (TS, STORE_ID, SALES)
COVARIATE_COLUMNS: Final = (FOOTFALL, TEMPERATURE, PRECIP, HOLIDAY, PROMO)
# Columns the synthetic generator adds so a CSV carries its own accuracy floor.
ORACLE_COLUMNS: Final = ("oracle_mean", "oracle_q10", "oracle_q50", "oracle_q90")

LOOKBACK: Final = 168  # hours of history a forecast reads
HORIZON: Final = 24  # hours ahead a forecast covers
QUANTILES: Final = (0.1, 0.5, 0.9)
SEASON: Final = 168  # hours; MASE seasonality
