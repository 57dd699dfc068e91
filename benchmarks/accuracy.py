"""Accuracy of the default model on the default synthetic chain.

Trains the default (non-quick) configuration on the default synthetic chain (20 stores,
730 days, seed 7) exactly as ``storecast train`` does, then scores the rolling-origin
hold-out (28 daily origins over the last 4 weeks, never trained on) and prints JSON:

- lstm_over_best_snaive: LSTM WAPE / best seasonal-naive WAPE   (target <= 0.85)
- lstm_over_oracle:      LSTM WAPE / oracle WAPE                (target <= 1.10)
- coverage_80:           share of actuals in the 10-90 interval, on trading hours
                         (target 0.75 .. 0.85)
- bias:                  sum of errors / sum of actuals         (target |bias| <= 0.02)
- train_seconds:         wall-clock fitting time                (target <= 180)

    python benchmarks/accuracy.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from storecast._progress import training_progress
from storecast.forecasting.synthetic import ChainConfig
from storecast.forecasting.workflow import synthetic_source, train_and_evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the checkpoint and metrics here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        started = time.monotonic()
        source = synthetic_source(ChainConfig())
        with training_progress(Console(stderr=True), log_epochs=False) as progress:
            outcome = train_and_evaluate(
                source, folder / "lstm_v1.pt", on_step=progress.on_step, on_epoch=progress.on_epoch
            )
        total = time.monotonic() - started
    if outcome.metrics is None:
        return 130
    m = outcome.metrics
    wape = m["wape"]
    figures = {
        "lstm_over_best_snaive": wape["lstm"] / min(wape["snaive_24"], wape["snaive_168"]),
        "lstm_over_oracle": wape["lstm"] / wape["oracle"],
        "coverage_80": m["coverage_80"]["lstm"],
        "bias": m["bias"]["lstm"],
        "train_seconds": round(outcome.result.seconds, 1),
    }
    checks = {
        "lstm_over_best_snaive": figures["lstm_over_best_snaive"] <= 0.85,
        "lstm_over_oracle": figures["lstm_over_oracle"] <= 1.10,
        "coverage_80": 0.75 <= figures["coverage_80"] <= 0.85,
        "bias": abs(figures["bias"]) <= 0.02,
        "train_seconds": figures["train_seconds"] <= 180,
    }
    print(
        json.dumps(
            {
                "benchmark": "accuracy",
                "data": m["data"]["source"],
                "backtest": m["backtest"],
                "wape": wape,
                "mase": m["mase"],
                "pinball": {"lstm": m["pinball"]["lstm"], "oracle": m["pinball"]["oracle"]},
                "coverage_80_oracle": m["coverage_80"]["oracle"],
                "stopped": outcome.result.stopped,
                "best_epoch": outcome.result.best_epoch,
                "total_seconds": round(total, 1),
                "figures": figures,
                "targets_met": checks,
            },
            indent=2,
        )
    )
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
