"""``storecast rollouts status|promote|pause|resume|abort|tick`` and the canary body of
``storecast deploy --canary``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from storecast.cli._app import app, console, fail
from storecast.cli.remote import Registry, Token, client_for, print_json

rollouts_app = typer.Typer(help="Canary rollouts: readouts and operator actions.")
app.add_typer(rollouts_app, name="rollouts", no_args_is_help=True)

DeploymentId = Annotated[int, typer.Argument(min=1, help="Deployment id.")]
Reason = Annotated[
    str | None, typer.Option(help="Why (kept with the decision and in the audit log).")
]


def parse_steps(raw: str) -> list[float]:
    """``"5,25,50,100"`` → percentages; ``typer.Exit(2)`` with a clear message otherwise."""
    try:
        steps = [float(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise fail(
            f"--steps takes comma-separated percentages such as 5,25,50,100, not {raw!r}"
        ) from exc
    if not steps or any(not 0 < p <= 100 for p in steps):
        raise fail(f"--steps: every percentage must lie in (0, 100], got {raw!r}")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise fail(f"--steps must increase, got {raw!r}")
    if steps[-1] != 100:
        raise fail(f"--steps must end at 100 (the candidate takes every store), got {raw!r}")
    return steps


def target(option: str, version: int | None, alias: str | None) -> dict[str, Any]:
    """One arm's ``{"version"}`` or ``{"alias"}`` (exit 2 unless exactly one is given)."""
    if (version is None) == (alias is None):
        raise fail(f"give exactly one of --{option}-version and --{option}-alias")
    return {"version": version} if version is not None else {"alias": alias}


def canary_strategy(
    steps: str,
    step_duration: float,
    min_forecast_hours: int,
    min_inferences: int,
    gates: dict[str, float | int | None],
) -> dict[str, Any]:
    """The ``strategy`` of a canary body (gates left out take the server's defaults)."""
    return {
        "kind": "canary",
        "steps": [
            {
                "percent": percent,
                "min_duration_s": step_duration,
                "min_forecast_hours": min_forecast_hours,
                "min_inferences": min_inferences,
            }
            for percent in parse_steps(steps)
        ],
        "gates": {name: value for name, value in gates.items() if value is not None},
    }


def _arms(deployment: dict[str, Any]) -> str:
    return ", ".join(
        f"{arm['arm']}={'v' + str(arm['version']) if arm['version'] else '@' + str(arm['alias'])}"
        f" {arm['weight']:g}%"
        for arm in deployment["arms"]
    )


def _step(deployment: dict[str, Any]) -> str:
    plan = deployment.get("plan")
    if not plan:
        return ""
    return f"{deployment['step_index'] + 1}/{len(plan['steps'])}"


def _num(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


@rollouts_app.command("status")
def status(
    deployment_id: Annotated[
        int | None, typer.Argument(min=1, help="One deployment's readout.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Deployments and their arms, or one deployment's A/B readout."""
    with client_for(registry, token) as client:
        if deployment_id is None:
            found = client.json("GET", "/v1/deployments")
        else:
            found = client.json("GET", f"/v1/deployments/{deployment_id}/readout")
    if as_json:
        print_json(found)
    elif deployment_id is None:
        table = Table("id", "model", "strategy", "status", "arms", "step", "created")
        for d in found["deployments"]:
            table.add_row(
                str(d["id"]),
                d["model"],
                d["strategy"],
                d["status"],
                _arms(d),
                _step(d),
                d["created_at"],
            )
        console.print(table)
    else:
        _print_readout(found)


def _print_readout(r: dict[str, Any]) -> None:
    step = r["step"]
    where = f", step {step['index'] + 1}/{step['of']} at {step['percent']:g}%" if step else ""
    console.print(
        f"deployment {r['deployment_id']} ({r['model']}, {r['strategy']}): {r['status']}{where}\n"
        f"window {r['window']['since']} .. {r['window']['until']} ({r['window']['basis']}); "
        f"evidence as of {r['as_of']} ({r['source']})",
        highlight=False,
    )
    table = Table("arm", "release", "weight", "stores", "fc-hours", "WAPE", "bias", "p99 ms")
    table.add_column("errors")
    table.add_column("failed act.")
    for a in r["arms"]:
        release = f"v{a['version']}" if a["version"] else "-"
        table.add_row(
            a["arm"],
            release + (f" (@{a['alias']})" if a["alias"] else ""),
            f"{a['weight']:g}%",
            str(a["stores"]),
            str(a["forecast_hours"]),
            _num(a["wape"]),
            _num(a["bias"], "+.4f"),
            _num(a["latency_p99_ms"], ".1f"),
            f"{a['errors']}/{a['inferences']}",
            str(a["failed_activations"]),
        )
    console.print(table)
    diff = r["difference"]
    if diff:
        console.print(
            f"WAPE B - A = {diff['estimate']:+.4f}, {diff['confidence']:.0%} interval "
            f"[{diff['low']:+.4f}, {diff['high']:+.4f}]: {r['verdict']}",
            highlight=False,
        )
    else:
        console.print(f"WAPE B - A: not enough data yet ({r['verdict']})", highlight=False)
    if r["gates_now"]:
        g = r["gates_now"]
        console.print(f"controller now: {g['action']} ({g['reason']})", highlight=False)
    for d in r["decisions"]:
        console.print(
            f"  {d['decided_at']}  step {d['step_index'] + 1}  {d['action']}  "
            f"{d['percent_before']:g}% -> {d['percent_after']:g}%  by {d['decided_by']}: "
            f"{d['reason']}",
            highlight=False,
        )


def _act(
    action: str, deployment_id: int, reason: str | None, registry: str | None, token: str | None
) -> None:
    body = {"reason": reason} if reason else {}
    with client_for(registry, token) as client:
        out = client.json("POST", f"/v1/deployments/{deployment_id}/{action}", json=body)
    console.print(
        f"deployment {out['id']}: {out['status']}, step {_step(out)}, {_arms(out)}",
        highlight=False,
    )


@rollouts_app.command("promote")
def promote(
    deployment_id: DeploymentId,
    reason: Reason = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Move a canary to its next step now (from the last one: complete it)."""
    _act("promote", deployment_id, reason, registry, token)


@rollouts_app.command("pause")
def pause(
    deployment_id: DeploymentId,
    reason: Reason = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Freeze a canary where it stands."""
    _act("pause", deployment_id, reason, registry, token)


@rollouts_app.command("resume")
def resume(
    deployment_id: DeploymentId,
    reason: Reason = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Let the controller move a paused canary again."""
    _act("resume", deployment_id, reason, registry, token)


@rollouts_app.command("abort")
def abort(
    deployment_id: DeploymentId,
    reason: Reason = None,
    registry: Registry = None,
    token: Token = None,
) -> None:
    """Stop a canary: every store goes back to the control."""
    _act("abort", deployment_id, reason, registry, token)


@rollouts_app.command("tick")
def tick(
    home: Annotated[
        Path,
        typer.Option(help="The cloud's folder (its database).", envvar="STORECAST_HOME"),
    ] = Path("registry-home"),
) -> None:
    """Run the rollout controller once over every active canary (for cron)."""
    from storecast.common.cloud import Database
    from storecast.registry.config import RegistryConfig
    from storecast.registry.rollouts import tick as run_tick

    config = RegistryConfig.from_env(home)
    if not config.trusted_root_path.exists():
        raise fail(f"{home} holds no registry; run `storecast registry init --home {home}` first")
    database = Database.connect(config.db_url, config.clock)
    try:
        done = run_tick(database)
    finally:
        database.engine.dispose()
    for ticked in done:
        d = ticked.decision
        what = d.action if ticked.applied or d.action == "wait" else f"{d.action} (already taken)"
        console.print(f"deployment {ticked.deployment_id}: {what}: {d.reason}", highlight=False)
    console.print(f"{len(done)} active canar{'y' if len(done) == 1 else 'ies'} checked")
