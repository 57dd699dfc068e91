"""Shared fixtures: a small synthetic chain and one quickly trained model per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from storecast.forecasting.synthetic import ChainConfig

# Big enough for a 4-week hold-out, a 2-week validation span and some training.
TINY_CHAIN = ChainConfig(stores=4, days=70, seed=3)


@pytest.fixture(scope="session")
def tiny_chain_config() -> ChainConfig:
    return TINY_CHAIN


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick model trained on the tiny chain (shared, read-only)."""
    from storecast.forecasting.training import TrainConfig
    from storecast.forecasting.workflow import synthetic_source, train_and_evaluate

    out = tmp_path_factory.mktemp("model") / "lstm_v1.pt"
    config = TrainConfig(max_epochs=12, steps_per_epoch=10, batch_size=64, max_seconds=None)
    train_and_evaluate(synthetic_source(TINY_CHAIN), out, quick=True, train_config=config)
    return out
