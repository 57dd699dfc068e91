import json

import numpy as np
import pytest
import torch

from storecast.common.errors import ConfigError, DataError
from storecast.forecasting.checkpoint import load_checkpoint
from storecast.forecasting.features import FeatureSpec
from storecast.forecasting.synthetic import ChainConfig
from storecast.forecasting.training import Split, TrainConfig, Trainer, quick_model_config
from storecast.forecasting.workflow import metrics_path, synthetic_source, train_and_evaluate

SPEC = FeatureSpec()
TINY = TrainConfig(max_epochs=2, steps_per_epoch=3, batch_size=32, max_seconds=None)


def test_split_keeps_validation_and_tail_out_of_training():
    cfg = TrainConfig(test_days=28, val_days=14)
    n = 100 * 24
    split = Split.of(n, SPEC, cfg)
    lo, hi = split.train_origins
    val_start = n - 42 * 24
    # the last training origin's 24 targets end just before validation starts
    assert (hi - 1) + SPEC.horizon == val_start
    assert split.val_origins.min() == val_start
    assert split.val_origins.max() + SPEC.horizon <= split.test_start == n - 28 * 24
    assert lo == SPEC.lookback


def test_too_little_history_for_the_split_is_a_data_error():
    with pytest.raises(DataError, match="training needs at least"):
        Split.of(40 * 24, SPEC, TrainConfig())


def test_training_is_deterministic_for_a_seed(tiny_chain_config):
    history = synthetic_source(tiny_chain_config).history
    a = Trainer(history, quick_model_config(SPEC), TINY).fit().model.state_dict()
    b = Trainer(history, quick_model_config(SPEC), TINY).fit().model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_ctrl_c_keeps_the_best_checkpoint_so_far(tmp_path, tiny_chain_config):
    source = synthetic_source(tiny_chain_config)
    out = tmp_path / "m.pt"
    config = TrainConfig(max_epochs=5, steps_per_epoch=3, batch_size=32, max_seconds=None)

    def interrupt_in_epoch_three(step: int, total: int) -> None:
        if step == 2 * config.steps_per_epoch + 1:
            raise KeyboardInterrupt

    outcome = train_and_evaluate(
        source, out, quick=True, train_config=config, on_step=interrupt_in_epoch_three
    )
    assert outcome.result.stopped == "interrupted"
    assert outcome.metrics is None and not metrics_path(out).exists()
    assert [e.epoch for e in outcome.result.epochs] == [1, 2]
    loaded = load_checkpoint(out)
    assert loaded.meta["best_epoch"] == outcome.result.best_epoch


def test_early_stopping_after_patience(tiny_chain_config):
    history = synthetic_source(tiny_chain_config).history
    config = TrainConfig(
        max_epochs=50, steps_per_epoch=1, batch_size=8, patience=1, lr=0.0, max_seconds=None
    )  # lr 0: nothing ever improves after epoch 1
    result = Trainer(history, quick_model_config(SPEC), config).fit()
    assert result.stopped == "early_stopping"
    assert result.best_epoch == 1 and len(result.epochs) == 2


def test_train_writes_checkpoint_and_metrics_with_the_agreed_keys(trained_checkpoint):
    report = json.loads(metrics_path(trained_checkpoint).read_text())
    for metric in ("wape", "bias", "mase", "coverage_80"):
        assert set(report[metric]) >= {"lstm", "snaive_24", "snaive_168", "oracle"}
    assert set(report["pinball"]["lstm"]) == {"q10", "q50", "q90"}
    assert report["backtest"]["origins"] >= 3
    assert report["data"]["synthetic"]["seed"] == 3
    assert report["wape"]["oracle"] is not None
    ckpt = torch.load(trained_checkpoint, weights_only=True)
    assert set(ckpt) >= {"model", "config", "features", "scaler"}
    assert ckpt["meta"]["data"]["sha256"] == report["data"]["sha256"]


def test_a_trained_model_never_beats_the_oracle_beyond_noise(trained_checkpoint):
    report = json.loads(metrics_path(trained_checkpoint).read_text())
    # The oracle's median minimises expected absolute error; a model can only tie it up
    # to sampling noise on the hold-out (a few thousand store-hours here).
    assert report["wape"]["lstm"] >= 0.97 * report["wape"]["oracle"]
    assert report["pinball"]["lstm"]["q50"] >= 0.97 * report["pinball"]["oracle"]["q50"]


def test_oracle_beats_the_seasonal_naive_baselines(trained_checkpoint):
    wape = json.loads(metrics_path(trained_checkpoint).read_text())["wape"]
    assert wape["oracle"] < wape["snaive_168"] and wape["oracle"] < wape["snaive_24"]


def test_checkpoint_name_must_end_in_pt(tmp_path):
    source = synthetic_source(ChainConfig(stores=1, days=70, seed=1))
    with pytest.raises(ConfigError, match=r"must end in \.pt"):
        train_and_evaluate(source, tmp_path / "model.bin", quick=True, train_config=TINY)


def test_cold_start_store_is_forecast_from_its_own_level(trained_checkpoint):
    # A store the model never saw (another chain, its biggest store) gets a
    # forecast on its own scale: per-window scaling makes the model size-free.
    from storecast.forecasting.checkpoint import torch_forecaster
    from storecast.forecasting.features import WindowBuilder
    from storecast.forecasting.synthetic import generate_chain

    model = load_checkpoint(trained_checkpoint).model
    h = generate_chain(ChainConfig(stores=12, days=20, seed=99)).history
    big = int(np.argmax(np.nanmean(h.sales, axis=1)))
    w = WindowBuilder(h).build(np.array([big]), np.array([h.n_hours - 24]))
    forecast = torch_forecaster(model)(w)[0, :, 1].sum()
    actual = np.nansum(w.target)
    assert 0.5 * actual < forecast < 1.5 * actual


def test_metrics_json_has_no_nan(tmp_path):
    from storecast.forecasting.workflow import write_json

    path = tmp_path / "m.json"
    write_json(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.0}})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2.0}}


def test_evaluating_a_file_trained_model_needs_data(tmp_path, trained_checkpoint):
    from storecast.forecasting.checkpoint import make_checkpoint, save_checkpoint
    from storecast.forecasting.workflow import evaluate_checkpoint

    loaded = load_checkpoint(trained_checkpoint)
    meta = {**loaded.meta, "data": {"source": "mine.csv", "synthetic": None}}
    path = tmp_path / "file_trained.pt"
    save_checkpoint(path, make_checkpoint(loaded.model, loaded.spec, meta))
    with pytest.raises(ConfigError, match=r"trained on mine\.csv; give the history"):
        evaluate_checkpoint(path)


def test_training_restores_torch_threads(tiny_chain_config):
    history = synthetic_source(tiny_chain_config).history
    before = torch.get_num_threads()
    config = TrainConfig(max_epochs=1, steps_per_epoch=1, batch_size=8, threads=1, max_seconds=None)
    Trainer(history, quick_model_config(SPEC), config).fit()
    assert torch.get_num_threads() == before
