"""The command line end to end, as a user runs it (a real process each time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import storecast


def storecast_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storecast", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_version_and_help():
    out = storecast_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"storecast {storecast.__version__}"
    helptext = storecast_cli("--help").stdout
    for command in ("train", "evaluate", "export", "package", "bundle", "sim", "demo"):
        assert command in helptext


def test_sim_history_writes_the_schema(tmp_path):
    out = tmp_path / "h.csv"
    run = storecast_cli(
        "sim", "history", "--stores", "2", "--days", "3", "--seed", "5", "--out", out
    )
    assert run.returncode == 0, run.stderr
    header, *rows = out.read_text().splitlines()
    assert header.split(",")[:8] == [
        "ts",
        "store_id",
        "sales_units",
        "footfall",
        "temperature_c",
        "precip_mm",
        "is_holiday",
        "promo",
    ]
    assert len(rows) == 2 * 3 * 24
    assert rows[0].startswith("2024-01-01T00:00:00Z,S001,0,")


@pytest.mark.slow
def test_train_quick_then_evaluate_and_export_through_the_cli(tmp_path):
    data = tmp_path / "history.csv"
    assert (
        storecast_cli(
            "sim", "history", "--stores", "3", "--days", "70", "--seed", "2", "--out", data
        ).returncode
        == 0
    )
    model = tmp_path / "lstm_v1.pt"
    run = storecast_cli("train", "--data", data, "--quick", "--out", model)
    assert run.returncode == 0, run.stderr
    assert "Hold-out backtest" in run.stdout and "seasonal naive 168h" in run.stdout
    metrics = json.loads((tmp_path / "lstm_v1.metrics.json").read_text())
    assert metrics["wape"]["oracle"] is not None  # sim history carries its oracle
    assert metrics["data"]["source"] == str(data)

    report = tmp_path / "eval.json"
    run = storecast_cli("evaluate", model, "--data", data, "--out", report)
    assert run.returncode == 0, run.stderr
    evaluated = json.loads(report.read_text())
    assert evaluated["backtest"]["origins"] >= 3
    assert evaluated["wape"]["lstm"] == pytest.approx(metrics["wape"]["lstm"], rel=0.05)

    run = storecast_cli("export", model)
    assert run.returncode == 0, run.stderr
    run = storecast_cli("evaluate", model)  # trained on a file: evaluating needs the file
    assert run.returncode == 2 and "--data" in run.stderr
    assert (tmp_path / "lstm_v1.onnx").stat().st_size > 10_000


@pytest.mark.slow
def test_train_on_a_synthetic_chain_and_evaluate_it_without_data(tmp_path):
    model = tmp_path / "m.pt"
    run = storecast_cli(
        "train", "--stores", "2", "--days", "70", "--seed", "4", "--quick", "--out", model
    )
    assert run.returncode == 0, run.stderr
    run = storecast_cli("evaluate", model)  # regenerates the chain the model trained on
    assert run.returncode == 0, run.stderr
    assert "oracle (floor)" in run.stdout


def test_bad_data_exits_2_with_the_loader_message(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,store_id,sales_units\n2025-01-01T00:00:00Z,A,-3\n")
    run = storecast_cli("train", "--data", bad, "--quick", "--out", tmp_path / "m.pt")
    assert run.returncode == 2
    assert "column 'sales_units': 1 negative value(s): line 2" in run.stderr
    assert not (tmp_path / "m.pt").exists()


def test_bad_arguments_exit_2(tmp_path):
    data = tmp_path / "h.csv"
    data.write_text("ts,store_id,sales_units\n")
    run = storecast_cli("train", "--data", data, "--stores", "3", "--out", tmp_path / "m.pt")
    assert run.returncode == 2 and "not both" in run.stderr
    run = storecast_cli("train", "--stores", "2", "--days", "70", "--out", tmp_path / "m.bin")
    assert run.returncode == 2 and "must end in .pt" in run.stderr
    run = storecast_cli("sim", "history", "--stores", "0", "--out", tmp_path / "x.csv")
    assert run.returncode == 2
    run = storecast_cli("sim", "history", "--stores", "1", "--days", "1", "--out", tmp_path)
    assert run.returncode == 2 and f"{tmp_path}: Is a directory" in run.stderr


def test_evaluating_a_file_that_is_not_a_checkpoint_exits_2(tmp_path):
    fake = tmp_path / "fake.pt"
    fake.write_text("hello")
    run = storecast_cli("evaluate", fake)
    assert run.returncode == 2 and "not a loadable checkpoint" in run.stderr
    run = storecast_cli("export", tmp_path / "absent.pt")
    assert run.returncode == 2 and "no such checkpoint" in run.stderr


@pytest.mark.slow
def test_ctrl_c_stops_training_cleanly_and_keeps_the_best_checkpoint(tmp_path):
    import signal
    import time

    model = tmp_path / "m.pt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storecast",
            "train",
            "--stores",
            "3",
            "--days",
            "90",
            "--out",
            str(model),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not model.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # polling for the first checkpoint, with a deadline
    assert model.exists(), "no checkpoint was written before the deadline"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "kept the best checkpoint so far" in out
    from storecast.forecasting.checkpoint import load_checkpoint

    assert load_checkpoint(model).meta["best_epoch"] >= 1
    assert not (tmp_path / "m.metrics.json").exists()


@pytest.mark.slow
def test_package_and_verify_a_bundle_through_the_cli(trained_checkpoint, tmp_path):
    run = storecast_cli(
        "package", trained_checkpoint, "--name", "demand-lstm", "--version", "3", "--out", tmp_path
    )
    assert run.returncode == 0, run.stderr
    bundle = tmp_path / "demand-lstm-v3.tar"
    run = storecast_cli("bundle", "verify", bundle)
    assert run.returncode == 0, run.stderr
    assert "demand-lstm v3" in run.stdout and "OK" in run.stdout

    from storecast.bundle import read_members
    from storecast.bundle.archive import write_tar

    members = read_members(bundle)
    onnx = bytearray(members["model.onnx"])
    onnx[len(onnx) // 2] ^= 0xFF  # one flipped bit pattern inside model.onnx
    tampered = write_tar({**members, "model.onnx": bytes(onnx)}, tmp_path / "tampered.tar")
    run = storecast_cli("bundle", "verify", tampered)
    assert run.returncode == 2 and "sha256" in run.stderr

    run = storecast_cli("package", trained_checkpoint, "--name", "Bad Name", "--out", tmp_path)
    assert run.returncode == 2 and "model name" in run.stderr
