import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from storecast.forecasting.calendar import calendar
from storecast.forecasting.synthetic import (
    ChainConfig,
    draw_counts,
    generate_chain,
    make_profile,
    negbin_quantiles,
)

SMALL = ChainConfig(stores=3, days=21, seed=11)


def test_same_seed_gives_same_chain():
    a, b = generate_chain(SMALL).history, generate_chain(SMALL).history
    np.testing.assert_array_equal(a.sales, b.sales)
    np.testing.assert_array_equal(a.temperature_c, b.temperature_c)
    np.testing.assert_array_equal(a.promo, b.promo)


def test_other_seed_gives_other_chain():
    a = generate_chain(SMALL).history
    b = generate_chain(ChainConfig(stores=3, days=21, seed=12)).history
    assert not np.array_equal(a.sales, b.sales)


def test_more_stores_never_change_the_first_ones():
    few = generate_chain(SMALL).history
    more = generate_chain(ChainConfig(stores=5, days=21, seed=11)).history
    np.testing.assert_array_equal(few.sales, more.sales[:3])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), stores=st.integers(1, 4), days=st.integers(1, 30))
def test_counts_are_non_negative_integers_and_closed_hours_sell_nothing(seed, stores, days):
    chain = generate_chain(ChainConfig(stores=stores, days=days, seed=seed))
    h = chain.history
    assert (h.sales >= 0).all() and (h.footfall >= 0).all()
    np.testing.assert_array_equal(h.sales, np.round(h.sales))
    closed = chain.oracle.mean == 0
    assert closed.any()  # nights are closed
    assert (h.sales[closed] == 0).all() and (h.footfall[closed] == 0).all()
    # the oracle's quantiles are ordered and zero where the store is closed
    q = chain.oracle.quantiles
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    assert (q[closed] == 0).all()


@settings(max_examples=10, deadline=None)
@given(mean=st.floats(0.5, 300.0), k=st.floats(2.0, 60.0), seed=st.integers(0, 2**32 - 1))
def test_sample_means_converge_to_the_oracle_mean(mean, k, seed):
    draws = draw_counts(np.full(40_000, mean), k, np.random.default_rng(seed))
    sd = np.sqrt(mean + mean**2 / k)
    assert abs(draws.mean() - mean) < 5 * sd / np.sqrt(draws.size)


@settings(max_examples=10, deadline=None)
@given(mean=st.floats(0.5, 200.0), k=st.floats(2.0, 60.0))
def test_oracle_quantiles_match_sampled_quantiles(mean, k):
    q = negbin_quantiles(np.array([mean]), k, (0.1, 0.5, 0.9))[0]
    draws = draw_counts(np.full(40_000, mean), k, np.random.default_rng(1))
    for level, value in zip((0.1, 0.5, 0.9), q, strict=True):
        # P(X <= q) >= level and P(X <= q - 1) < level, up to sampling error
        assert (draws <= value).mean() >= level - 0.01
        assert (draws <= value - 1).mean() <= level + 0.01


def test_stores_differ_in_size_region_and_hours():
    profiles = [make_profile(7, i) for i in range(40)]
    assert len({p.region for p in profiles}) == 4
    assert max(p.size for p in profiles) > 2 * min(p.size for p in profiles)
    assert len({(p.open_hour, p.close_hour) for p in profiles}) > 3


def test_public_holidays_close_every_store_and_black_friday_is_a_promotion():
    chain = generate_chain(ChainConfig(stores=4, days=366, seed=3, start="2024-01-01"))
    h = chain.history
    cal = calendar(h.hours)
    holiday = cal["holiday"] > 0
    assert holiday.sum() == 8 * 24
    assert (chain.oracle.mean[:, holiday] == 0).all()
    np.testing.assert_array_equal(h.is_holiday[0], cal["holiday"])
    black_friday = cal["black_friday"] > 0
    assert black_friday.sum() == 24  # 2024-11-29
    assert (h.promo[:, black_friday] == 1).all()


def test_promotions_lift_the_oracle_mean():
    chain = generate_chain(ChainConfig(stores=6, days=120, seed=5))
    h, mean = chain.history, chain.oracle.mean
    open_hours = mean > 0
    on = mean[(h.promo > 0) & open_hours].mean()
    off = mean[(h.promo == 0) & open_hours].mean()
    assert on > 1.15 * off


def test_rain_lowers_demand():
    chain = generate_chain(ChainConfig(stores=8, days=200, seed=2))
    h, mean = chain.history, chain.oracle.mean
    p = chain.profiles[0]
    wet = (h.precip_mm[0] > 3) & (mean[0] > 0)
    assert wet.any() and p.rain_sensitivity > 0
    # the same store-hour would have sold more without rain
    from storecast.forecasting.synthetic import expected_sales

    cal = calendar(h.hours)
    t_years = np.arange(h.n_hours) / (24 * 365.25)
    dry = expected_sales(p, cal, t_years, h.promo[0], h.temperature_c[0], np.zeros(h.n_hours))
    assert (dry[wet] > mean[0][wet]).all()


def test_csv_round_trip_through_the_loader(tmp_path):
    from storecast.forecasting.loader import load_history

    chain = generate_chain(ChainConfig(stores=2, days=10, seed=4, missing_rate=0.05))
    path = tmp_path / "h.csv"
    rows = chain.history.write_csv(path)
    assert rows == int(chain.history.observed.sum())
    loaded = load_history(path)
    assert loaded.store_ids == chain.history.store_ids
    np.testing.assert_array_equal(loaded.observed, chain.history.observed)
    np.testing.assert_array_equal(
        np.nan_to_num(loaded.sales, nan=-1), np.nan_to_num(chain.history.sales, nan=-1)
    )
    assert loaded.oracle is not None
    np.testing.assert_array_equal(
        loaded.oracle.quantiles[loaded.observed], chain.oracle.quantiles[chain.history.observed]
    )
