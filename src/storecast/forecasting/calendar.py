"""Calendar encodings and the chain's holiday calendar (numpy only)."""

from __future__ import annotations

import numpy as np

# The chain's public holidays (month, day): stores are closed, as the holiday flag says.
# A model that sees ``is_holiday`` can learn this; effects a flag cannot tell apart
# (closed on one holiday, busier on another) would be noise to any forecaster.
PUBLIC_HOLIDAYS: tuple[tuple[int, int], ...] = (
    (1, 1), (1, 6), (5, 1), (8, 15), (10, 3), (11, 1), (12, 25), (12, 26),
)  # fmt: skip


def time_parts(hours: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour of day, day of week (Monday = 0) and day of year (0-based) of ``datetime64`` hours."""
    days = hours.astype("datetime64[D]")
    hour = (hours.astype("datetime64[h]") - days).astype(int)
    dow = (days.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    return hour, dow, doy


def calendar(hours: np.ndarray) -> dict[str, np.ndarray]:
    """Calendar parts of ``hours``: hour, dow, doy, public holidays and Black Friday."""
    hour, dow, doy = time_parts(hours)
    days = hours.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    month = (months - days.astype("datetime64[Y]").astype("datetime64[M]")).astype(int) + 1
    mday = (days - months).astype(int) + 1
    holiday = np.zeros(hours.shape)
    for m, d in PUBLIC_HOLIDAYS:
        holiday[(month == m) & (mday == d)] = 1.0
    # Black Friday: the Friday after the fourth Thursday of November (day 23..29).
    black_friday = (month == 11) & (dow == 4) & (mday >= 23) & (mday <= 29)
    return {
        "hour": hour,
        "dow": dow,
        "doy": doy,
        "holiday": holiday,
        "black_friday": black_friday.astype(float),
    }


def cyclical(values: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Sine and cosine encoding of a periodic quantity."""
    angle = 2 * np.pi * values / period
    return np.sin(angle), np.cos(angle)
