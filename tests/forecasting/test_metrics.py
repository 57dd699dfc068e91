import numpy as np
import pytest

from storecast.forecasting import metrics

Y = np.array([[10.0, 0.0, 5.0], [20.0, np.nan, 5.0]])
F = np.array([[12.0, 1.0, 5.0], [15.0, 99.0, 4.0]])


def test_wape_hand_computed_skips_missing_actuals():
    # |2| + |1| + |0| + |5| + |1| = 9 over 10 + 0 + 5 + 20 + 5 = 40
    assert metrics.wape(Y, F) == pytest.approx(9 / 40)


def test_bias_is_sum_of_errors_over_sum_of_actuals():
    # (2 + 1 + 0 - 5 - 1) / 40
    assert metrics.bias(Y, F) == pytest.approx(-3 / 40)


def test_pinball_hand_computed():
    y = np.array([10.0, 10.0])
    q = np.array([8.0, 13.0])
    # tau 0.9: under-forecast by 2 costs 0.9*2, over-forecast by 3 costs 0.1*3
    assert metrics.pinball(y, q, 0.9) == pytest.approx((1.8 + 0.3) / 2)
    assert metrics.pinball(y, q, 0.1) == pytest.approx((0.2 + 2.7) / 2)


def test_coverage_counts_closed_interval():
    y = np.array([1.0, 5.0, 9.0, 10.0])
    assert metrics.coverage(y, np.full(4, 1.0), np.full(4, 9.0)) == pytest.approx(0.75)


def test_mase_scales_by_each_series_naive_error():
    y = np.array([[10.0, 10.0], [100.0, 100.0]])
    f = np.array([[12.0, 8.0], [110.0, 90.0]])
    assert metrics.mase(y, f, np.array([2.0, 10.0])) == pytest.approx(1.0)


def test_seasonal_naive_mae_in_sample():
    series = np.array([1.0, 2.0, 4.0, 6.0])
    assert metrics.seasonal_naive_mae(series, 2) == pytest.approx((3 + 4) / 2)
    assert np.isnan(metrics.seasonal_naive_mae(series, 4))


def test_oracle_scores_exactly_its_own_mean():
    mean = np.random.default_rng(0).gamma(2.0, 10.0, (5, 24))
    assert metrics.wape(mean, mean) == 0.0
    assert metrics.bias(mean, mean) == 0.0
    assert metrics.pinball(mean, mean, 0.5) == 0.0
    assert metrics.coverage(mean, mean, mean) == 1.0


def test_metrics_of_all_missing_actuals_are_nan_not_errors():
    y = np.full(3, np.nan)
    assert np.isnan(metrics.wape(y, np.ones(3)))
    assert np.isnan(metrics.coverage(y, np.zeros(3), np.ones(3)))
