"""`storecast demo --quick` end to end, checked from the APIs and the files it leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from storecast._process import server_process


@pytest.mark.slow
def test_the_quick_demo_runs_the_whole_platform_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    home = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "storecast", "demo", "--quick", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "demo complete" in run.stdout
    # No process it started is left: cloud, agents, simulators.
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if any(str(home) in part for part in p.info["cmdline"] or [])
    ]
    assert leftovers == []

    summary = json.loads((home / "demo-summary.json").read_text())
    # What the agents created is what the cloud holds: none lost, none twice.
    assert summary["events"]["created"] == summary["events"]["ingested"] > 0
    assert summary["analytics"]["forecasts_served"] > 0  # the stores asked their devices
    arms = summary["arms"]
    assert sorted(arms.values()) == ["A", "A", "B", "B"]

    serve = ("cloud", "serve", "--home", str(home / "cloud"), "--port", "0", "--workers", "1")
    with server_process(*serve) as url:
        viewer = {"Authorization": f"Bearer {summary['viewer_token']}"}
        with httpx.Client(base_url=url, headers=viewer, timeout=30) as http:
            events = http.get("/v1/analytics/model-events", params={"limit": 1000}).json()
            activated = {
                (e["store_id"], e["model_version"])
                for e in events["events"]
                if e["action"] == "activated"
            }
            # Every device activated v1; the B arm's devices activated v2, A's did not.
            assert {store for store, version in activated if version == 1} == set(arms)
            in_b = {store for store, arm in arms.items() if arm == "B"}
            assert {store for store, version in activated if version == 2} == in_b
            # Analytics has accuracy per arm over the simulated hours.
            models = http.get(
                "/v1/analytics/models",
                params={"model_name": "demand-lstm", **summary["analytics"]["window"]},
            ).json()
            by_arm = {v["arm"]: v for v in models["versions"]}
            assert set(by_arm) == {"A", "B"}
            assert all(v["accuracy"]["wape"] is not None for v in by_arm.values())
            # The dashboard answers (its sign-in page).
            page = httpx.get(f"{url}/dashboard", timeout=30, follow_redirects=True)
            assert page.status_code == 200 and "storecast" in page.text.lower()
