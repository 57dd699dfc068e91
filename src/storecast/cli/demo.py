"""``storecast demo``: the end-to-end story on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from storecast.cli._app import app, console, fail


@app.command("demo")
def demo(
    home: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path(
        ".storecast-demo"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="The same story with smaller budgets (CI).")
    ] = False,
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the cloud and devices up until Ctrl-C."),
    ] = False,
) -> None:
    """The whole platform on this machine: cloud, pipeline, edge agents, A/B canary, analytics."""
    from storecast.demo import run_demo
    from storecast.demo._story import DemoError

    try:
        run_demo(home, console, quick=quick, keep_running=keep_running)
    except DemoError as exc:
        raise fail(str(exc), code=1) from None
