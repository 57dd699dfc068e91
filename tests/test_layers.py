"""Layering rules a reader of DESIGN.md relies on."""

import subprocess
import sys

import storecast.forecasting


def imported_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_feature_code_onnx_runtime_and_bundles_never_import_torch():
    # An edge device builds inputs with the training feature code, runs ONNX Runtime and
    # verifies bundles; none of it may pull in torch.
    mods = imported_modules(
        "import storecast.forecasting, storecast.forecasting.runtime, storecast.cli, "
        "storecast.bundle"
    )
    assert "torch" not in mods
    assert "pandas" not in mods


def test_forecasting_exports():
    assert set(storecast.forecasting.__all__) == {
        "ChainConfig",
        "FeatureSpec",
        "Oracle",
        "StoreHistory",
        "SyntheticChain",
        "WindowBuilder",
        "Windows",
        "backtest_origins",
        "decode",
        "generate_chain",
        "run_backtest",
    }


def test_registry_and_cloud_never_import_torch_or_pandas():
    # The cloud services validate bundles without the training stack.
    mods = imported_modules("import storecast.registry, storecast.cloud")
    assert "torch" not in mods
    assert "pandas" not in mods


def test_device_side_code_never_imports_cloud_code():
    # A device talks to the registry over HTTP only: no registry, SQLAlchemy or gunicorn.
    mods = imported_modules("import storecast.common.tuf_client, storecast.client")
    assert not any(m.startswith("storecast.registry") for m in mods)
    assert "sqlalchemy" not in mods
    assert "gunicorn" not in mods


def test_analytics_never_imports_registry_code_or_the_training_stack():
    # Registry and analytics are siblings over one database: analytics reads the few
    # registry tables it needs (devices, deployments) by name, never through its code.
    mods = imported_modules(
        "import storecast.analytics.app, storecast.analytics.api, storecast.analytics.ingest, "
        "storecast.analytics.dashboard, storecast.analytics.rootcause"
    )
    assert not any(m.startswith("storecast.registry") for m in mods)
    assert "torch" not in mods
    assert "pandas" not in mods


def test_the_event_schema_and_simulator_stay_light_for_devices():
    # The edge agent and the simulators build events with the schema module alone.
    mods = imported_modules("import storecast.common.telemetry, storecast.sim.telemetry")
    assert not any(m.startswith(("storecast.registry", "storecast.analytics")) for m in mods)
    assert "sqlalchemy" not in mods
    assert "torch" not in mods


def test_the_edge_agent_runs_on_the_core_install_alone():
    # A store's device has no torch, no cloud extra and no registry or analytics code: it
    # talks to them over HTTP like any device would.
    mods = imported_modules(
        "import storecast.edge.agent, storecast.edge.api, storecast.edge.serve, "
        "storecast.cli.edge, storecast.sim.sensors"
    )
    assert not any(m.startswith(("storecast.registry", "storecast.analytics")) for m in mods)
    assert not {"storecast.common.cloud", "storecast.common.db"} & mods
    for heavy in ("torch", "sqlalchemy", "alembic", "gunicorn", "psycopg", "pandas", "orjson"):
        assert heavy not in mods, heavy
