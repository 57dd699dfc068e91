"""``storecast train``, ``storecast evaluate`` and ``storecast export``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from storecast.cli._app import INTERRUPTED, app, console, fail
from storecast.common.errors import ConfigError

if TYPE_CHECKING:
    from storecast.forecasting.workflow import DataSource

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="History file (.csv, .parquet) in the store-hour schema."),
]


def _source(
    data: Path | None, stores: int | None, days: int | None, seed: int | None
) -> DataSource:
    from storecast.forecasting.synthetic import ChainConfig
    from storecast.forecasting.workflow import file_source, synthetic_source

    if data is not None:
        if stores is not None or days is not None or seed is not None:
            raise ConfigError("use either --data FILE or --stores/--days/--seed, not both")
        with console.status(f"loading {data}"):
            source = file_source(data)
        h = source.history
        console.print(
            f"loaded {h.n_stores} stores x {h.n_hours:,} hours from {data}; "
            f"{h.filled_hours:,} missing store-hours filled (covariates) and masked "
            "(sales)",
            highlight=False,
        )
        return source
    defaults = ChainConfig()
    config = ChainConfig(
        stores=stores or defaults.stores,
        days=days or defaults.days,
        seed=defaults.seed if seed is None else seed,
    )
    with console.status("generating the synthetic chain"):
        source = synthetic_source(config)
    console.print(
        f"synthetic chain: {config.stores} stores x {config.days} days (seed {config.seed})",
        highlight=False,
    )
    return source


@app.command("train")
def train(
    out: Annotated[Path, typer.Option("--out", help="Checkpoint to write (.pt).")] = Path(
        "lstm_v1.pt"
    ),
    data: DataOpt = None,
    stores: Annotated[int | None, typer.Option(min=1, help="Synthetic stores.")] = None,
    days: Annotated[int | None, typer.Option(min=60, help="Synthetic days.")] = None,
    seed: Annotated[int | None, typer.Option(help="Synthetic chain seed.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small model and budget (tests, demo).")
    ] = False,
    max_seconds: Annotated[
        float | None, typer.Option(min=1.0, help="Training time budget in seconds.")
    ] = None,
) -> None:
    """Train the demand LSTM; write the checkpoint and its hold-out metrics beside it."""
    from storecast._progress import training_progress
    from storecast._report import metrics_table
    from storecast.forecasting.training import TrainConfig, with_overrides
    from storecast.forecasting.workflow import train_and_evaluate

    source = _source(data, stores, days, seed)
    config = with_overrides(
        TrainConfig.quick() if quick else TrainConfig(), max_seconds=max_seconds
    )
    with training_progress(console) as progress:
        outcome = train_and_evaluate(
            source,
            out,
            quick=quick,
            train_config=config,
            on_step=progress.on_step,
            on_epoch=progress.on_epoch,
        )
    result = outcome.result
    if outcome.metrics is None:
        if result.best_epoch:
            console.print(
                f"interrupted: kept the best checkpoint so far (epoch "
                f"{result.best_epoch}) at {out}; not evaluated",
                highlight=False,
            )
        raise fail("training interrupted", INTERRUPTED)
    console.print(
        f"trained in {result.seconds:.0f}s ({result.stopped.replace('_', ' ')}, "
        f"best epoch {result.best_epoch}) -> {out}",
        highlight=False,
    )
    console.print(metrics_table(outcome.metrics, title="Hold-out backtest (never trained on)"))
    console.print(f"metrics: {outcome.metrics_file}", highlight=False)


@app.command("evaluate")
def evaluate(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) to evaluate.")],
    data: DataOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the metrics JSON here.")] = None,
) -> None:
    """Rolling-origin backtest over the last 4 weeks: LSTM vs seasonal naive (and oracle)."""
    from storecast._report import metrics_table
    from storecast.forecasting.workflow import evaluate_checkpoint, write_json

    source = _source(data, None, None, None) if data is not None else None
    with console.status("backtesting"):
        report = evaluate_checkpoint(model, source)
    console.print(metrics_table(report, title=f"Backtest of {model.name}"))
    if out is not None:
        write_json(out, report)
        console.print(f"metrics: {out}", highlight=False)


@app.command("export")
def export(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) to export.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="ONNX file (default: beside the checkpoint).")
    ] = None,
) -> None:
    """Export a checkpoint to ONNX and check torch/onnxruntime parity (max abs diff <= 1e-4)."""
    from storecast.common.files import atomic_path
    from storecast.forecasting.checkpoint import load_checkpoint
    from storecast.forecasting.export import check_parity, export_onnx

    loaded = load_checkpoint(model)
    target = out or model.with_suffix(".onnx")
    # The file appears only once it passed the parity check.
    with console.status("exporting to ONNX"), atomic_path(target) as tmp:
        export_onnx(loaded.model, tmp)
        diff = check_parity(loaded.model, tmp)
    console.print(f"wrote {target} (parity max abs diff {diff:.2e})", highlight=False)
