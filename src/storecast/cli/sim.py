"""``storecast sim ...``: synthetic data for trying storecast without a chain of one's own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from storecast.cli._app import app, console
from storecast.forecasting.synthetic import ChainConfig, generate_chain

sim_app = typer.Typer(help="Simulators: synthetic store history.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@sim_app.command("history")
def history(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    stores: Annotated[int, typer.Option(min=1, max=10_000, help="Number of stores.")] = 20,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days of hourly history.")] = 730,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    start: Annotated[str, typer.Option(help="First day (UTC), YYYY-MM-DD.")] = "2024-01-01",
    missing_rate: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Share of store-hours to drop.")
    ] = 0.0,
) -> None:
    """Write a synthetic chain's hourly history as CSV (store-hour schema plus oracle columns)."""
    try:
        np.datetime64(start, "D")
        if len(start) != 10:
            raise ValueError(f"--start must be a day, YYYY-MM-DD; got {start!r}")
        config = ChainConfig(
            stores=stores, days=days, seed=seed, start=start, missing_rate=missing_rate
        )
        chain = generate_chain(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    rows = chain.history.write_csv(out)
    console.print(f"wrote {rows:,} store-hours of {stores} stores over {days} days to {out}")
