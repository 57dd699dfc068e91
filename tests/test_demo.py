import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_trains_exports_and_evaluates(tmp_path):
    home = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "storecast", "demo", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert "demo complete" in run.stdout
    metrics = json.loads((home / "lstm_v1.metrics.json").read_text())
    assert metrics["wape"]["lstm"] < metrics["wape"]["snaive_168"]
    assert (home / "history.csv").exists()
    from storecast.bundle import verify_bundle

    bundle = verify_bundle(home / "dist" / "demand-lstm-v1.tar")
    assert bundle.metadata.metrics == metrics
    # A real edge agent fetched the published bundle through TUF and runs it: the active
    # model on the device is the packaged bundle, and it forecast with it.
    device = home / "devices" / "edge-S001"
    active = json.loads((device / "models" / "pointers.json").read_text())["active"]
    installed = json.loads((device / "models" / "versions" / active / "bundle.json").read_text())
    assert installed["digest"] == bundle.sha256
    text = " ".join(run.stdout.split())  # rich wraps long lines
    assert "(model, v1)" in text
    assert "telemetry outbox drained to the cloud (last upload ok: True)" in text
    assert "intact: True" in run.stdout
    # A simulated fleet reported telemetry; the planted bad version is the top root cause.
    assert "ingested" in run.stdout and "exactly once (0 rejected)" in run.stdout
    assert "root cause of the error-rate rise: model_version = demand-lstm:v3" in run.stdout
