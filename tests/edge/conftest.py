"""Edge fixtures: the agent's SQLite file, a live cloud, and an address nobody answers on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from storecast.edge.localdb import LocalDB

# The live cloud (registry + analytics on port 0) of the analytics tests; importing the
# fixtures registers them here (``pytest_plugins`` is only allowed in the root conftest).
from tests.analytics.conftest import cloud, cloud_home

__all__ = ["agent_db", "closed_url", "cloud", "cloud_home"]


@pytest.fixture
def agent_db(tmp_path: Path) -> Iterator[LocalDB]:
    """A fresh agent database file (``<home>/agent.db``)."""
    db = LocalDB(tmp_path / "edge" / "agent.db")
    yield db
    db.close()


@pytest.fixture
def closed_url() -> Iterator[str]:
    """An http URL on 127.0.0.1 whose port is bound but never listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- model store, runtime and smoke tests (tests/edge/_bundles.py) --------------------------

from tests.edge._bundles import MODEL_NAME, EdgeBundles, rebuild  # noqa: E402


@pytest.fixture(scope="session")
def modelstore_bundles(
    trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> EdgeBundles:
    """Real bundles (ONNX export, parity check) of the session's model: v1, v2 and v3."""
    from storecast.bundle.packaging import build_bundle
    from storecast.forecasting.features import FeatureSpec

    built = build_bundle(
        trained_checkpoint, name=MODEL_NAME, version=1, out_dir=tmp_path_factory.mktemp("edge")
    )
    v1 = built.path.read_bytes()
    spec = FeatureSpec.from_dict(built.bundle.metadata.features)
    return EdgeBundles(v1=v1, v2=rebuild(v1, version=2), v3=rebuild(v1, version=3), spec=spec)
