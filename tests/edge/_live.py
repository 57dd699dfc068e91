"""A live rig for agent tests: a real cloud, a device enrolled in it, and agent processes.

``EdgeRig`` publishes and deploys real bundles through the registry API, initialises a
device home with ``init_home`` and starts ``storecast edge run --port 0`` as a child
process in which ``import torch`` fails (the agent must run where torch is not installed).
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from storecast._process import announced_url, launch
from storecast.client import CloudClient
from storecast.edge.config import init_home
from storecast.forecasting.synthetic import ChainConfig, generate_chain
from storecast.sim.sensors import SensorStream
from tests.registry.conftest import LiveRegistry

MODEL = "demand-lstm"
# Run the CLI with torch made unimportable: any `import torch` raises ImportError.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; "
    "from storecast.cli import main; sys.argv[0] = 'storecast'; main()"
)


@dataclass
class AgentProcess:
    """A running ``storecast edge run`` child process."""

    url: str
    proc: subprocess.Popen[str]
    log: Any

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)

    def output(self) -> str:
        self.log.seek(0)
        return str(self.log.read())


@dataclass
class EdgeRig:
    """A cloud, a publisher, one enrolled device and its home."""

    cloud: LiveRegistry
    home: Path
    device_id: str = "edge-S001"
    store_id: str = "S001"
    device_token: str = ""
    admin_token: str = ""  # the agent's local admin token
    published: dict[int, str] = field(default_factory=dict)  # version -> sha256
    _publisher: str = ""

    def setup(self, poll_interval_s: float = 0.2, **settings: Any) -> EdgeRig:
        self._publisher = self.cloud.token("publisher")
        self.device_token = self.cloud.enrol(self.device_id, self.store_id)
        _, self.admin_token = init_home(
            self.home,
            device_id=self.device_id,
            store_id=self.store_id,
            registry_url=self.cloud.url,
            analytics_url=self.cloud.url,
            token=self.device_token,
            trusted_root=self.cloud.init.trusted_root.read_bytes(),
            settings={"poll_interval_s": poll_interval_s, "port": 0, **settings},
        )
        return self

    def publisher(self) -> CloudClient:
        return CloudClient(self.cloud.url, self._publisher)

    def publish(self, bundle: bytes) -> dict[str, Any]:
        with self.publisher() as client:
            response = client.json(
                "POST", "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
            )
        self.published[int(response["version"])] = str(response["sha256"])
        return dict(response)

    def deploy(self, version: int) -> dict[str, Any]:
        with self.publisher() as client:
            return dict(
                client.json("POST", "/v1/deployments", json={"model": MODEL, "version": version})
            )

    @contextmanager
    def agent(self, *extra: str) -> Iterator[AgentProcess]:
        """``storecast edge run`` on port 0; SIGINT (then SIGKILL) when the block ends."""
        running = start_agent(self.home, *extra)
        try:
            yield running
        finally:
            stop_agent(running)


def start_agent(home: Path, *extra: str, timeout_s: float = 30) -> AgentProcess:
    """Start the agent and wait for its ``/readyz``."""
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  # closed with the AgentProcess
    args = ["edge", "run", "--home", str(home), "--port", "0", *extra]
    proc = launch(args, log, interpreter_args=("-c", NO_TORCH))
    running = AgentProcess(announced_url(proc, log, "the agent"), proc, log)
    wait_until(lambda: _ready(running), timeout_s, "the agent to be ready")
    return running


def _ready(running: AgentProcess) -> bool:
    if running.proc.poll() is not None:
        raise AssertionError(f"the agent exited: {running.output()[-3000:]}")
    try:
        return running.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def stop_agent(running: AgentProcess, timeout_s: float = 20) -> int:
    proc = running.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
    running.log.close()
    return proc.returncode


def kill_agent(running: AgentProcess) -> None:
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait()
    if running.proc.stdout:
        running.proc.stdout.close()
    running.log.close()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it is true (AssertionError naming ``what`` at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def active_version(running: AgentProcess) -> int | None:
    active = running.get("/v1/model").json()["active"]
    return None if active is None else int(active["version"])


def backfill(url: str, hours: int, store_id: str = "S001", *, days: int = 30) -> datetime:
    """Post ``hours`` hours of a synthetic store's readings; return the next origin hour."""
    start = (datetime.now(UTC) - timedelta(days=days - 1)).replace(
        minute=0, second=0, microsecond=0
    )
    chain = generate_chain(ChainConfig(stores=2, days=days, seed=7, start=start.date().isoformat()))
    stream = SensorStream(chain, store_id, start_hour=start)
    batch: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        for n, (_, readings) in enumerate(stream.steps()):
            batch.extend(readings)
            if len(batch) >= 2000 or n + 1 == hours * 12:
                client.post(f"{url}/v1/readings", json={"readings": batch}).raise_for_status()
                batch = []
            if n + 1 == hours * 12:
                break
    return start + timedelta(hours=hours)


def cloud_model_events(cloud: LiveRegistry, device_id: str) -> list[tuple[str, int]]:
    """(action, version) of the device's model events the cloud has ingested, oldest first."""
    with cloud.client(cloud.token("viewer")) as http:
        response = http.get("/v1/analytics/model-events", params={"limit": 10000})
        response.raise_for_status()
    events = [e for e in response.json()["events"] if e["device_id"] == device_id]
    return [(e["action"], int(e["model_version"])) for e in reversed(events)]
