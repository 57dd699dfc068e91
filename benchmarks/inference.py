"""Inference latency: torch vs ONNX Runtime on the same model, in the same run.

Builds the default architecture (or loads ``--model CHECKPOINT``), exports it to ONNX,
and times single forward passes at batch 1 and batch 64 on real feature windows from the
synthetic chain. Prints JSON with the median and p99 in milliseconds for each runtime
and the torch/onnxruntime ratio. Target: onnxruntime batch-1 median <= 0.35 ms.

torch runs with its default thread count; ONNX Runtime with one intra-op thread, as an
edge device runs it.

    python benchmarks/inference.py [--model lstm_v1.pt] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from storecast.forecasting.checkpoint import load_checkpoint
from storecast.forecasting.export import check_parity, export_onnx
from storecast.forecasting.features import FeatureSpec, WindowBuilder
from storecast.forecasting.model import DemandLSTM, ModelConfig
from storecast.forecasting.runtime import OnnxModel
from storecast.forecasting.synthetic import ChainConfig, generate_chain

TARGET_MS = 0.35


def timings(fn, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for _ in range(max(repeats // 10, 20)):  # warm-up
        fn()
    samples = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    return {
        "median_ms": float(np.median(samples) * 1e3),
        "p99_ms": float(np.percentile(samples, 99) * 1e3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        help="checkpoint to time (default: the default architecture, freshly initialised)",
    )
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args(argv)

    if args.model:
        model = load_checkpoint(args.model).model
    else:
        torch.manual_seed(0)
        model = DemandLSTM(ModelConfig.for_features(FeatureSpec()))
    model.eval()
    history = generate_chain(ChainConfig(stores=8, days=30, seed=1)).history
    rng = np.random.default_rng(0)
    w = WindowBuilder(history).build(rng.integers(0, 8, 64), rng.integers(168, 30 * 24 - 24, 64))

    results: dict[str, dict[str, dict[str, float]]] = {"torch": {}, "onnxruntime": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        parity = check_parity(model, path)
        onnx_model = OnnxModel(path, threads=1)
        for batch in (1, 64):
            past, future = w.past[:batch], w.future[:batch]
            tp, tf = torch.from_numpy(past), torch.from_numpy(future)

            def run_torch(tp: torch.Tensor = tp, tf: torch.Tensor = tf) -> None:
                with torch.inference_mode():
                    model(tp, tf)

            def run_ort(past: np.ndarray = past, future: np.ndarray = future) -> None:
                onnx_model.predict_scaled(past, future)

            results["torch"][f"batch{batch}"] = timings(run_torch, args.repeats)
            results["onnxruntime"][f"batch{batch}"] = timings(run_ort, args.repeats)

    ratio = {
        f"batch{b}": results["torch"][f"batch{b}"]["median_ms"]
        / results["onnxruntime"][f"batch{b}"]["median_ms"]
        for b in (1, 64)
    }
    ort_b1 = results["onnxruntime"]["batch1"]["median_ms"]
    print(
        json.dumps(
            {
                "benchmark": "inference",
                "model": str(args.model) if args.model else "default architecture (untrained)",
                "config": model.config.to_dict(),
                "torch_threads": torch.get_num_threads(),
                "onnxruntime_threads": 1,
                "parity_max_abs_diff": parity,
                "latency": results,
                "torch_over_onnxruntime_median": ratio,
                "onnxruntime_batch1_median_ms": ort_b1,
                "target_met": ort_b1 <= TARGET_MS,
            },
            indent=2,
        )
    )
    return 0 if ort_b1 <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
