"""The end-to-end demo: what ``make demo`` shows a new user.

For now the story is the forecasting core: generate a synthetic chain, train the quick
LSTM, package it as a bundle (ONNX export with a parity check), and show its hold-out
evaluation against the seasonal-naive baselines and the oracle. Later steps (registry,
edge devices, rollouts, analytics) join as they are built.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from storecast._progress import training_progress
from storecast._report import metrics_table
from storecast.bundle.packaging import build_bundle
from storecast.forecasting.synthetic import ChainConfig
from storecast.forecasting.workflow import synthetic_source, train_and_evaluate

DEMO_CHAIN = ChainConfig(stores=8, days=240, seed=7)


def run_demo(home: Path, console: Console) -> None:
    """Run the demo in ``home`` (created if needed), narrating on ``console``."""
    home.mkdir(parents=True, exist_ok=True)
    console.print(Rule("storecast demo"))
    console.print(
        f"1. synthetic chain: {DEMO_CHAIN.stores} stores x {DEMO_CHAIN.days} days "
        f"of hourly sales, weather, promotions and holidays",
        highlight=False,
    )
    source = synthetic_source(DEMO_CHAIN)
    csv_path = home / "history.csv"
    rows = source.history.write_csv(csv_path)
    console.print(f"   wrote {rows:,} store-hours to {csv_path}", highlight=False)

    console.print("2. training the quick LSTM (global model, quantile loss, early stopping)")
    checkpoint = home / "lstm_v1.pt"
    with training_progress(console, log_epochs=False) as progress:
        outcome = train_and_evaluate(
            source, checkpoint, quick=True, on_step=progress.on_step, on_epoch=progress.on_epoch
        )
    if outcome.metrics is None:
        raise KeyboardInterrupt
    console.print(
        f"   {checkpoint} ({outcome.result.stopped.replace('_', ' ')}, best epoch "
        f"{outcome.result.best_epoch}, {outcome.result.seconds:.0f}s)",
        highlight=False,
    )

    console.print(
        "3. packaging a bundle for the edge: ONNX export, torch/onnxruntime parity check, "
        "deterministic tar"
    )
    built = build_bundle(checkpoint, name="demand-lstm", version=1, out_dir=home / "dist")
    meta = built.bundle.metadata
    console.print(
        f"   {built.path} ({built.bundle.size:,} bytes, sha256 {built.bundle.sha256[:16]}…, "
        f"parity max abs diff {meta.parity_max_abs_diff:.1e})",
        highlight=False,
    )

    console.print("4. hold-out evaluation (the last 4 weeks, never trained on)")
    console.print(metrics_table(outcome.metrics, title="LSTM vs baselines vs oracle"))
    console.print(f"   metrics: {outcome.metrics_file}", highlight=False)
    console.print(Rule("demo complete"))
