"""The agent as a real process against a live cloud: updates, rejections, forecasts, rollback."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from storecast.client import ApiRefused
from tests.edge._bundles import EdgeBundles
from tests.edge._live import EdgeRig, active_version, backfill, cloud_model_events, wait_until
from tests.registry.conftest import LiveRegistry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def rig(cloud: LiveRegistry, tmp_path: Path) -> EdgeRig:
    return EdgeRig(cloud, tmp_path / "device").setup()


def _last_update(url: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/v1/model", timeout=10).json()["last_update"] or {})


def test_publish_v2_activates_it_and_a_local_rollback_holds_until_the_assignment_changes(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.deploy(1)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        rig.publish(modelstore_bundles.v2)
        rig.deploy(2)
        wait_until(lambda: active_version(agent) == 2, 30, "v2 to be active")
        model = agent.get("/v1/model").json()
        assert model["active"]["runtime"] == "onnxruntime"
        assert model["active"]["digest"] == rig.published[2]
        assert model["previous"] is not None and "v1" in model["previous"]
        assert _last_update(agent.url)["outcome"] in ("activated", "unchanged")

        refused = httpx.post(f"{agent.url}/v1/model/rollback", timeout=10)
        assert refused.status_code == 401
        wrong = httpx.post(
            f"{agent.url}/v1/model/rollback", headers={"Authorization": "Bearer nope"}, timeout=10
        )
        assert wrong.status_code == 401
        done = httpx.post(
            f"{agent.url}/v1/model/rollback",
            headers={"Authorization": f"Bearer {rig.admin_token}"},
            timeout=10,
        )
        assert done.status_code == 200, done.text
        assert done.json()["active"]["version"] == 1
        # The device stays on v1 although v2 is still assigned (polls run every 0.2 s) ...
        time.sleep(1.0)
        assert active_version(agent) == 1
    # ... also after a restart ...
    with rig.agent() as agent:
        time.sleep(1.0)
        assert active_version(agent) == 1
        # ... until the registry assigns something else.
        rig.publish(modelstore_bundles.v3)
        rig.deploy(3)
        wait_until(lambda: active_version(agent) == 3, 30, "v3 to be active")


def test_tampered_bundle_is_rejected_and_v1_stays_active(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.deploy(1)
    published = rig.publish(modelstore_bundles.v2)
    # Flip a byte of v2 in the registry's artifact store: TUF's hash check must catch it.
    stored = [
        p
        for p in rig.cloud.config.home.rglob("*")
        if p.is_file() and p.name.startswith(published["sha256"])
    ]
    assert stored, "v2's artifact file not found in the registry home"
    data = bytearray(stored[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored[0].write_bytes(bytes(data))
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        rig.deploy(2)
        wait_until(lambda: _last_update(agent.url).get("outcome") == "rejected", 30, "a rejection")
        assert active_version(agent) == 1
        assert "v2" not in str(agent.get("/v1/model").json()["previous"] or "")
        reason = str(_last_update(agent.url)["reason"])
        assert "hash" in reason.lower() or "length" in reason.lower(), reason
        forecast = agent.get("/v1/forecast")
        assert forecast.status_code == 200
        wait_until(
            lambda: ("rejected", 2) in cloud_model_events(rig.cloud, rig.device_id),
            30,
            "the rejection to reach the cloud",
        )
        # The same digest is not fetched again while the assignment stays (polls every 0.2 s).
        time.sleep(1.5)
        events = cloud_model_events(rig.cloud, rig.device_id)
        assert events.count(("download_started", 2)) == 1
        assert ("activated", 2) not in events


def test_metadata_signed_by_a_foreign_key_is_rejected(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.deploy(1)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        rig.publish(modelstore_bundles.v2)
        _resign_timestamp_with_rogue_key(rig.cloud)
        rig.deploy(2)
        wait_until(lambda: _last_update(agent.url).get("outcome") == "rejected", 30, "a rejection")
        assert active_version(agent) == 1
        assert "timestamp" in str(_last_update(agent.url)["reason"]).lower()


def test_withdrawn_version_is_never_activated(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.deploy(1)
    rig.publish(modelstore_bundles.v2)
    with rig.publisher() as client:
        client.json("POST", "/v1/models/demand-lstm/versions/2/withdraw", json={"reason": "bad"})
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        with rig.publisher() as client, pytest.raises(ApiRefused, match=r"withdrawn"):
            client.json("POST", "/v1/deployments", json={"model": "demand-lstm", "version": 2})
        assert active_version(agent) == 1


def test_forecast_falls_back_with_short_history_then_uses_the_model(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.deploy(1)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        empty = agent.get("/v1/forecast", params={"horizon": 6}).json()
        assert empty["method"] == "seasonal_naive" and empty["model"] is None
        assert len(empty["points"]) == 6
        origin = backfill(agent.url, 48)
        short = agent.get("/v1/forecast").json()
        assert short["method"] == "seasonal_naive"
        # The newest hour is not complete until a reading of the next hour arrives.
        last_complete = origin - timedelta(hours=1)
        assert short["origin"].startswith(last_complete.strftime("%Y-%m-%dT%H"))
        assert 40 <= short["history_hours"] <= 48
        backfill(agent.url, 200)
        full = agent.get("/v1/forecast", params={"horizon": 24}).json()
        assert full["method"] == "model" and full["model"]["version"] == 1
        assert all(p["q10"] <= p["q50"] <= p["q90"] for p in full["points"])
        for bad in ("0", "25", "x"):
            response = agent.get("/v1/forecast", params={"horizon": bad})
            assert response.status_code == 422 and response.json()["error"]["message"]


def _resign_timestamp_with_rogue_key(cloud: LiveRegistry) -> None:
    """Replace the newest timestamp metadata with one signed by a key the root never named."""
    from sqlalchemy import create_engine, text

    engine = create_engine(cloud.config.db_url)
    with engine.begin() as conn:
        version, data = conn.execute(
            text(
                "SELECT version, data FROM tuf_metadata WHERE role = 'timestamp' "
                "ORDER BY version DESC LIMIT 1"
            )
        ).one()
        md = Metadata.from_bytes(bytes(data))
        md.signatures.clear()
        md.sign(CryptoSigner.generate_ed25519())
        conn.execute(
            text("UPDATE tuf_metadata SET data = :data WHERE role = 'timestamp' AND version = :v"),
            {"data": md.to_bytes(), "v": version},
        )
    engine.dispose()
    assert hashlib.sha256(md.to_bytes()).hexdigest()


def test_a_corrupt_active_model_falls_back_to_previous_reports_it_and_heals(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.publish(modelstore_bundles.v2)
    rig.deploy(1)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
        rig.deploy(2)
        wait_until(lambda: active_version(agent) == 2, 30, "v2 to be active")
        active = agent.get("/v1/model").json()["active"]["folder"]
    onnx = rig.home / "models" / "versions" / active / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-100])  # a torn write, a bad disk block
    with rig.agent() as agent:
        # It starts on v1 (verified) and says so, then re-fetches its assigned v2.
        wait_until(
            lambda: ("rolled_back", 1) in cloud_model_events(rig.cloud, rig.device_id),
            30,
            "the fallback to reach the cloud",
        )
        wait_until(lambda: active_version(agent) == 2, 30, "v2 to be re-installed")
        assert agent.get("/v1/forecast").status_code == 200


def test_a_lost_trusted_root_link_is_restored_from_tufs_own_history(
    rig: EdgeRig, modelstore_bundles: EdgeBundles
) -> None:
    rig.publish(modelstore_bundles.v1)
    rig.deploy(1)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 1, 30, "v1 to be active")
    # python-tuf re-creates this symlink after each refresh: a power cut in between loses it.
    (rig.home / "tuf" / "metadata" / "root.json").unlink()
    rig.publish(modelstore_bundles.v2)
    rig.deploy(2)
    with rig.agent() as agent:
        wait_until(lambda: active_version(agent) == 2, 30, "v2 to be active")
