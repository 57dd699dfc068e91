from pathlib import Path

import numpy as np
import pytest
import torch

from storecast.common.errors import ModelError
from storecast.forecasting.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
)
from storecast.forecasting.export import check_parity, export_onnx, parity
from storecast.forecasting.features import FeatureSpec
from storecast.forecasting.model import DemandLSTM, ModelConfig, pinball_loss
from storecast.forecasting.runtime import OnnxModel

SPEC = FeatureSpec()


def small_model(**overrides) -> DemandLSTM:
    torch.manual_seed(0)
    return DemandLSTM(ModelConfig.for_features(SPEC, hidden=16, head_hidden=16, **overrides))


def inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(batch, 168, len(SPEC.past_channels), generator=g),
        torch.randn(batch, 24, len(SPEC.future_channels), generator=g),
    )


def test_default_architecture_is_two_layers_of_64():
    cfg = ModelConfig.for_features(SPEC)
    assert (cfg.layers, cfg.hidden, cfg.horizon, cfg.n_quantiles) == (2, 64, 24, 3)


@pytest.mark.parametrize("patch", [1, 4])
def test_output_shape_and_quantiles_never_cross(patch):
    model = small_model(patch=patch)
    with torch.inference_mode():
        q = model(*inputs(32)) * 100  # large scale makes crossing visible if possible
    assert q.shape == (32, 24, 3)
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()


def test_pinball_loss_ignores_masked_hours():
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[1.0, 1000.0]])
    q = torch.tensor([0.1, 0.5, 0.9])
    only_first = pinball_loss(pred, target, torch.tensor([[True, False]]), q)
    # hour 1 alone: (0.1 + 0.5 + 0.9) * 1 / 3 quantiles
    assert float(only_first) == pytest.approx(0.5)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = small_model()
    path = tmp_path / "m.pt"
    save_checkpoint(path, make_checkpoint(model, SPEC, {"note": "x"}))
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"model", "config", "features", "scaler"}
    loaded = load_checkpoint(path)
    assert loaded.spec == SPEC and loaded.meta == {"note": "x"}
    past, future = inputs(4)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(past, future), model(past, future))


def test_loading_garbage_is_a_model_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable checkpoint"):
        load_checkpoint(path)
    torch.save({"format": "other"}, path)
    with pytest.raises(ModelError, match="not a storecast LSTM checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_with_mismatched_weights_is_refused(tmp_path):
    model = small_model()
    ckpt = make_checkpoint(model, SPEC, {})
    ckpt["config"]["hidden"] = 32
    path = tmp_path / "m.pt"
    save_checkpoint(path, ckpt)
    with pytest.raises(ModelError, match="does not match the model"):
        load_checkpoint(path)


def test_onnx_export_matches_torch_with_dynamic_batch(tmp_path):
    model = small_model()
    path = export_onnx(model, tmp_path / "m.onnx")
    assert check_parity(model, path) <= 1e-4
    onnx_model = OnnxModel(path)
    for batch in (1, 7, 64):
        past, future = inputs(batch)
        with torch.inference_mode():
            expected = model(past, future).numpy()
        got = onnx_model.predict_scaled(past.numpy(), future.numpy())
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_parity_check_fails_for_a_different_model(tmp_path):
    path = export_onnx(small_model(), tmp_path / "m.onnx")
    other = small_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    assert parity(other, path) > 1e-4
    with pytest.raises(ModelError, match="parity check failed"):
        check_parity(other, path)


def test_onnx_model_refuses_garbage(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxModel(path)


def test_onnx_export_is_byte_for_byte_reproducible(tmp_path):
    model = small_model()
    a = export_onnx(model, tmp_path / "a.onnx").read_bytes()
    b = export_onnx(model, tmp_path / "b.onnx").read_bytes()
    assert a == b
    # nothing about the machine or checkout that exported it (paths, line numbers)
    import storecast

    assert Path(storecast.__file__).parent.parent.as_posix().encode() not in a
    assert b"model.py" not in a
