"""Shared fixtures: a small synthetic chain and one quickly trained model per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from storecast.forecasting.synthetic import ChainConfig

# Big enough for a 4-week hold-out, a 2-week validation span and some training.
TINY_CHAIN = ChainConfig(stores=4, days=70, seed=3)


@pytest.fixture(scope="session")
def tiny_chain_config() -> ChainConfig:
    return TINY_CHAIN


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick model trained on the tiny chain (shared, read-only)."""
    from storecast.forecasting.training import TrainConfig
    from storecast.forecasting.workflow import synthetic_source, train_and_evaluate

    out = tmp_path_factory.mktemp("model") / "lstm_v1.pt"
    config = TrainConfig(max_epochs=12, steps_per_epoch=10, batch_size=64, max_seconds=None)
    train_and_evaluate(synthetic_source(TINY_CHAIN), out, quick=True, train_config=config)
    return out


# -- databases ------------------------------------------------------------------------------

POSTGRES_ADMIN_URL = os.environ.get(
    "STORECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres_reachable() -> str | None:
    """None when the test PostgreSQL server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means "not here"
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    why_not = _postgres_reachable()
    if why_not is None:
        return True
    if os.environ.get("STORECAST_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (STORECAST_REQUIRE_POSTGRES=1) but {why_not}")
    return False


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"storecast_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool
) -> Iterator[str]:
    """A fresh empty database: SQLite in a temp folder, and PostgreSQL when it is here."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    if not postgres_available:
        pytest.skip("PostgreSQL is not reachable (set STORECAST_REQUIRE_POSTGRES=1 to fail)")
    with postgres_database() as url:
        yield url
