"""Commands that talk to a running registry: publish, models, deploy, devices, tokens, audit.

Each takes ``--registry URL`` (or ``STORECAST_REGISTRY``) and ``--token`` (or
``STORECAST_TOKEN``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from storecast.cli._app import app, console, fail
from storecast.client import CloudClient

Registry = Annotated[
    str | None, typer.Option("--registry", help="Registry URL [env: STORECAST_REGISTRY].")
]
Token = Annotated[str | None, typer.Option("--token", help="Bearer token [env: STORECAST_TOKEN].")]

models_app = typer.Typer(help="Models in the registry.", no_args_is_help=True)
devices_app = typer.Typer(help="Edge devices.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(devices_app, name="devices")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")


def client_for(registry: str | None, token: str | None) -> CloudClient:
    """A client for ``--registry`` / ``--token`` (or their environment variables)."""
    return CloudClient.from_env(registry, token)


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data))


@app.command("publish")
def publish(
    bundle: Annotated[Path, typer.Argument(help="Bundle file (.tar) made by `package`.")],
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Publish a bundle to the registry (same bytes again: no change)."""
    with client_for(registry, token) as client:
        result = client.publish(bundle)
    what = "published" if result["created"] else "already published"
    console.print(
        f"{what} {result['name']} v{result['version']} sha256 {result['sha256']}", highlight=False
    )


@models_app.command("list")
def list_models(registry: Registry = None, token: Token = None) -> None:
    """List models with their latest version and aliases."""
    with client_for(registry, token) as client:
        models = client.json("GET", "/v1/models")["models"]
    table = Table("model", "latest", "versions", "aliases")
    for model in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(model["aliases"].items()))
        table.add_row(model["name"], f"v{model['latest_version']}", str(model["versions"]), aliases)
    console.print(table)


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(min=1, help="One version, with metadata.")] = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Show a model's versions, or one version's full metadata."""
    with client_for(registry, token) as client:
        if version is not None:
            print_json(client.json("GET", f"/v1/models/{name}/versions/{version}"))
            return
        model = client.json("GET", f"/v1/models/{name}")
    table = Table("version", "sha256", "size", "published", "by", "aliases", "status", title=name)
    for v in model["versions"]:
        table.add_row(
            f"v{v['version']}",
            v["sha256"][:12],
            f"{v['size']:,}",
            v["published_at"],
            v["published_by"],
            ", ".join(v["aliases"]),
            "withdrawn" if v["withdrawn"] else "live",
        )
    console.print(table)


@models_app.command("alias")
def set_alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Option(min=1, help="Version the alias points at.")],
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Point an alias at a version."""
    with client_for(registry, token) as client:
        client.json("PUT", f"/v1/models/{name}/aliases/{alias}", json={"version": version})
    console.print(f"{name}@{alias} -> v{version}", highlight=False)


@models_app.command("withdraw")
def withdraw(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Option(min=1, help="Version to withdraw.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")],
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Withdraw a version: no device will be sent to it again."""
    with client_for(registry, token) as client:
        client.json(
            "POST", f"/v1/models/{name}/versions/{version}/withdraw", json={"reason": reason}
        )
    console.print(f"withdrew {name} v{version}", highlight=False)


CanaryOption = Annotated[bool, typer.Option("--canary", help="Roll out as a canary: A -> B.")]


@app.command("deploy")
def deploy(
    model: Annotated[str, typer.Option("--model", help="Model name.")],
    version: Annotated[int | None, typer.Option(min=1, help="Version to deploy.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to deploy instead.")] = None,
    stores: Annotated[list[str] | None, typer.Option("--stores", help="Only these stores.")] = None,
    regions: Annotated[
        list[str] | None, typer.Option("--regions", help="Only these regions.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tags", help="Only devices with a tag.")
    ] = None,
    canary: CanaryOption = False,
    control_version: Annotated[
        int | None, typer.Option(min=1, help="Canary: the control's (A) version.")
    ] = None,
    control_alias: Annotated[str | None, typer.Option(help="Canary: the control's alias.")] = None,
    candidate_version: Annotated[
        int | None, typer.Option(min=1, help="Canary: the candidate's (B) version.")
    ] = None,
    candidate_alias: Annotated[
        str | None, typer.Option(help="Canary: the candidate's alias.")
    ] = None,
    steps: Annotated[str, typer.Option(help="Canary: B's share at each step, in %.")] = (
        "5,25,50,100"
    ),
    step_duration: Annotated[
        float, typer.Option(min=0, help="Canary: minimum seconds per step.")
    ] = 3600.0,
    min_forecast_hours: Annotated[
        int, typer.Option(min=0, help="Canary: B's forecast-hours with actuals per step.")
    ] = 24,
    min_inferences: Annotated[
        int, typer.Option(min=0, help="Canary: B's forecast requests per step.")
    ] = 100,
    wape_margin: Annotated[
        float | None, typer.Option(min=0, max=1, help="Canary: WAPE B may exceed A's by.")
    ] = None,
    max_error_rate: Annotated[
        float | None, typer.Option(min=0, max=1, help="Canary: B's error-rate limit.")
    ] = None,
    max_p99_ms: Annotated[
        float | None, typer.Option(min=0, help="Canary: B's p99 latency limit, ms.")
    ] = None,
    max_failed_activations: Annotated[
        int | None, typer.Option(min=0, help="Canary: devices that may reject B.")
    ] = None,
    promote_alias: Annotated[
        str | None, typer.Option(help="Canary: alias moved to B once it completes.")
    ] = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Point devices (all, or some stores, regions or tags) at a version or alias, at once
    or (--canary) step by step from a control to a candidate, gated on health and accuracy."""
    chosen = [(k, v) for k, v in (("stores", stores), ("regions", regions), ("tags", tags)) if v]
    if len(chosen) > 1:
        raise fail("give at most one of --stores, --regions and --tags")
    selector: dict[str, Any] = {"kind": "all"}
    if chosen:
        kind, values = chosen[0]
        selector = {"kind": kind, "values": [x for value in values for x in value.split(",")]}
    body: dict[str, Any] = {"model": model, "selector": selector}
    if canary:
        from storecast.cli.rollouts import canary_strategy, target

        if version is not None or alias is not None:
            raise fail("a canary takes --control-* and --candidate-*, not --version / --alias")
        gates = {
            "wape_margin": wape_margin,
            "max_error_rate": max_error_rate,
            "max_p99_ms": max_p99_ms,
            "max_failed_activations": max_failed_activations,
        }
        body |= {
            "control": target("control", control_version, control_alias),
            "candidate": target("candidate", candidate_version, candidate_alias),
            "strategy": canary_strategy(
                steps, step_duration, min_forecast_hours, min_inferences, gates
            ),
            **({"promote_alias": promote_alias} if promote_alias else {}),
        }
    else:
        canary_only = (control_version, control_alias, candidate_version, candidate_alias)
        if any(x is not None for x in (*canary_only, promote_alias)):
            raise fail("--control-*, --candidate-* and --promote-alias need --canary")
        if (version is None) == (alias is None):
            raise fail("give exactly one of --version and --alias")
        body |= {"version": version, "alias": alias}
    with client_for(registry, token) as client:
        out = client.json("POST", "/v1/deployments", json=body)
    if out["strategy"] == "canary":
        a, b = out["arms"]
        percents = ",".join(f"{s['percent']:g}" for s in out["plan"]["steps"])
        console.print(
            f"deployment {out['id']}: canary {out['model']} "
            f"{_release(a)} -> {_release(b)}, steps {percents} % -> {out['selector']}",
            highlight=False,
        )
        return
    console.print(
        f"deployment {out['id']}: {out['model']} {_release(out)} -> {out['selector']}",
        highlight=False,
    )


def _release(target: dict[str, Any]) -> str:
    return f"v{target['version']}" if target["version"] else f"@{target['alias']}"


@devices_app.command("enrol")
def enrol(
    device_id: Annotated[str, typer.Option("--device-id", help="Unique device id.")],
    store_id: Annotated[str, typer.Option("--store-id", help="The store it sits in.")],
    region: Annotated[str, typer.Option(help="The store's region.")],
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Enrol a device (admin); prints its token once."""
    body = {"device_id": device_id, "store_id": store_id, "region": region, "tags": tags or []}
    with client_for(registry, token) as client:
        out = client.json("POST", "/v1/devices", json=body)
    console.print(
        f"enrolled {device_id} (store {store_id}, {region})\n"
        f"device token [bold]{out['token']}[/]  (shown once)",
        highlight=False,
    )


@devices_app.command("list")
def list_devices(registry: Registry = None, token: Token = None) -> None:
    """List enrolled devices with when they were last seen and what they run."""
    with client_for(registry, token) as client:
        devices = client.json("GET", "/v1/devices")["devices"]
    table = Table("device", "store", "region", "tags", "last seen", "running")
    for d in devices:
        running = f"{d['reported_model']} v{d['reported_version']}" if d["reported_model"] else ""
        table.add_row(
            d["device_id"],
            d["store_id"],
            d["region"],
            ",".join(d["tags"]),
            d["last_seen_at"] or "never",
            running,
        )
    console.print(table)


class TokenRole(StrEnum):
    """The roles ``tokens create`` hands out (device tokens come from ``devices enrol``)."""

    ADMIN = "admin"
    PUBLISHER = "publisher"
    VIEWER = "viewer"


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")],
    role: Annotated[TokenRole, typer.Option(help="What the token may do.")],
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Create a token (admin); prints it once."""
    with client_for(registry, token) as client:
        out = client.json("POST", "/v1/tokens", json={"name": name, "role": role.value})
    console.print(
        f"{out['role']} token {out['id']} for {out['name']}: [bold]{out['token']}[/]  (shown once)",
        highlight=False,
    )


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="Token id (tok_...).")],
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Revoke a token (admin)."""
    with client_for(registry, token) as client:
        client.json("DELETE", f"/v1/tokens/{token_id}")
    console.print(f"revoked {token_id}", highlight=False)


@audit_app.command("verify")
def verify_audit(registry: Registry = None, token: Token = None) -> None:
    """Check the audit log's hash chain; exit 1 and name the first broken record if any."""
    with client_for(registry, token) as client:
        report = client.json("GET", "/v1/audit/verify")
    if report["ok"]:
        console.print(
            f"audit chain intact: {report['records']} records, head {report['head']}",
            highlight=False,
        )
        return
    raise fail(f"audit chain broken at record {report['first_broken']}: {report['reason']}", code=1)


@audit_app.command("export")
def export_audit(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.CSV,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only actors containing this.")] = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Export audit records as CSV or JSONL."""
    params = {
        "format": fmt.value,
        **({"action": action} if action else {}),
        **({"actor": actor} if actor else {}),
    }
    with client_for(registry, token) as client:
        data = client.request("GET", "/v1/audit", params=params).content
    from storecast.common.files import atomic_write_bytes

    atomic_write_bytes(out, data)
    console.print(f"wrote {out}", highlight=False)
