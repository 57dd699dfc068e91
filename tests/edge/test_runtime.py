"""Loading model folders: verification chain, ONNX Runtime first, torch only as a fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storecast.common.errors import ModelError
from storecast.edge import runtime
from storecast.edge.modelstore import ModelStore
from storecast.edge.runtime import check_metadata, load_model
from storecast.edge.smoke import probe_windows
from storecast.forecasting.features import FeatureSpec
from tests.edge._bundles import MODEL_NAME, EdgeBundles, constant_onnx, flip_byte, sha256


def installed(tmp_path: Path, bundle: bytes) -> Path:
    return ModelStore(tmp_path / "models").install(bundle, sha256(bundle))


def test_load_model_runs_the_onnx_model_and_forecasts_in_units(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    model = load_model(installed(tmp_path, modelstore_bundles.v1))
    assert (model.name, model.version, model.runtime) == (MODEL_NAME, 1, "onnxruntime")
    assert model.digest == sha256(modelstore_bundles.v1)
    assert model.spec == modelstore_bundles.spec
    windows = probe_windows(model.spec)
    forecast = model.forecast(windows)
    assert forecast.shape == (len(windows), model.spec.horizon, len(model.spec.quantiles))
    assert np.isfinite(forecast).all() and (forecast >= 0).all()


@pytest.mark.parametrize("member", ["model.onnx", "model.pt"])
def test_load_model_refuses_a_tampered_member_and_names_it(
    tmp_path: Path, modelstore_bundles: EdgeBundles, member: str
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    flip_byte(folder / member)
    with pytest.raises(ModelError, match=rf"{member} has sha256 [0-9a-f]{{64}}, metadata.json"):
        load_model(folder)


def test_load_model_refuses_a_member_of_the_wrong_size(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    with (folder / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match=r"model.onnx is \d+ bytes, metadata.json says"):
        load_model(folder)


def test_load_model_refuses_edited_metadata(tmp_path: Path, modelstore_bundles: EdgeBundles):
    folder = installed(tmp_path, modelstore_bundles.v1)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["parity_max_abs_diff"] = 0.0
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"metadata\.json has sha256 .* bundle\.json says"):
        load_model(folder)


def test_load_model_refuses_a_folder_without_bundle_info(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    (folder / "bundle.json").unlink()
    with pytest.raises(ModelError, match=r"bundle\.json is missing"):
        load_model(folder)


def test_load_model_falls_back_to_torch_when_model_onnx_is_missing(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    windows = probe_windows(modelstore_bundles.spec)
    expected = load_model(folder).forecast(windows)
    (folder / "model.onnx").unlink()
    model = load_model(folder)
    assert model.runtime == "torch"
    np.testing.assert_allclose(model.forecast(windows), expected, rtol=1e-3, atol=1e-3)


def test_load_model_falls_back_to_torch_when_model_onnx_is_intact_but_unloadable(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    bundle = modelstore_bundles.version(2, members={"model.onnx": b"an opset from the future"})
    model = load_model(installed(tmp_path, bundle))
    assert model.runtime == "torch"
    assert model.predict_scaled(*_inputs(model.spec)).shape == (1, model.spec.horizon, 3)


def test_load_model_torch_fallback_still_verifies_model_pt(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    (folder / "model.onnx").unlink()
    flip_byte(folder / "model.pt")
    with pytest.raises(ModelError, match=r"model\.pt has sha256"):
        load_model(folder)


def test_load_model_without_onnx_and_without_torch_is_refused(
    tmp_path: Path, modelstore_bundles: EdgeBundles, monkeypatch: pytest.MonkeyPatch
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    (folder / "model.onnx").unlink()
    monkeypatch.setattr(runtime, "_torch_available", lambda: False)
    with pytest.raises(ModelError, match=r"model\.onnx is missing, and torch is not installed"):
        load_model(folder)


def test_load_model_refuses_an_onnx_graph_whose_outputs_differ_from_metadata(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    spec = modelstore_bundles.spec
    two_quantiles = constant_onnx(spec, [1.0, 1.0])  # metadata declares three
    bundle = modelstore_bundles.version(2, members={"model.onnx": two_quantiles})
    with pytest.raises(ModelError, match="output 'quantiles' has shape"):
        load_model(installed(tmp_path, bundle))


def test_load_model_refuses_a_feature_channel_this_code_cannot_build(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    def add_channel(meta: dict[str, Any]) -> None:
        meta["features"]["past_channels"].append("lunar_phase")

    bundle = modelstore_bundles.version(2, edit=add_channel)
    with pytest.raises(ModelError, match=r"unsupported feature channel\(s\) \['lunar_phase'\]"):
        load_model(installed(tmp_path, bundle))


def test_check_metadata_refuses_an_unsupported_feature_spec_version(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    metadata = load_model(installed(tmp_path, modelstore_bundles.v1)).metadata
    future = metadata.model_copy(update={"features": {**metadata.features, "version": 2}})
    with pytest.raises(ModelError, match="feature spec version 2 is not supported"):
        check_metadata(future)


def test_check_metadata_refuses_input_shapes_that_do_not_fit_the_spec(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    metadata = load_model(installed(tmp_path, modelstore_bundles.v1)).metadata
    past = metadata.inputs[0].model_copy(update={"shape": ["batch", 99, 11]})
    changed = metadata.model_copy(update={"inputs": [past, metadata.inputs[1]]})
    with pytest.raises(ModelError, match="metadata inputs shapes"):
        check_metadata(changed)


_NO_TORCH = """
import sys
from pathlib import Path
from storecast.edge.runtime import load_model
model = load_model(Path(sys.argv[1]))
assert model.runtime == "onnxruntime", model.runtime
banned = ("torch", "sqlalchemy", "alembic", "pandas", "storecast.registry",
          "storecast.analytics", "storecast.common.cloud", "storecast.common.db")
import storecast.edge.modelstore, storecast.edge.smoke
loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned or m.startswith(banned))
assert not loaded, loaded
"""


@pytest.mark.slow
def test_onnx_runtime_path_never_imports_torch_or_cloud_code(
    tmp_path: Path, modelstore_bundles: EdgeBundles
):
    folder = installed(tmp_path, modelstore_bundles.v1)
    subprocess.run([sys.executable, "-c", _NO_TORCH, str(folder)], check=True)


def _inputs(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    past = np.zeros((1, spec.lookback, len(spec.past_channels)), dtype=np.float32)
    future = np.zeros((1, spec.horizon, len(spec.future_channels)), dtype=np.float32)
    return past, future
