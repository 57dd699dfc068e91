"""``storecast pipeline run``: the model release pipeline from a ``pipeline.toml``.

Exit codes: 0 released (or nothing new), 2 bad config or input, 3 the quality gate
refused the candidate (nothing published), 1 anything else (e.g. the registry failing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from storecast.cli._app import app, console, err_console, fail

if TYPE_CHECKING:
    from storecast.pipeline import GateReport

GATE_FAILED = 3  # exit code: the candidate did not pass the quality gate

pipeline_app = typer.Typer(help="The model release pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("run")
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline config (TOML).")] = Path(
        "pipeline.toml"
    ),
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Registry URL; overrides STORECAST_REGISTRY and [registry] url. "
            "The token comes from STORECAST_TOKEN.",
        ),
    ] = None,
) -> None:
    """Train, evaluate, gate, package, publish and deploy a model as the config says."""
    from storecast._progress import training_progress
    from storecast.client import DEFAULT_URL
    from storecast.pipeline import Callbacks, GateFailed, load_config, run_pipeline

    settings = load_config(config)
    url = registry or os.environ.get("STORECAST_REGISTRY") or settings.registry.url or DEFAULT_URL
    token = os.environ.get("STORECAST_TOKEN")
    console.print(
        f"pipeline {config}: {settings.model.name} -> {url} (output {settings.output.dir})",
        highlight=False,
    )

    def on_step(step: str, message: str) -> None:
        console.print(f"[bold cyan]{step:>8}[/]  {message}", highlight=False)

    try:
        with training_progress(console, log_epochs=False) as progress:
            result = run_pipeline(
                settings,
                registry_url=url,
                token=token,
                callbacks=Callbacks(
                    on_step=on_step,
                    on_train_step=progress.on_step,
                    on_epoch=progress.on_epoch,
                ),
            )
    except GateFailed as exc:
        _print_figures(exc.metrics, exc.production_metrics, exc.report)
        err_console.print("[bold red]quality gate failed[/] (nothing published):")
        for failure in exc.report.failures:
            err_console.print(f"  {failure}", highlight=False, soft_wrap=True)
        raise fail(f"{settings.model.name}: the candidate was not released", GATE_FAILED) from None

    _print_figures(result.metrics, result.production_metrics, result.gate)
    if result.nothing_new:
        console.print(
            f"nothing new: {result.model} v{result.version} (sha256 {result.sha256[:12]}) is "
            f"already published and deployed (deployment #{result.deployment_id})",
            highlight=False,
        )
    else:
        console.print(
            f"[bold green]released[/] {result.model} v{result.version} "
            f"(sha256 {result.sha256[:12]}, {'new' if result.created else 'already published'}), "
            f"deployment #{result.deployment_id}",
            highlight=False,
        )
    console.print(f"report: {result.report}", highlight=False)


def _print_figures(
    metrics: dict[str, Any] | None, production: dict[str, Any] | None, gate: GateReport
) -> None:
    """The hold-out table (candidate, production, baselines, oracle) and the gate's checks."""
    from storecast._report import metrics_table

    if metrics is not None:
        merged = {
            key: dict(value) if isinstance(value, dict) else value for key, value in metrics.items()
        }
        if production is not None:
            for metric in ("wape", "bias", "mase", "coverage_80", "pinball"):
                merged[metric]["production"] = production[metric]["production"]
        console.print(metrics_table(merged, title="Hold-out backtest (candidate = LSTM)"))
    table = Table("check", "result", "detail", title="Quality gate")
    for check in gate.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(check.name, mark, check.detail)
    console.print(table)
