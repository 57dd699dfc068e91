"""The model on history that is not ours: real hourly counts from Auckland's city centre."""

import pytest
from benchmarks.realdata import write_auckland_csv

from storecast.forecasting.loader import load_history
from storecast.forecasting.workflow import file_source, train_and_evaluate


def test_real_counts_pass_the_loader(tmp_path):
    csv = write_auckland_csv(tmp_path / "akl.csv", first_day="2025-06-01", sensors=3)
    h = load_history(csv)
    assert h.n_stores == 3 and h.n_hours > 24 * 200
    assert h.oracle is None


@pytest.mark.slow
def test_quick_model_beats_seasonal_naive_168_on_real_counts(tmp_path):
    csv = write_auckland_csv(tmp_path / "akl.csv", first_day="2025-03-01", sensors=8)
    outcome = train_and_evaluate(file_source(csv), tmp_path / "akl.pt", quick=True)
    assert outcome.metrics is not None
    wape = outcome.metrics["wape"]
    assert wape["oracle"] is None  # no oracle exists for real data
    assert wape["lstm"] < wape["snaive_168"]
