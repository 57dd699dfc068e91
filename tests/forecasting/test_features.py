from dataclasses import replace

import numpy as np
import pytest

from storecast.forecasting.features import (
    FUTURE_CHANNELS,
    PAST_CHANNELS,
    FeatureSpec,
    WindowBuilder,
    decode,
)
from storecast.forecasting.history import StoreHistory
from storecast.forecasting.synthetic import ChainConfig, generate_chain

CHAIN = generate_chain(ChainConfig(stores=3, days=30, seed=9)).history


def with_sales(h: StoreHistory, sales: np.ndarray) -> StoreHistory:
    return replace(h, sales=sales)


def test_shapes_follow_the_spec():
    spec = FeatureSpec()
    w = WindowBuilder(CHAIN).build(np.array([0, 1]), np.array([200, 300]))
    assert w.past.shape == (2, spec.lookback, len(PAST_CHANNELS))
    assert w.future.shape == (2, spec.horizon, len(FUTURE_CHANNELS))
    assert w.past.dtype == np.float32 and w.future.dtype == np.float32
    assert w.target.shape == (2, spec.horizon) and w.scale.shape == (2,)
    assert np.isfinite(w.past).all() and np.isfinite(w.future).all()


def test_no_sales_at_or_after_the_origin_reach_the_inputs():
    origin = 400
    builder = WindowBuilder(CHAIN)
    base = builder.build(np.array([1]), np.array([origin]))
    # Change every sale from the origin on: inputs must not move, targets must.
    sales = CHAIN.sales.copy()
    sales[:, origin:] = sales[:, origin:] * 7 + 13
    moved = WindowBuilder(with_sales(CHAIN, sales)).build(np.array([1]), np.array([origin]))
    np.testing.assert_array_equal(base.past, moved.past)
    np.testing.assert_array_equal(base.future, moved.future)
    assert base.scale == moved.scale
    assert not np.array_equal(base.target, moved.target)


def test_inputs_read_exactly_the_lookback_before_the_origin():
    # Sales equal to their grid index reveal which hours a window read.
    idx = np.broadcast_to(np.arange(CHAIN.n_hours, dtype=float), CHAIN.sales.shape).copy()
    h = with_sales(CHAIN, idx)
    origin = 500
    w = WindowBuilder(h).build(np.array([0]), np.array([origin]))
    read = w.past[0, :, PAST_CHANNELS.index("sales")] * w.scale[0]
    np.testing.assert_allclose(read, np.arange(origin - 168, origin), rtol=1e-5)
    lag24 = w.future[0, :, FUTURE_CHANNELS.index("lag24")] * w.scale[0]
    lag168 = w.future[0, :, FUTURE_CHANNELS.index("lag168")] * w.scale[0]
    np.testing.assert_allclose(lag24, np.arange(origin - 24, origin), rtol=1e-5)
    np.testing.assert_allclose(lag168, np.arange(origin - 168, origin - 144), rtol=1e-5)
    assert read.max() < origin and lag24.max() < origin
    np.testing.assert_array_equal(w.target[0], np.arange(origin, origin + 24))


def test_scale_is_the_mean_of_regular_lookback_sales():
    w = WindowBuilder(CHAIN).build(np.array([2]), np.array([300]))
    lookback = CHAIN.sales[2, 300 - 168 : 300]
    regular = CHAIN.is_holiday[2, 300 - 168 : 300] == 0
    assert w.scale[0] == pytest.approx(lookback[regular].mean())


def test_missing_hours_are_filled_from_last_week_and_flagged():
    h = CHAIN
    observed = h.observed.copy()
    observed[0, 350] = False
    sales = np.where(observed, h.sales, np.nan)
    gappy = replace(h, sales=sales, observed=observed)
    w = WindowBuilder(gappy).build(np.array([0, 0]), np.array([400, 340]))
    pos = 350 - (400 - 168)
    assert w.past[0, pos, PAST_CHANNELS.index("observed")] == 0
    filled = w.past[0, pos, PAST_CHANNELS.index("sales")] * w.scale[0]
    assert filled == pytest.approx(h.sales[0, 350 - 168])
    assert np.isnan(w.target[1, 10]) and not w.mask[1, 10]  # a missing target is masked


def test_weather_forecast_noise_only_with_an_rng():
    b = WindowBuilder(CHAIN)
    clean = b.build(np.array([0]), np.array([300]))
    again = b.build(np.array([0]), np.array([300]))
    noisy = b.build(np.array([0]), np.array([300]), rng=np.random.default_rng(0))
    t = FUTURE_CHANNELS.index("temperature_fc")
    np.testing.assert_array_equal(clean.future, again.future)
    assert not np.array_equal(clean.future[..., t], noisy.future[..., t])
    np.testing.assert_array_equal(clean.past, noisy.past)


def test_origins_outside_the_history_are_refused():
    b = WindowBuilder(CHAIN)
    with pytest.raises(ValueError, match="origins must lie in"):
        b.build(np.array([0]), np.array([100]))
    with pytest.raises(ValueError, match="origins must lie in"):
        b.build(np.array([0]), np.array([CHAIN.n_hours - 10]))


def test_decode_rescales_and_clips_at_zero():
    q = np.array([[[-0.5, 0.5, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(decode(q, np.array([10.0])), [[[0.0, 5.0, 10.0]]])


def test_spec_round_trips_through_a_dict():
    spec = FeatureSpec()
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="version"):
        FeatureSpec.from_dict({**spec.to_dict(), "version": 99})
