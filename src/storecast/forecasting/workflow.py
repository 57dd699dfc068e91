"""Train-then-evaluate and evaluate-a-checkpoint: the steps ``storecast train``,
``storecast evaluate``, the demo and the pipeline share (torch).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storecast import __version__
from storecast.common.clock import Clock, SystemClock
from storecast.common.errors import ConfigError, ModelError
from storecast.common.files import atomic_write_bytes
from storecast.forecasting.backtest import backtest_origins, run_backtest
from storecast.forecasting.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
    torch_forecaster,
)
from storecast.forecasting.features import FeatureSpec
from storecast.forecasting.history import StoreHistory, iso_hour
from storecast.forecasting.model import DemandLSTM, ModelConfig
from storecast.forecasting.synthetic import ChainConfig, generate_chain
from storecast.forecasting.training import (
    EpochStats,
    TrainConfig,
    Trainer,
    TrainResult,
    quick_model_config,
)


@dataclass(frozen=True)
class DataSource:
    """Where training data came from, for lineage."""

    history: StoreHistory
    info: dict[str, Any]


def synthetic_source(config: ChainConfig) -> DataSource:
    """The synthetic chain of ``config``, with its lineage."""
    history = generate_chain(config).history
    return DataSource(
        history,
        {
            "source": history.source,
            "sha256": history_digest(history),
            "synthetic": asdict(config),  # everything needed to regenerate it
            **_shape_info(history),
        },
    )


def file_source(path: Path) -> DataSource:
    """A user's history file (CSV or Parquet), validated, with its lineage."""
    from storecast.forecasting.loader import load_history

    history = load_history(path)
    return DataSource(
        history,
        {
            "source": str(path),
            "sha256": file_digest(path),
            "synthetic": None,
            **_shape_info(history),
        },
    )


def _shape_info(h: StoreHistory) -> dict[str, Any]:
    return {
        "stores": h.n_stores,
        "hours": h.n_hours,
        "start": iso_hour(h.start),
        "filled_hours": h.filled_hours,
    }


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def history_digest(h: StoreHistory) -> str:
    """sha256 of a history's content (stores, grid start, sales and covariates)."""
    digest = hashlib.sha256()
    digest.update("\n".join(h.store_ids).encode())
    digest.update(str(h.start).encode())
    for arr in (
        h.sales,
        h.observed,
        h.footfall,
        h.temperature_c,
        h.precip_mm,
        h.is_holiday,
        h.promo,
    ):
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def code_commit() -> str | None:
    """The git commit of the storecast source in use, when it runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def metrics_path(model_path: Path) -> Path:
    """``lstm_v1.pt`` -> ``lstm_v1.metrics.json`` beside it."""
    return model_path.with_name(model_path.stem + ".metrics.json")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically."""
    atomic_write_bytes(path, (json.dumps(_finite(data), indent=2) + "\n").encode())


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class TrainOutcome:
    result: TrainResult
    checkpoint: Path
    metrics: dict[str, Any] | None  # None when training was interrupted
    metrics_file: Path | None


def train_and_evaluate(
    data: DataSource,
    out: Path,
    *,
    quick: bool = False,
    train_config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    clock: Clock | None = None,
) -> TrainOutcome:
    """Train on ``data`` and write the checkpoint ``out`` and its metrics file.

    The checkpoint is rewritten at every validation improvement, so Ctrl-C leaves the
    best one so far on disk. The metrics come from a rolling-origin backtest of the
    hold-out tail (``test_days``), which training and early stopping never saw; they
    record the checkpoint's sha256, so they can't be mistaken for another run's.
    """
    clock = clock or SystemClock()
    if out.suffix != ".pt":
        raise ConfigError(f"{out}: the checkpoint file name must end in .pt")
    spec = FeatureSpec()
    tcfg = train_config or (TrainConfig.quick() if quick else TrainConfig())
    mcfg = model_config or (quick_model_config(spec) if quick else ModelConfig.for_features(spec))
    if tcfg.test_days % 7:
        raise ConfigError("test_days must be whole weeks")
    mpath = metrics_path(out)
    mpath.unlink(missing_ok=True)  # a previous run's metrics never sit beside new weights

    def meta(stats: EpochStats | None) -> dict[str, Any]:
        return {
            "created": clock.now().isoformat(timespec="seconds"),
            "storecast_version": __version__,
            "code_commit": code_commit(),
            "quick": quick,
            "train": tcfg.to_dict(),
            "data": data.info,
            "best_epoch": stats.epoch if stats else None,
            "val_loss": stats.val_loss if stats else None,
        }

    def save(model: DemandLSTM, stats: EpochStats) -> None:
        save_checkpoint(out, make_checkpoint(model, spec, meta(stats)))

    trainer = Trainer(
        data.history,
        mcfg,
        tcfg,
        spec,
        on_step=on_step,
        on_epoch=on_epoch,
        on_best=save,
        clock=clock,
    )
    result = trainer.fit()
    if result.stopped == "interrupted" or not result.epochs:
        return TrainOutcome(result, out, None, None)
    if result.best_epoch == 0:
        raise ModelError("training diverged: the validation loss was never finite")
    best = next(e for e in result.epochs if e.epoch == result.best_epoch)
    checkpoint = make_checkpoint(result.model, spec, meta(best))
    checkpoint["meta"]["stopped"] = result.stopped
    checkpoint["meta"]["train_seconds"] = round(result.seconds, 1)
    save_checkpoint(out, checkpoint)

    report = run_backtest(
        data.history,
        {"lstm": torch_forecaster(result.model)},
        origins=backtest_origins(data.history.n_hours, weeks=tcfg.test_days // 7),
        seed=tcfg.seed,
    )
    report["model"] = {
        "checkpoint": out.name,
        "config": mcfg.to_dict(),
        "best_epoch": result.best_epoch,
        "stopped": result.stopped,
        "train_seconds": round(result.seconds, 1),
    }
    report["data"] = data.info
    report["checkpoint_sha256"] = file_digest(out)
    write_json(mpath, report)
    return TrainOutcome(result, out, report, mpath)


def evaluate_checkpoint(path: Path, data: DataSource | None = None) -> dict[str, Any]:
    """Backtest a checkpoint over the tail of ``data`` it was trained to be scored on.

    The tail is as long as the checkpoint's hold-out (``test_days``, 4 weeks by default);
    inputs are built with the checkpoint's own feature spec. Without ``data``, the
    synthetic chain the model was trained on; a model trained on a file needs ``data``.
    """
    loaded = load_checkpoint(path)
    trained_on = loaded.meta.get("data") or {}
    if data is None:
        synth = trained_on.get("synthetic")
        if not isinstance(synth, dict):
            raise ConfigError(
                f"{path} was trained on {trained_on.get('source', 'unknown data')}; "
                "give the history to evaluate on with --data FILE"
            )
        try:
            data = synthetic_source(ChainConfig(**synth))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: unreadable training-data record ({exc})") from exc
    test_days = int((loaded.meta.get("train") or {}).get("test_days", 28))
    report = run_backtest(
        data.history,
        {"lstm": torch_forecaster(loaded.model)},
        origins=backtest_origins(data.history.n_hours, weeks=max(test_days // 7, 1)),
        spec=loaded.spec,
    )
    report["model"] = {
        "checkpoint": str(path),
        "config": loaded.model.config.to_dict(),
        "trained_on": trained_on.get("source"),
    }
    report["checkpoint_sha256"] = file_digest(path)
    report["data"] = data.info
    return report
