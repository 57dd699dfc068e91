"""A synthetic retail chain whose stores behave like real ones, and that knows its own truth.

Each store has a size, a region (which sets its weather), opening hours (closed hours sell
nothing), a daily profile with lunch and evening peaks, a weekly profile, a yearly season
with a December peak, a trend, promotions with lift, and sensitivity to rain and to
uncomfortable temperatures. Stores close on the chain's public holidays, and every store runs
the Black Friday promotion. Sales are negative-binomial counts around a conditional mean that
the generator returns as the *oracle*: the best forecast that is physically possible.

Generation is deterministic for a seed, and a store's attributes and noise depend only on
``(seed, store index)``, so asking for more stores never changes the first ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storecast.forecasting import schema
from storecast.forecasting.calendar import calendar
from storecast.forecasting.history import Oracle, StoreHistory

REGIONS = ("north", "south", "east", "west")
_REGION_MEAN_TEMP = {"north": 8.0, "south": 16.0, "east": 11.0, "west": 12.0}
_REGION_RAIN_START = {"north": 0.020, "south": 0.008, "east": 0.012, "west": 0.025}  # per hour
_WEEKLY = np.array([0.85, 0.86, 0.90, 0.96, 1.12, 1.32, 0.78])  # Monday .. Sunday


@dataclass(frozen=True)
class ChainConfig:
    """What chain to generate."""

    stores: int = 20
    days: int = 730
    seed: int = 7
    start: str = "2024-01-01"  # first day, UTC midnight
    dispersion: float = 30.0  # negative-binomial shape k: var = mu + mu^2 / k
    missing_rate: float = 0.0  # share of store-hours dropped at random (sensor gaps)

    def __post_init__(self) -> None:
        if self.stores < 1 or self.days < 1:
            raise ValueError("a chain needs at least one store and one day")
        if self.dispersion <= 0:
            raise ValueError("dispersion must be positive")
        if not 0.0 <= self.missing_rate < 1.0:
            raise ValueError("missing_rate must be in [0, 1)")


@dataclass(frozen=True)
class StoreProfile:
    """The fixed character of one synthetic store."""

    store_id: str
    region: str
    size: float  # expected sales units in the busiest regular hour
    open_hour: int  # first open hour (local = UTC here), Monday to Saturday
    close_hour: int  # first closed hour in the evening
    conversion: float  # sales units per visitor
    lunch_weight: float
    evening_weight: float
    trend: float  # yearly growth rate
    season_amplitude: float
    promo_lift: float
    rain_sensitivity: float  # relative demand lost per mm of rain (capped at 8 mm)
    heat_sensitivity: float  # relative demand lost per degree outside the comfort band


@dataclass(frozen=True)
class SyntheticChain:
    """A generated chain: its stores, their observed history and the oracle."""

    config: ChainConfig
    profiles: tuple[StoreProfile, ...]
    history: StoreHistory

    @property
    def oracle(self) -> Oracle:
        if self.history.oracle is None:  # pragma: no cover - always set by generate_chain
            raise RuntimeError("synthetic history lost its oracle")
        return self.history.oracle


def store_id_for(index: int) -> str:
    """The synthetic store id of the ``index``-th store (``S001``, ``S002``, ...)."""
    return f"S{index + 1:03d}"


def make_profile(seed: int, index: int) -> StoreProfile:
    """Draw the character of store ``index`` from its own random stream."""
    rng = np.random.default_rng([seed, 1, index])
    return StoreProfile(
        store_id=store_id_for(index),
        region=REGIONS[int(rng.integers(len(REGIONS)))],
        size=float(np.clip(np.exp(rng.normal(np.log(60.0), 0.5)), 15.0, 300.0)),
        open_hour=int(rng.integers(7, 10)),
        close_hour=int(rng.integers(20, 23)),
        conversion=float(rng.uniform(0.2, 0.35)),
        lunch_weight=float(rng.uniform(0.4, 1.0)),
        evening_weight=float(rng.uniform(0.5, 1.0)),
        trend=float(rng.normal(0.04, 0.04)),
        season_amplitude=float(rng.uniform(0.05, 0.15)),
        promo_lift=float(1.35 * np.exp(rng.normal(0.0, 0.05))),
        rain_sensitivity=float(rng.uniform(0.02, 0.06)),
        heat_sensitivity=float(rng.uniform(0.01, 0.03)),
    )


def _region_weather(
    seed: int, region: str, hours: np.ndarray, cal: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Hourly temperature (season, diurnal cycle, AR(1) noise) and rain events for a region."""
    rng = np.random.default_rng([seed, 2, REGIONS.index(region)])
    n = int(hours.shape[0])
    seasonal = _REGION_MEAN_TEMP[region] + 9.0 * np.cos(2 * np.pi * (cal["doy"] - 200) / 365.25)
    diurnal = 4.0 * np.cos(2 * np.pi * (cal["hour"] - 15) / 24)
    shocks = np.asarray(rng.normal(0.0, 0.6, size=n))
    noise = np.empty(n)
    level = rng.normal(0.0, 2.4)
    for i in range(n):
        level = 0.97 * level + shocks[i]
        noise[i] = level
    p_start = np.asarray(
        _REGION_RAIN_START[region] * (1.0 + 0.5 * np.cos(2 * np.pi * cal["doy"] / 365.25))
    )
    u = np.asarray(rng.random(size=n))
    raining = np.zeros(n, dtype=bool)
    state = False
    for i in range(n):
        state = u[i] > 0.15 if state else u[i] < p_start[i]
        raining[i] = state
    amount = np.where(raining, rng.gamma(0.8, 2.0, n), 0.0)
    return seasonal + diurnal + noise, np.round(amount, 2)


def _promotions(seed: int, index: int, n_days: int) -> np.ndarray:
    """Promotion days of one store: about one 2-4 day campaign in three weeks."""
    rng = np.random.default_rng([seed, 3, index])
    promo = np.zeros(n_days)
    day = int(rng.integers(0, 14))
    while day < n_days:
        length = int(rng.integers(2, 5))
        promo[day : day + length] = 1.0
        day += length + int(rng.integers(10, 30))
    return promo


def _daily_profile(p: StoreProfile, hour: np.ndarray) -> np.ndarray:
    lunch = np.exp(-0.5 * ((hour - 12.5) / 1.5) ** 2)
    evening = np.exp(-0.5 * ((hour - 17.5) / 2.0) ** 2)
    shape = 0.45 + 0.55 * (p.lunch_weight * lunch + p.evening_weight * evening)
    peak = 0.45 + 0.55 * max(p.lunch_weight, p.evening_weight) * 1.05
    return np.asarray(shape / peak)


def expected_sales(
    p: StoreProfile,
    cal: dict[str, np.ndarray],
    t_years: np.ndarray,
    promo: np.ndarray,
    temperature: np.ndarray,
    precip: np.ndarray,
) -> np.ndarray:
    """The conditional mean of a store's hourly sales given its covariates (the oracle)."""
    hour, dow = cal["hour"], cal["dow"]
    sunday = dow == 6
    open_h = np.where(sunday, p.open_hour + 2, p.open_hour)
    close_h = np.where(sunday, p.close_hour - 2, p.close_hour)
    is_open = (hour >= open_h) & (hour < close_h) & (cal["holiday"] == 0)
    yearly = 1.0 + p.season_amplitude * np.cos(2 * np.pi * (cal["doy"] - 350) / 365.25)
    comfort = np.clip(
        1.0 - p.heat_sensitivity * np.maximum(0.0, np.abs(temperature - 18) - 6), 0.7, 1.0
    )
    rain = np.exp(-p.rain_sensitivity * np.minimum(precip, 8.0))
    lift = np.where(promo > 0, p.promo_lift, 1.0)
    mean = (
        p.size
        * _daily_profile(p, hour)
        * _WEEKLY[dow]
        * yearly
        * (1.0 + p.trend) ** t_years
        * lift
        * comfort
        * rain
    )
    return np.where(is_open, mean, 0.0)


def negbin_quantiles(mean: np.ndarray, k: float, qs: tuple[float, ...]) -> np.ndarray:
    """Exact quantiles of NegBin(mean, shape k) for every cell; shape ``mean.shape + (len(qs),)``.

    Walks the probability mass function upwards from 0 for the cells still below each
    quantile, so the cost grows with the largest quantile, not with the grid.
    """
    flat = mean.ravel()
    out = np.zeros((flat.size, len(qs)))
    p_success = k / (k + flat)
    pmf = np.power(p_success, k)
    cdf = pmf.copy()
    undone = np.ones((flat.size, len(qs)), dtype=bool)
    targets = np.asarray(qs)
    n = 0
    active = np.arange(flat.size)
    while active.size:
        hit = undone[active] & (cdf[active, None] >= targets[None, :] - 1e-12)
        rows, cols = np.nonzero(hit)
        out[active[rows], cols] = n
        undone[active[rows], cols] = False
        active = active[undone[active].any(axis=1)]
        n += 1
        ratio = (n - 1 + k) / n * (flat[active] / (k + flat[active]))
        pmf[active] *= ratio
        cdf[active] += pmf[active]
    return out.reshape((*mean.shape, len(qs)))


def draw_counts(mean: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    """Negative-binomial counts around ``mean`` (zero where the mean is zero)."""
    return rng.negative_binomial(k, k / (k + mean)).astype(float)


def generate_chain(config: ChainConfig | None = None) -> SyntheticChain:
    """Generate a chain's hourly history, covariates and oracle."""
    cfg = config or ChainConfig()
    start = np.datetime64(cfg.start, "h")
    hours = start + np.arange(cfg.days * 24).astype("timedelta64[h]")
    cal = calendar(hours)
    t_years = np.arange(hours.size) / (24 * 365.25)
    profiles = tuple(make_profile(cfg.seed, i) for i in range(cfg.stores))
    weather = {r: _region_weather(cfg.seed, r, hours, cal) for r in {p.region for p in profiles}}

    shape = (cfg.stores, hours.size)
    mean, footfall, sales = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    temp, precip, promo = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    observed = np.ones(shape, dtype=bool)
    for i, p in enumerate(profiles):
        temp[i], precip[i] = weather[p.region]
        # Every store joins the chain's Black Friday promotion.
        promo[i] = np.maximum(
            np.repeat(_promotions(cfg.seed, i, cfg.days), 24), cal["black_friday"]
        )
        mean[i] = expected_sales(p, cal, t_years, promo[i], temp[i], precip[i])
        rng = np.random.default_rng([cfg.seed, 4, i])
        sales[i] = draw_counts(mean[i], cfg.dispersion, rng)
        footfall[i] = draw_counts(
            mean[i] / p.conversion * np.where(promo[i] > 0, 0.85, 1.0), 40.0, rng
        )
        if cfg.missing_rate > 0:
            observed[i] = rng.random(hours.size) >= cfg.missing_rate
    oracle = Oracle(mean=mean, quantiles=negbin_quantiles(mean, cfg.dispersion, schema.QUANTILES))
    history = StoreHistory(
        start=start,
        store_ids=tuple(p.store_id for p in profiles),
        sales=np.where(observed, sales, np.nan),
        observed=observed,
        footfall=footfall,
        temperature_c=np.round(temp, 2),
        precip_mm=precip,
        is_holiday=np.broadcast_to(cal["holiday"], shape).copy(),
        promo=promo,
        filled_hours=int((~observed).sum()),
        oracle=oracle,
        source=f"synthetic(stores={cfg.stores}, days={cfg.days}, seed={cfg.seed})",
    )
    return SyntheticChain(config=cfg, profiles=profiles, history=history)
