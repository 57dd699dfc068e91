"""``storecast demo``: the end-to-end story on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from storecast.cli._app import app, console


@app.command("demo")
def demo(
    home: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path(
        ".storecast-demo"
    ),
) -> None:
    """Run the demo: train the quick model on a synthetic chain, export it, evaluate it."""
    from storecast.demo import run_demo

    run_demo(home, console)
