"""Registry fixtures: real bundles, a fresh registry home, and a live server on port 0."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from flask import Flask
from werkzeug.serving import make_server

from storecast.bundle import read_members
from storecast.bundle.archive import write_tar
from storecast.common.cloud import Database
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import Initialised, init_registry

MakeBundle = Callable[..., bytes]


@pytest.fixture(scope="session")
def bundle_v1(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real bundle (ONNX export and parity check) of the session's trained model."""
    from storecast.bundle.packaging import build_bundle

    built = build_bundle(
        trained_checkpoint, name="demand-lstm", version=1, out_dir=tmp_path_factory.mktemp("dist")
    )
    return built.path.read_bytes()


@pytest.fixture(scope="session")
def make_bundle(bundle_v1: bytes, tmp_path_factory: pytest.TempPathFactory) -> MakeBundle:
    """Bundles of other names and versions: the same model, metadata re-stamped."""
    members = read_members(bundle_v1)
    out_dir = tmp_path_factory.mktemp("rebundled")

    def make(version: int = 1, name: str = "demand-lstm") -> bytes:
        meta = json.loads(members["metadata.json"])
        meta["version"], meta["name"] = version, name
        changed = {
            **members,
            "metadata.json": json.dumps(meta, sort_keys=True, indent=2).encode() + b"\n",
        }
        return write_tar(changed, out_dir / f"{name}-{version}.tar").read_bytes()

    return make


@dataclass
class LiveRegistry:
    """A registry served by a real HTTP server on an ephemeral port."""

    url: str
    config: RegistryConfig
    init: Initialised
    app: Flask

    @property
    def database(self) -> Database:
        """The app's database (its engine, sessions and clock)."""
        found = self.app.extensions["storecast.database"]
        assert isinstance(found, Database)
        return found

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @property
    def admin(self) -> str:
        return self.init.admin_token

    def token(self, role: str, name: str | None = None) -> str:
        with self.client(self.admin) as http:
            response = http.post("/v1/tokens", json={"name": name or role, "role": role})
            response.raise_for_status()
            return str(response.json()["token"])

    def enrol(
        self, device_id: str, store_id: str, region: str = "north", tags: list[str] | None = None
    ) -> str:
        with self.client(self.admin) as http:
            response = http.post(
                "/v1/devices",
                json={
                    "device_id": device_id,
                    "store_id": store_id,
                    "region": region,
                    "tags": tags or [],
                },
            )
            response.raise_for_status()
            return str(response.json()["token"])


@contextmanager
def serve_registry(config: RegistryConfig, init: Initialised) -> Iterator[LiveRegistry]:
    """Serve ``create_app(config)`` on 127.0.0.1, port 0, in a background thread."""
    from storecast.cloud import create_app

    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveRegistry(f"http://127.0.0.1:{server.server_port}", config, init, app)
    try:
        yield live
    finally:
        server.shutdown()
        thread.join(timeout=10)
        live.database.engine.dispose()


def registry_config(home: Path, database_url: str, **overrides: object) -> RegistryConfig:
    return RegistryConfig(home=home, database_url=database_url, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def registry_home(tmp_path: Path, database_url: str) -> tuple[RegistryConfig, Initialised]:
    """A freshly initialised registry (SQLite and PostgreSQL)."""
    config = registry_config(tmp_path / "registry", database_url)
    return config, init_registry(config)


@pytest.fixture
def live(registry_home: tuple[RegistryConfig, Initialised]) -> Iterator[LiveRegistry]:
    """A live registry on an ephemeral port, on each database backend."""
    with serve_registry(*registry_home) as running:
        yield running
