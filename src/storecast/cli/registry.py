"""``storecast registry init|serve|refresh``, ``storecast cloud serve``, ``analytics serve``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from storecast.cli._app import app, console, err_console

if TYPE_CHECKING:
    from flask import Flask

registry_app = typer.Typer(help="Run the model registry.", no_args_is_help=True)
cloud_app = typer.Typer(
    help="Run the cloud services (registry and analytics) in one app.", no_args_is_help=True
)
analytics_app = typer.Typer(
    help="Run the analytics service alone (telemetry, analytics API, dashboard).",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")
app.add_typer(cloud_app, name="cloud")
app.add_typer(analytics_app, name="analytics")

Home = Annotated[
    Path,
    typer.Option(
        "--home", help="The registry's folder (database, keys, artifacts).", envvar="STORECAST_HOME"
    ),
]
Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")]
Workers = Annotated[int, typer.Option(min=1, max=64, help="gunicorn worker processes.")]
Threads = Annotated[int, typer.Option(min=1, max=64, help="Threads per worker (gthread).")]


@registry_app.command("init")
def init(home: Home = Path("registry-home")) -> None:
    """Create a registry: database, TUF keys, 1.root.json and a first admin token."""
    from storecast.registry.config import RegistryConfig
    from storecast.registry.setup import init_registry

    made = init_registry(RegistryConfig.from_env(home))
    console.print(
        f"registry created in {made.home}\n"
        f"  database      {made.database_url}\n"
        f"  trusted root  {made.trusted_root}  (give this file to every device)\n"
        f"  [bold yellow]root key[/]      {made.root_key}\n"
        "                [yellow]the TUF root key: move it offline now; the registry never "
        "needs it to run[/]\n"
        f"  admin token   [bold]{made.admin_token}[/]  ({made.admin_token_id})\n"
        "                shown once: store it in your secrets manager",
        highlight=False,
        soft_wrap=True,
    )


def _serve(home: Path, host: str, port: int, workers: int, threads: int, service: str) -> None:
    from storecast.common.serving import open_socket, prepare_metrics_dir, serve

    prepare_metrics_dir(home / ".prometheus")
    from storecast.common.db import upgrade
    from storecast.registry.config import RegistryConfig

    config = RegistryConfig.from_env(home)
    if not config.trusted_root_path.exists():
        raise typer.Exit(_missing(home))
    upgrade(config.db_url)
    sock = open_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    console.print(
        f"storecast {service} listening on http://{bound_host}:{bound_port}", highlight=False
    )

    def factory() -> Flask:
        # Each worker runs the rollout controller (STORECAST_ROLLOUT_INTERVAL_S, 0: none).
        settings = RegistryConfig.from_env(home, serving=True)
        if service == "analytics":
            from storecast.analytics.app import create_app as create_analytics

            return create_analytics(settings.home, settings.db_url, settings.clock)
        if service == "cloud":
            from storecast.cloud import create_app
        else:
            from storecast.registry.app import create_app
        return create_app(settings)

    serve(factory, sock, workers=workers, threads=threads, name=f"storecast-{service}")


def _missing(home: Path) -> int:
    err_console.print(
        f"[bold red]error:[/] {home} holds no registry; run "
        f"`storecast registry init --home {home}` first",
        highlight=False,
    )
    return 2


@registry_app.command("serve")
def serve_registry(
    home: Home = Path("registry-home"),
    host: Host = "127.0.0.1",
    port: Port = 8080,
    workers: Workers = 2,
    threads: Threads = 4,
) -> None:
    """Serve the registry API and its TUF repository with gunicorn (Ctrl-C stops)."""
    _serve(home, host, port, workers, threads, "registry")


@registry_app.command("refresh")
def refresh(home: Home = Path("registry-home")) -> None:
    """Re-sign TUF metadata that is near expiry (the server also does this by itself)."""
    from storecast.common.cloud import Database
    from storecast.registry.config import RegistryConfig
    from storecast.registry.signing import refresh as refresh_metadata
    from storecast.registry.tuf_repo import load_online_keys

    config = RegistryConfig.from_env(home)
    database = Database.connect(config.db_url, config.clock)
    try:
        changed = refresh_metadata(database, config, load_online_keys(config.keys_dir))
    finally:
        database.engine.dispose()
    console.print("re-signed" if changed else "nothing near expiry")


@cloud_app.command("serve")
def serve_cloud(
    home: Home = Path("registry-home"),
    host: Host = "127.0.0.1",
    port: Port = 8080,
    workers: Workers = 2,
    threads: Threads = 4,
) -> None:
    """Serve the registry and analytics in one gunicorn app (Ctrl-C stops)."""
    _serve(home, host, port, workers, threads, "cloud")


@analytics_app.command("serve")
def serve_analytics(
    home: Home = Path("registry-home"),
    host: Host = "127.0.0.1",
    port: Port = 8081,
    workers: Workers = 2,
    threads: Threads = 4,
) -> None:
    """Serve analytics alone over the cloud home's database (Ctrl-C stops)."""
    _serve(home, host, port, workers, threads, "analytics")
