"""The end-to-end demo: what ``make demo`` shows a new user.

The story so far: generate a synthetic chain, train the quick LSTM, package it as a bundle
(ONNX export with a parity check), show its hold-out evaluation against the seasonal-naive
baselines and the oracle, then start the cloud (a real gunicorn process), publish and
deploy the bundle; a real edge agent (``storecast edge run``) fetches and verifies it
through TUF, activates it, takes a week of simulated sensor readings, forecasts and sends
its telemetry; then a simulated fleet reports telemetry and the analytics answer with KPIs
and a root cause. A/B rollouts join when they are built.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.rule import Rule

from storecast._process import server_process
from storecast._progress import training_progress
from storecast._report import metrics_table
from storecast.bundle.packaging import build_bundle
from storecast.client import CloudClient
from storecast.common.clock import SystemClock
from storecast.common.errors import ConfigError
from storecast.common.telemetry import hour_floor
from storecast.edge.config import init_home
from storecast.forecasting.synthetic import ChainConfig
from storecast.forecasting.workflow import synthetic_source, train_and_evaluate
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import init_registry
from storecast.sim.sender import post
from storecast.sim.sensors import ReadingsPoster, SensorStream, send_readings, sensor_chain
from storecast.sim.telemetry import TelemetrySimConfig

DEMO_CHAIN = ChainConfig(stores=8, days=240, seed=7)
EDGE_BACKFILL_HOURS = 192  # a week of lookback and a day: the model, not the fallback


def run_demo(home: Path, console: Console) -> None:
    """Run the demo in ``home`` (created if needed), narrating on ``console``."""
    home.mkdir(parents=True, exist_ok=True)
    console.print(Rule("storecast demo"))
    console.print(
        f"1. synthetic chain: {DEMO_CHAIN.stores} stores x {DEMO_CHAIN.days} days "
        f"of hourly sales, weather, promotions and holidays",
        highlight=False,
    )
    source = synthetic_source(DEMO_CHAIN)
    csv_path = home / "history.csv"
    rows = source.history.write_csv(csv_path)
    console.print(f"   wrote {rows:,} store-hours to {csv_path}", highlight=False)

    console.print("2. training the quick LSTM (global model, quantile loss, early stopping)")
    checkpoint = home / "lstm_v1.pt"
    with training_progress(console, log_epochs=False) as progress:
        outcome = train_and_evaluate(
            source, checkpoint, quick=True, on_step=progress.on_step, on_epoch=progress.on_epoch
        )
    if outcome.metrics is None:
        raise KeyboardInterrupt
    console.print(
        f"   {checkpoint} ({outcome.result.stopped.replace('_', ' ')}, best epoch "
        f"{outcome.result.best_epoch}, {outcome.result.seconds:.0f}s)",
        highlight=False,
    )

    console.print(
        "3. packaging a bundle for the edge: ONNX export, torch/onnxruntime parity check, "
        "deterministic tar"
    )
    built = build_bundle(checkpoint, name="demand-lstm", version=1, out_dir=home / "dist")
    meta = built.bundle.metadata
    console.print(
        f"   {built.path} ({built.bundle.size:,} bytes, sha256 {built.bundle.sha256[:16]}…, "
        f"parity max abs diff {meta.parity_max_abs_diff:.1e})",
        highlight=False,
    )

    console.print("4. hold-out evaluation (the last 4 weeks, never trained on)")
    console.print(metrics_table(outcome.metrics, title="LSTM vs baselines vs oracle"))
    console.print(f"   metrics: {outcome.metrics_file}", highlight=False)

    run_registry_story(home, built.path, console)
    console.print(Rule("demo complete"))


def run_registry_story(home: Path, bundle: Path, console: Console) -> None:
    """Steps 5-7: start the cloud, publish and deploy, a device fetches through TUF."""
    registry_home = home / "registry"
    shutil.rmtree(registry_home, ignore_errors=True)  # the demo's own, from a previous run
    console.print("5. starting the cloud: registry database, TUF keys and root, gunicorn")
    made = init_registry(RegistryConfig.from_env(registry_home, env={}))
    serve = ("cloud", "serve", "--home", str(registry_home), "--port", "0", "--workers", "1")
    with server_process(*serve) as url, CloudClient(url, made.admin_token) as admin:
        console.print(
            f"   serving on {url} (root key kept apart in {made.root_key})", highlight=False
        )
        publisher_token = admin.json(
            "POST", "/v1/tokens", json={"name": "ml-team", "role": "publisher"}
        )["token"]
        with CloudClient(url, publisher_token) as publisher:
            console.print("6. publishing, aliasing as production, deploying to every device")
            published = publisher.publish(bundle)
            name, version = published["name"], published["version"]
            publisher.json(
                "PUT", f"/v1/models/{name}/aliases/production", json={"version": version}
            )
            device = admin.json(
                "POST",
                "/v1/devices",
                json={"device_id": "edge-S001", "store_id": "S001", "region": "north"},
            )
            publisher.json("POST", "/v1/deployments", json={"model": name, "alias": "production"})
            console.print(
                f"   {name} v{version} (sha256 {published['sha256'][:16]}…) is "
                "a signed TUF target; edge-S001 enrolled",
                highlight=False,
            )
        run_edge_story(
            url, device["token"], made.trusted_root, home / "devices" / "edge-S001", console
        )
        run_analytics_story(url, admin, made.admin_token, console)
        chain = admin.json("GET", "/v1/audit/verify")
        console.print(
            f"   audit log: {chain['records']} hash-chained records, intact: {chain['ok']}",
            highlight=False,
        )


def run_analytics_story(url: str, admin: CloudClient, admin_token: str, console: Console) -> None:
    """Step 8: a simulated fleet reports telemetry; KPIs and a root cause come back."""
    end = hour_floor(SystemClock().now())
    config = TelemetrySimConfig(end=end, devices=8, days=2, fault="bad-model", fault_hours=12)
    console.print(
        "8. eight simulated store devices report two days of telemetry (forecasts, sales, "
        "inference stats, heartbeats, model events); a bad v3 reaches some stores 12 h ago"
    )
    sent = post(url, admin_token, config)
    console.print(
        f"   ingested {sent.accepted:,} events exactly once ({sent.rejected} rejected)",
        highlight=False,
    )
    viewer = admin.json("POST", "/v1/tokens", json={"name": "analyst", "role": "viewer"})
    with CloudClient(url, viewer["token"]) as analyst:
        fleet = analyst.json("GET", "/v1/analytics/fleet")
        cause = analyst.json("GET", "/v1/analytics/rootcause", params={"metric": "error_rate"})
    wape = fleet["sales"]["wape"]
    console.print(
        f"   fleet (last 24 h): {fleet['forecasts_served']:,} forecasts served, error rate "
        f"{fleet['error_rate']:.2%}, p95 latency {fleet['latency']['p95_ms']:.1f} ms, "
        f"chain WAPE {'n/a' if wape is None else format(wape, '.1%')}",
        highlight=False,
    )
    if cause["findings"]:
        top = cause["findings"][0]
        console.print(
            f"   root cause of the error-rate rise: {top['dimension']} = {top['value']} "
            f"({top['share_of_excess']:.0%} of the excess on {top['share_of_volume']:.0%} "
            "of the traffic)",
            highlight=False,
        )


def run_edge_story(
    url: str, token: str, trusted_root: Path, device_home: Path, console: Console
) -> None:
    """Step 7: a real edge agent for S001 fetches v1 through TUF, takes readings, forecasts."""
    shutil.rmtree(device_home, ignore_errors=True)
    init_home(
        device_home,
        device_id="edge-S001",
        store_id="S001",
        registry_url=url,
        analytics_url=url,
        token=token,
        trusted_root=trusted_root.read_bytes(),
        settings={"poll_interval_s": 1.0, "port": 0},
    )
    with (
        server_process("edge", "run", "--home", str(device_home)) as agent,
        httpx.Client(base_url=agent, timeout=30) as http,
    ):
        model = _wait_for(lambda: http.get("/v1/model").json()["active"], "the agent to load v1")
        console.print(
            f"7. edge agent edge-S001 ({agent}) polled its assignment, fetched "
            f"{model['name']} v{model['version']} through TUF (signatures, freshness, "
            f"length, sha256), checked every member, smoke-tested it and activated it "
            f"({model['runtime']})",
            highlight=False,
        )
        start = hour_floor(SystemClock().now()) - timedelta(hours=EDGE_BACKFILL_HOURS + 2)
        chain = sensor_chain("S001", start, EDGE_BACKFILL_HOURS, seed=DEMO_CHAIN.seed)
        steps = SensorStream(chain, "S001", start, EDGE_BACKFILL_HOURS).steps()
        poster = ReadingsPoster(agent)
        try:
            sent = send_readings(steps, poster.post, speed=0, clock=SystemClock())
        finally:
            poster.close()
        forecast = http.get("/v1/forecast", params={"horizon": 6}).json()
        points = ", ".join(f"{p['q50']:.0f}" for p in forecast["points"])
        console.print(
            f"   {sent.readings:,} sensor readings ({EDGE_BACKFILL_HOURS} simulated hours of "
            f"sales, footfall, weather, promos) stored on the device; its forecast from "
            f"{forecast['origin']} ({forecast['method']}, v{forecast['model']['version']}): "
            f"next 6 hours q50 = {points} units",
            highlight=False,
        )
        status = _wait_for(
            lambda: (s := http.get("/v1/status").json())["outbox_depth"] == 0 and s,
            "the telemetry outbox to drain",
        )
        console.print(
            f"   telemetry outbox drained to the cloud (last upload ok: "
            f"{status['last_upload_ok']})",
            highlight=False,
        )


def _wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise ConfigError(f"the demo timed out waiting for {what}")
