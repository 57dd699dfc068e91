"""A pipeline config for the tiny synthetic chain and a fast training budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storecast.pipeline.config import PipelineConfig
from tests.conftest import TINY_CHAIN

# Like tests/conftest.py's trained_checkpoint: a model in about 15 s that beats naive.
FAST_TRAIN = {"quick": True, "max_epochs": 12, "steps_per_epoch": 10, "batch_size": 64}


def tiny_config_dict(out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The structure of a ``pipeline.toml``; ``sections`` update its tables."""
    config: dict[str, Any] = {
        "data": {
            "synthetic": {
                "stores": TINY_CHAIN.stores,
                "days": TINY_CHAIN.days,
                "seed": TINY_CHAIN.seed,
            }
        },
        "train": dict(FAST_TRAIN),
        "model": {"name": "demand-lstm"},
        "gate": {"min_improvement_vs_snaive": 0.05, "max_regression_vs_production": 0.0},
        "deploy": {
            "strategy": "canary",
            "steps": [{"percent": 50, "min_duration_s": 60}, {"percent": 100}],
        },
        "output": {"dir": str(out)},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def tiny_config(out: Path, **sections: dict[str, Any]) -> PipelineConfig:
    return PipelineConfig.from_dict(tiny_config_dict(out, **sections))
