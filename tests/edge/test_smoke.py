"""The candidate acceptance check: shape, finite values, quantile order, scale, latency."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from storecast.edge.modelstore import ModelStore
from storecast.edge.runtime import LoadedModel, load_model
from storecast.edge.smoke import (
    SmokeBudget,
    probe_level,
    probe_windows,
    smoke_test,
)
from storecast.forecasting.features import FeatureSpec
from tests.edge._bundles import EdgeBundles, constant_onnx, sha256


def load(tmp_path: Path, bundle: bytes) -> LoadedModel:
    store = ModelStore(tmp_path / "models")
    return load_model(store.install(bundle, sha256(bundle)))


@pytest.fixture
def sound_model(tmp_path: Path, modelstore_bundles: EdgeBundles) -> LoadedModel:
    return load(tmp_path, modelstore_bundles.v1)


def ticking(step_s: float) -> Callable[[], float]:
    """A clock that advances ``step_s`` seconds each time it is read."""
    counter = itertools.count()
    return lambda: next(counter) * step_s


class _Fixed:
    """A candidate returning a fixed array, whatever the input."""

    def __init__(self, spec: FeatureSpec, out: np.ndarray | Exception) -> None:
        self.spec, self.out = spec, out

    def predict_scaled(self, past: np.ndarray, future: np.ndarray) -> np.ndarray:
        if isinstance(self.out, Exception):
            raise self.out
        return self.out


def test_smoke_passes_a_sound_model(sound_model: LoadedModel):
    windows = probe_windows(sound_model.spec)
    result = smoke_test(sound_model, windows, probe_level(windows))
    assert result.ok, result.reason
    assert result.reason is None
    assert 0 < result.latency_ms <= SmokeBudget().latency_ms
    assert set(result.checks) == {"shape", "finite", "quantile_order", "scale", "latency_ms"}
    assert 1 / 5 <= result.checks["scale"]["ratio"] <= 5


def test_smoke_fails_a_model_with_nan_outputs(tmp_path: Path, modelstore_bundles: EdgeBundles):
    spec = modelstore_bundles.spec
    nan_onnx = constant_onnx(spec, [float("nan")] * 3)
    model = load(tmp_path, modelstore_bundles.version(2, members={"model.onnx": nan_onnx}))
    assert model.runtime == "onnxruntime"
    windows = probe_windows(spec)
    result = smoke_test(model, windows, probe_level(windows))
    assert not result.ok
    n = len(windows) * spec.horizon * 3
    assert result.reason == f"{n} of {n} output values are not finite"


def test_smoke_fails_a_model_over_the_latency_budget(sound_model: LoadedModel):
    windows = probe_windows(sound_model.spec)
    result = smoke_test(
        sound_model, windows, probe_level(windows), SmokeBudget(latency_ms=50), ticking(0.2)
    )
    assert not result.ok
    assert result.latency_ms == pytest.approx(200.0)
    assert result.reason == "p50 latency 200.0 ms over the 50 ms budget"


def test_smoke_fails_a_forecast_level_far_from_recent_sales(sound_model: LoadedModel):
    windows = probe_windows(sound_model.spec)
    result = smoke_test(sound_model, windows, recent_level=100 * probe_level(windows))
    assert not result.ok
    assert result.reason is not None and "x the recent sales level" in result.reason
    assert result.checks["scale"]["ratio"] < 1 / 5


def test_smoke_fails_a_model_whose_output_is_out_of_scale(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    spec = modelstore_bundles.spec
    huge = constant_onnx(spec, [40.0, 50.0, 60.0])  # 50x the window's own level
    model = load(tmp_path, modelstore_bundles.version(2, members={"model.onnx": huge}))
    windows = probe_windows(spec)
    result = smoke_test(model, windows, probe_level(windows))
    assert not result.ok and result.reason is not None
    assert result.reason.startswith("forecast level")
    assert result.checks["scale"]["ratio"] == pytest.approx(50.0, rel=0.01)


def test_smoke_fails_crossed_quantiles(tmp_path: Path, modelstore_bundles: EdgeBundles):
    spec = modelstore_bundles.spec
    crossed = constant_onnx(spec, [1.5, 1.0, 0.5])
    model = load(tmp_path, modelstore_bundles.version(2, members={"model.onnx": crossed}))
    windows = probe_windows(spec)
    result = smoke_test(model, windows, probe_level(windows))
    assert not result.ok
    assert result.reason == "quantiles out of order by up to 0.5 scaled units (tolerance 0.05)"


def test_smoke_fails_an_output_of_the_wrong_shape(modelstore_bundles: EdgeBundles):
    spec = modelstore_bundles.spec
    windows = probe_windows(spec)
    model = _Fixed(spec, np.ones((len(windows), spec.horizon, 2), dtype=np.float32))
    result = smoke_test(model, windows, probe_level(windows))
    assert not result.ok
    assert result.reason == f"output shape (2, {spec.horizon}, 2), expected (2, {spec.horizon}, 3)"


def test_smoke_reports_a_model_that_raises(modelstore_bundles: EdgeBundles):
    windows = probe_windows(modelstore_bundles.spec)
    result = smoke_test(_Fixed(modelstore_bundles.spec, RuntimeError("boom")), windows, None)
    assert not result.ok and result.reason is not None
    assert "prediction failed" in result.reason and "boom" in result.reason


def test_smoke_skips_the_scale_check_without_recent_sales(modelstore_bundles: EdgeBundles):
    spec = modelstore_bundles.spec
    windows = probe_windows(spec)
    model = _Fixed(spec, np.full((len(windows), spec.horizon, 3), 1000.0, dtype=np.float32))
    result = smoke_test(model, windows, recent_level=None, timer=ticking(0.001))
    assert result.ok, result.reason
    assert result.checks["scale"] == {"skipped": "no recent sales level"}


def test_probe_windows_fit_the_feature_spec():
    spec = FeatureSpec()
    windows = probe_windows(spec, stores=3)
    assert windows.past.shape == (3, spec.lookback, len(spec.past_channels))
    assert windows.future.shape == (3, spec.horizon, len(spec.future_channels))
    assert np.isfinite(windows.past).all() and np.isfinite(windows.future).all()
    assert probe_level(windows) > spec.min_scale
