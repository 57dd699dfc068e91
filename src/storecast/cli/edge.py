"""``storecast edge ...``: set up, run and talk to a store's edge agent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from storecast.cli._app import app, console, err_console, fail
from storecast.common.errors import ConfigError

edge_app = typer.Typer(help="The edge agent of one store.", no_args_is_help=True)
app.add_typer(edge_app, name="edge")

Home = Annotated[Path, typer.Option("--home", help="The device's home folder.")]
AgentUrl = Annotated[
    str | None,
    typer.Option("--agent", help="The running agent's URL (default: the one in --home)."),
]


@edge_app.command("init")
def init(
    home: Home,
    registry: Annotated[str, typer.Option("--registry", help="Registry URL.")],
    analytics: Annotated[str, typer.Option("--analytics", help="Analytics URL (telemetry).")],
    token: Annotated[str, typer.Option("--token", help="The device token from enrolment.")],
    device_id: Annotated[str, typer.Option("--device-id", help="This device's id.")],
    store_id: Annotated[str, typer.Option("--store-id", help="The store it serves.")],
    root: Annotated[
        Path, typer.Option("--root", help="The registry's 1.root.json (trusted TUF root).")
    ],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Local API port.")] = 8700,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.05, help="Seconds between assignment polls.")
    ] = 60.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config.")] = False,
) -> None:
    """Write the device config (edge.toml) and the trusted TUF root; print the admin token."""
    from storecast.edge.config import init_home

    try:
        trusted_root = root.read_bytes()
    except OSError as exc:
        raise fail(f"{root}: {exc.strerror or exc}") from None
    config, admin_token = init_home(
        home,
        device_id=device_id,
        store_id=store_id,
        registry_url=registry,
        analytics_url=analytics,
        token=token,
        trusted_root=trusted_root,
        settings={"port": port, "poll_interval_s": poll_interval},
        force=force,
    )
    console.print(f"initialised {config.device_id} (store {config.store_id}) in {home}")
    console.print("local admin token (shown once; needed for `storecast edge rollback`):")
    console.print(admin_token, highlight=False, soft_wrap=True)


@edge_app.command("run")
def run(
    home: Home,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Override the API port.")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Override the API host.")] = None,
) -> None:
    """Run the agent and its local API until Ctrl-C (or SIGTERM)."""
    from storecast.edge.serve import run_agent

    def ready(url: str) -> None:
        console.print(f"storecast edge agent listening on {url}", highlight=False, soft_wrap=True)

    run_agent(home, host=host, port=port, on_ready=ready)


def _agent_url(home: Path, agent: str | None) -> str:
    if agent:
        return agent.rstrip("/")
    path = home / "agent.url"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"no agent is running in {home} (no {path}); pass --agent URL") from None


def _call(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, timeout=10.0, **kwargs)
    except httpx.TransportError as exc:
        raise fail(f"cannot reach the agent at {url}: {exc}", code=1) from None
    data: dict[str, Any] = response.json() if response.content else {}
    if response.status_code >= 400:
        message = data.get("error", {}).get("message", response.text)
        raise fail(f"the agent refused ({response.status_code}): {message}",
                   code=2 if response.status_code < 500 else 1)  # fmt: skip
    return data


@edge_app.command("status")
def status(
    home: Home = Path("."),
    agent: AgentUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a running agent's model, last update, telemetry backlog and readings."""
    data = _call("GET", f"{_agent_url(home, agent)}/v1/status")
    if as_json:
        console.print_json(json.dumps(data))
        return
    model = data.get("model")
    running = f"{model['name']} v{model['version']} ({model['runtime']})" if model else "none"
    last = data.get("last_update") or {}
    rows = [
        ("device", f"{data['device_id']} (store {data['store_id']})"),
        ("model", running),
        ("previous", data.get("previous") or "none"),
        ("last update", f"{last.get('outcome', '-')} {last.get('reason') or ''}".strip()),
        ("origin", data.get("origin")),
        ("history hours", data.get("history_hours")),
        (
            "outbox",
            f"{data['outbox_depth']} waiting, {data['dropped_events']} dropped, "
            f"{data['rejected_events']} refused by the cloud",
        ),
        ("last poll / upload ok", f"{data.get('last_poll_ok')} / {data.get('last_upload_ok')}"),
    ]
    for key, value in rows:
        console.print(f"{key:>22}: {value}", highlight=False)


@edge_app.command("rollback")
def rollback(
    home: Home = Path("."),
    agent: AgentUrl = None,
    admin_token: Annotated[
        str | None,
        typer.Option("--admin-token", help="Local admin token [env: STORECAST_EDGE_ADMIN_TOKEN]."),
    ] = None,
) -> None:
    """Make the previous model active again on a running agent."""
    secret = admin_token or os.environ.get("STORECAST_EDGE_ADMIN_TOKEN")
    if not secret:
        raise fail("pass --admin-token (or set STORECAST_EDGE_ADMIN_TOKEN)")
    data = _call(
        "POST",
        f"{_agent_url(home, agent)}/v1/model/rollback",
        headers={"Authorization": f"Bearer {secret}"},
    )
    model = data.get("active") or {}
    err_console.print(
        f"rolled back: now {model.get('name')} v{model.get('version')}", highlight=False
    )
