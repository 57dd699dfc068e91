"""The demo's story, step by step (see ``storecast.demo``)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.rule import Rule
from rich.table import Table

from storecast._report import metrics_table
from storecast.client import CloudClient
from storecast.common.arms import arm_for
from storecast.common.clock import SystemClock
from storecast.common.errors import ConfigError, StorecastError
from storecast.common.telemetry import hour_floor
from storecast.demo._fleet import Child, Processes, wait_for
from storecast.edge.config import init_home
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import init_registry

MODEL = "demand-lstm"
REGIONS = ("north", "south", "east", "west")
BACKFILL_HOURS = 192  # a week of lookback and a day: the model answers, not the fallback


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and budgets of one demo run."""

    stores: int = 4  # edge agents, one per store
    chain_stores: int = 8  # stores of the synthetic chain the pipeline trains on
    v1_days: int = 240  # history v1 is trained on
    v2_days: int = 300  # v2: retrained on more history
    train: dict[str, Any] = field(default_factory=lambda: {"max_seconds": 40.0})
    speed: float = 3600.0  # simulated seconds per wall second (an hour a second)
    live_hours: int = 168  # simulated hours the sensors stream after the backfill
    warmup_s: float = 10.0  # live forecasting before v2
    canary_s: float = 25.0  # the canary runs this long before the readout

    @classmethod
    def quick(cls) -> DemoPlan:
        """The same story in under two minutes (CI)."""
        return cls(
            v1_days=180,
            v2_days=210,
            train={"max_seconds": 12.0, "max_epochs": 12, "steps_per_epoch": 20},
            warmup_s=4.0,
            canary_s=12.0,
            live_hours=72,
        )


class DemoError(StorecastError):
    """A demo step failed; the message names the step."""


@dataclass
class _Device:
    store_id: str
    device_id: str
    token: str
    home: Path
    agent: Child | None = None
    served: int = 0  # forecasts the demo's client asked this device for
    failed: int = 0

    @property
    def url(self) -> str:
        """The running agent's API."""
        if self.agent is None:
            raise ConfigError(f"{self.device_id}'s agent has not been started")
        return self.agent.base_url


def run_demo(
    home: Path, console: Console, *, quick: bool = False, keep_running: bool = False
) -> dict[str, Any]:
    """Run the demo in ``home`` (its previous contents replaced); return the summary."""
    plan = DemoPlan.quick() if quick else DemoPlan()
    home = home.absolute()
    for old in ("cloud", "devices", "pipeline-v1", "pipeline-v2", "logs"):
        shutil.rmtree(home / old, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    console.print(Rule("storecast demo" + (" (quick)" if quick else "")))
    with Processes(home / "logs") as processes:
        story = _Story(home, plan, console, processes)
        summary = story.run()
        summary["seconds"] = round(time.monotonic() - started, 1)
        (home / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if keep_running:
            console.print(
                f"keeping everything running: dashboard {summary['dashboard']} "
                "(Ctrl-C stops it all)"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping")
        story.stop_devices()
        created, ingested = story.count_events()
        summary["events"] = {"created": created, "ingested": ingested}
        (home / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if created != ingested:
            raise DemoError(
                f"telemetry: the agents created {created:,} events but the cloud holds "
                f"{ingested:,} (see {home / 'logs'})"
            )
        console.print(
            f"telemetry: the agents created {created:,} events, the cloud holds {ingested:,} "
            "(none lost, none twice)",
            highlight=False,
        )
    console.print(Rule(f"demo complete in {time.monotonic() - started:.0f}s"))
    return summary


class _Story:
    def __init__(self, home: Path, plan: DemoPlan, console: Console, processes: Processes):
        self.home, self.plan, self.console, self.processes = home, plan, console, processes
        self.devices: list[_Device] = []
        self.url = ""
        self.tokens: dict[str, str] = {}
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    @contextmanager
    def step(self, number: int, title: str) -> Any:
        self.say(f"[bold]{number}. {title}[/]")
        try:
            yield
        except (StorecastError, httpx.HTTPError, OSError) as exc:
            raise DemoError(f"step {number} ({title}) failed: {exc}") from exc

    # -- the story ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with self.step(1, "starting the cloud: registry + analytics in one gunicorn process"):
            self.start_cloud()
        with self.step(2, "the release pipeline trains v1 (quick LSTM) and evaluates it"):
            v1 = self.release(1, self.plan.v1_days)
        with self.step(3, "v1 is packaged, published and deployed to every store"):
            self.say(
                f"   {MODEL} v{v1.version} sha256 {v1.sha256[:16]}… deployment "
                f"{v1.deployment_id}; alias production -> v{v1.version}"
            )
        with self.step(4, f"starting {self.plan.stores} edge agents and their sensor simulators"):
            self.start_devices()
        with self.step(5, "forecasts run live on the devices; telemetry flows to the cloud"):
            self.watch(self.plan.warmup_s, "devices forecasting live")
        with self.step(6, "the pipeline retrains on more history: v2 against production"):
            salt = self.balanced_salt()
            v2 = self.release(2, self.plan.v2_days, salt=salt)
            arms = {
                d.store_id: arm_for(salt, d.store_id, [("A", 50.0), ("B", 50.0)])
                for d in self.devices
            }
            canary_since = self.sim_now()
            self.say(
                f"   canary deployment {v2.deployment_id}: B (v{v2.version}) at 50 % -> "
                + ", ".join(f"{s} {a}" for s, a in sorted(arms.items()))
            )
            for device in self.devices:
                want = v2.version if arms[device.store_id] == "B" else v1.version
                wait_for(
                    lambda d=device, w=want: self.active_version(d) == w,  # type: ignore[misc]
                    f"{device.device_id} to run v{want}",
                )
            self.watch(self.plan.canary_s, "the canary: arm A on v1, arm B on v2")
            readout = self.readout(v2.deployment_id, canary_since)
        with self.step(7, "analytics"):
            analytics = self.analytics()
        self.stop_client()
        return {
            "cloud": self.url,
            "dashboard": f"{self.url}/dashboard",
            "viewer_token": self.tokens["viewer"],
            "devices": {
                d.device_id: {"store_id": d.store_id, "home": str(d.home)} for d in self.devices
            },
            "arms": arms,
            "v1": {"version": v1.version, "sha256": v1.sha256, "deployment": v1.deployment_id},
            "v2": {"version": v2.version, "sha256": v2.sha256, "deployment": v2.deployment_id},
            "readout": {"verdict": readout.get("verdict")},
            "analytics": analytics,
        }

    # -- 1. the cloud ----------------------------------------------------------------------

    def start_cloud(self) -> None:
        cloud_home = self.home / "cloud"
        made = init_registry(RegistryConfig.from_env(cloud_home, env={}))
        self.trusted_root = made.trusted_root.read_bytes()
        child = self.processes.start(
            "cloud", "cloud", "serve", "--home", str(cloud_home), "--port", "0",
            "--workers", "1", serves=True,
        )  # fmt: skip
        self.url = child.base_url
        self.tokens["admin"] = made.admin_token
        with CloudClient(self.url, made.admin_token) as admin:
            for role, name in (("publisher", "ml-team"), ("viewer", "analyst")):
                self.tokens[role] = admin.json(
                    "POST", "/v1/tokens", json={"name": name, "role": role}
                )["token"]
        self.say(f"   {self.url} (root key kept apart in {made.root_key})")

    # -- 2, 3, 6. releases -------------------------------------------------------------------

    def release(self, number: int, days: int, salt: str | None = None) -> Any:
        from storecast.pipeline import Callbacks, GateFailed, PipelineConfig, run_pipeline

        deploy: dict[str, Any] = {
            "strategy": "canary",
            "control": "production",
            "promote_alias": "production",
            # The demo reads the arms out; the controller must not promote them meanwhile.
            "steps": [
                {"percent": 50, "min_duration_s": 86_400, "min_forecast_hours": 1000},
                {"percent": 100},
            ],
        }
        if salt is not None:
            deploy["salt"] = salt
        config = PipelineConfig.from_dict(
            {
                "data": {"synthetic": {"stores": self.plan.chain_stores, "days": days, "seed": 7}},
                "train": {"quick": True, **self.plan.train},
                "model": {"name": MODEL},
                "gate": {"min_improvement_vs_snaive": 0.0, "max_regression_vs_production": 0.02},
                "registry": {"url": self.url},
                "deploy": deploy,
                "output": {"dir": str(self.home / f"pipeline-v{number}")},
            }
        )

        def on_step(name: str, what: str) -> None:
            self.say(f"   {name}: {what}")

        try:
            result = run_pipeline(
                config,
                registry_url=self.url,
                token=self.tokens["publisher"],
                callbacks=Callbacks(on_step=on_step),
            )
        except GateFailed as exc:
            raise ConfigError(f"the quality gate refused v{number}: {exc}") from exc
        self.console.print(
            metrics_table(result.metrics, title=f"v{result.version} on the hold-out")
        )
        return result

    # -- 4, 5. devices -----------------------------------------------------------------------

    def start_devices(self) -> None:
        # Simulated time runs an hour a second but must never pass the wall clock (the
        # agents refuse readings from the future): the sensors start far enough back.
        start = hour_floor(SystemClock().now()) - timedelta(
            hours=BACKFILL_HOURS + self.plan.live_hours
        )
        self.live_start = start + timedelta(hours=BACKFILL_HOURS)
        with CloudClient(self.url, self.tokens["admin"]) as admin:
            for n in range(self.plan.stores):
                store = f"S{n + 1:03d}"
                device_id = f"edge-{store}"
                enrolled = admin.json(
                    "POST", "/v1/devices",
                    json={"device_id": device_id, "store_id": store, "region": REGIONS[n % 4]},
                )  # fmt: skip
                home = self.home / "devices" / device_id
                init_home(
                    home, device_id=device_id, store_id=store, registry_url=self.url,
                    analytics_url=self.url, token=enrolled["token"],
                    trusted_root=self.trusted_root,
                    settings={"poll_interval_s": 1.0, "port": 0, "heartbeat_interval_s": 10.0,
                              "inference_window_s": 5.0, "upload_interval_s": 1.0},
                )  # fmt: skip
                self.devices.append(_Device(store, device_id, enrolled["token"], home))
        for device in self.devices:
            device.agent = self.processes.start(
                f"agent-{device.store_id}", "edge", "run", "--home", str(device.home), serves=True
            )
        for device in self.devices:
            wait_for(lambda d=device: self.active_version(d) == 1, f"{device.device_id} to load v1")  # type: ignore[misc]
        self.say(
            "   every agent polled its assignment, fetched v1 through TUF (signatures, "
            "freshness, length, sha256), checked its members, smoke-tested and activated it"
        )
        for device in self.devices:
            self.processes.start(
                f"sensors-{device.store_id}", "sim", "sensors", "--device", device.url,
                "--store-id", device.store_id, "--speed", str(self.plan.speed),
                "--stores", str(self.plan.chain_stores), "--seed", "7",
                "--start", start.strftime("%Y-%m-%dT%H"),
                "--backfill-hours", str(BACKFILL_HOURS),
                "--hours", str(BACKFILL_HOURS + self.plan.live_hours),
            )  # fmt: skip
        self.say(
            f"   sensor simulators: {BACKFILL_HOURS} h of history at once, then "
            f"{self.plan.speed:g} simulated seconds per second"
        )
        for device in self.devices:
            wait_for(
                lambda d=device: self.status(d).get("history_hours", 0) >= BACKFILL_HOURS - 1,  # type: ignore[misc]
                f"{device.device_id} to take its backfill",
            )
        self._poller = threading.Thread(target=self._ask_forecasts, daemon=True)
        self._poller.start()

    def _ask_forecasts(self) -> None:
        """The stores' own systems asking their device for forecasts, a few times a second."""
        with httpx.Client(timeout=5) as http:
            while not self._poll_stop.is_set():
                for device in self.devices:
                    try:
                        ok = http.get(f"{device.url}/v1/forecast").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    device.served += ok
                    device.failed += not ok
                self._poll_stop.wait(0.25)

    def stop_client(self) -> None:
        self._poll_stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)

    def stop_devices(self) -> None:
        """Stop the simulators, then the agents (each uploads what it still holds)."""
        self.stop_client()
        for child in reversed(self.processes.children):
            if child.name.startswith(("sensors-", "agent-")):
                self.processes.stop(child)

    def count_events(self) -> tuple[int, int]:
        """Events the (stopped) agents created, and the events the cloud ingested from them."""
        created = sum(events_created(d.home) for d in self.devices)
        database = self.home / "cloud" / "registry.db"
        with sqlite3.connect(database) as conn:
            marks = ",".join("?" * len(self.devices))
            row = conn.execute(
                "SELECT COUNT(*) FROM telemetry_events e JOIN telemetry_batches b "
                f"ON e.batch_id = b.id WHERE b.device_id IN ({marks})",
                [d.device_id for d in self.devices],
            ).fetchone()
        return created, int(row[0])

    def status(self, device: _Device) -> dict[str, Any]:
        try:
            return dict(httpx.get(f"{device.url}/v1/status", timeout=5).json())
        except (httpx.HTTPError, ValueError):
            return {}

    def active_version(self, device: _Device) -> int | None:
        model = self.status(device).get("model")
        return int(model["version"]) if model else None

    def sim_now(self) -> datetime:
        origins = [self.status(d).get("origin") for d in self.devices]
        return min(datetime.fromisoformat(o) for o in origins if o)

    def watch(self, seconds: float, title: str) -> None:
        """A live table of the devices for ``seconds``."""
        with Live(self._table(title), console=self.console, refresh_per_second=4) as live:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.5)
                live.update(self._table(title))
        self.console.print()

    def _table(self, title: str) -> Table:
        table = Table(title=title)
        for column in ("store", "model", "forecast from", "next hour q50", "served", "outbox"):
            table.add_column(column, justify="left" if column == "store" else "right")
        for device in self.devices:
            status = self.status(device)
            model = status.get("model")
            table.add_row(
                device.store_id,
                f"v{model['version']}" if model else "-",
                str(status.get("origin", "-"))[:16].replace("T", " "),
                self._next_q50(device),
                str(device.served),
                str(status.get("outbox_depth", "-")),
            )
        return table

    def _next_q50(self, device: _Device) -> str:
        try:
            body = httpx.get(f"{device.url}/v1/forecast", params={"horizon": 1}, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return "-"
        return f"{body['points'][0]['q50']:.0f} ({body['method']})"

    # -- 6. the canary -----------------------------------------------------------------------

    def balanced_salt(self) -> str:
        """A deployment salt that puts exactly half of the demo's stores in each arm."""
        stores = [d.store_id for d in self.devices]
        for n in range(10_000):
            salt = f"demo-{n}"
            in_b = sum(arm_for(salt, s, [("A", 50.0), ("B", 50.0)]) == "B" for s in stores)
            if in_b == len(stores) // 2:
                return salt
        raise ConfigError("no salt splits the demo's stores in half")

    def readout(self, deployment: int, since: datetime) -> dict[str, Any]:
        until = self.sim_now() + timedelta(hours=1)
        with CloudClient(self.url, self.tokens["viewer"]) as viewer:
            readout: dict[str, Any] = viewer.json(
                "GET", f"/v1/deployments/{deployment}/readout",
                params={"since": since.isoformat(), "until": until.isoformat()},
            )  # fmt: skip
        table = Table(
            title=f"readout of deployment {deployment} (simulated hours since the canary)"
        )
        for column in ("arm", "version", "stores", "forecast-hours", "WAPE", "bias", "coverage"):
            table.add_column(column, justify="right")
        for arm in readout["arms"]:
            table.add_row(
                arm["arm"], f"v{arm.get('version')}", str(arm.get("stores")),
                str(arm.get("forecast_hours")), _pct(arm.get("wape")), _pct(arm.get("bias")),
                _pct(arm.get("coverage")),
            )  # fmt: skip
        self.console.print(table)
        diff = readout.get("difference")
        if diff:
            self.say(
                f"   WAPE B − A = {diff['estimate']:+.1%} (95% CI {diff['low']:+.1%} .. "
                f"{diff['high']:+.1%}): verdict {readout.get('verdict')}"
            )
        else:
            self.say(f"   verdict: {readout.get('verdict')} (too few store-hours for an interval)")
        return readout

    # -- 7. analytics ------------------------------------------------------------------------

    def analytics(self) -> dict[str, Any]:
        # Two clocks: sales, forecasts and actuals carry simulated hours (behind the wall
        # clock), request counts and latencies the devices' wall clock. Accuracy is read
        # over the simulated window, serving figures over the last day of wall time.
        end = self.sim_now() + timedelta(hours=1)
        window = {"start": self.live_start.isoformat(), "end": end.isoformat()}
        hours = max(1, int((end - self.live_start).total_seconds() // 3600))
        with CloudClient(self.url, self.tokens["viewer"]) as viewer:
            accuracy = viewer.json("GET", "/v1/analytics/stores", params=window)
            serving = viewer.json("GET", "/v1/analytics/stores")
            models_acc = viewer.json(
                "GET", "/v1/analytics/models", params={"model_name": MODEL, **window}
            )
            models_now = viewer.json("GET", "/v1/analytics/models", params={"model_name": MODEL})
            fleet = viewer.json("GET", "/v1/analytics/fleet")
            fleet_sales = viewer.json(
                "GET", "/v1/analytics/fleet", params={"at": end.isoformat(), "window_hours": hours}
            )
            usage = viewer.json("GET", "/v1/analytics/usage/forecasts")
        served = {row["store_id"]: row["forecasts_served"] for row in serving["stores"]}
        table = Table(title=f"per-store forecast accuracy ({hours} simulated hours, live)")
        for column in ("store", "status", "model", "WAPE", "bias", "forecasts served"):
            table.add_column(column, justify="right")
        for row in accuracy["stores"]:
            acc = row["accuracy"]
            table.add_row(
                row["store_id"], row["status"], f"v{row['model_version']}", _pct(acc.get("wape")),
                _pct(acc.get("bias")), str(served.get(row["store_id"], 0)),
            )  # fmt: skip
        self.console.print(table)
        now_by_version = {v["model_version"]: v for v in models_now["versions"]}
        table = Table(title="model performance by version and A/B arm")
        for column in ("version", "arm", "WAPE", "forecasts", "devices", "p95 ms", "errors"):
            table.add_column(column, justify="right")
        for v in models_acc["versions"]:
            now = now_by_version.get(v["model_version"], {})
            table.add_row(
                f"v{v['model_version']}", str(v.get("arm") or "-"), _pct(v["accuracy"].get("wape")),
                str(now.get("forecasts_served", 0)), str(v.get("devices")),
                _num((now.get("latency") or {}).get("p95_ms")), _pct(now.get("error_rate")),
            )  # fmt: skip
        self.console.print(table)
        devices = fleet["devices"]
        self.say(
            f"   fleet: {devices['online']}/{devices['total']} devices online, "
            f"{fleet['forecasts_served']:,} forecasts served, error rate "
            f"{_pct(fleet['error_rate'])}, p95 {_num(fleet['latency'].get('p95_ms'))} ms, "
            f"chain WAPE {_pct(fleet_sales['sales'].get('wape'))}, telemetry backlog "
            f"{fleet['telemetry'].get('backlog')}"
        )
        self.say(
            f"   usage log: {len(usage['rows'])} store-day rows of forecasts served "
            f"(/v1/analytics/usage/forecasts?format=csv exports them)"
        )
        self.say(
            f"   dashboard: {self.url}/dashboard  (sign in with the viewer token "
            f"{self.tokens['viewer']})"
        )
        return {
            "window": window,
            "stores": len(accuracy["stores"]),
            "versions": {str(v["model_version"]): v.get("arm") for v in models_acc["versions"]},
            "forecasts_served": fleet["forecasts_served"],
        }


def events_created(device_home: Path) -> int:
    """Telemetry events an agent ever queued (its outbox's last sequence number)."""
    with sqlite3.connect(device_home / "agent.db") as conn:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row else 0


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"
