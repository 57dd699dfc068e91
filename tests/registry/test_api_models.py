"""The models API end to end (SQLite and PostgreSQL): publish, read, download, alias,
withdraw, and the deployments that send devices to versions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from storecast.bundle import read_members
from storecast.bundle.archive import write_tar
from storecast.common.db import make_engine
from storecast.registry.tables import ArtifactRow, ModelVersionRow, TufMetadataRow
from tests.registry.conftest import LiveRegistry

MODEL = "demand-lstm"


@pytest.fixture
def admin(live: LiveRegistry) -> Iterator[httpx.Client]:
    with live.client(live.admin) as http:
        yield http


def publish(http: httpx.Client, bundle: bytes) -> httpx.Response:
    return http.post("/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"})


def restamped(bundle: bytes, out: Path, **lineage: Any) -> bytes:
    """The same model and version with other lineage: a valid bundle with other bytes."""
    members = read_members(bundle)
    meta = json.loads(members["metadata.json"])
    meta["lineage"].update(lineage)
    members["metadata.json"] = json.dumps(meta, sort_keys=True, indent=2).encode() + b"\n"
    return write_tar(members, out).read_bytes()


def deploy(
    http: httpx.Client,
    version: int | None = None,
    alias: str | None = None,
    selector: dict[str, Any] | None = None,
    model: str = MODEL,
) -> int:
    body: dict[str, Any] = {"model": model, "selector": selector or {"kind": "all"}}
    if version is not None:
        body["version"] = version
    if alias is not None:
        body["alias"] = alias
    response = http.post("/v1/deployments", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def assignment(live: LiveRegistry, token: str, device_id: str) -> tuple[str | None, int | None]:
    with live.client(token) as http:
        response = http.get(f"/v1/devices/{device_id}/assignment")
    assert response.status_code == 200, response.text
    return response.json()["model"], response.json()["version"]


def tuf_targets(http: httpx.Client) -> tuple[int, dict[str, Any]]:
    """The version and the targets of the newest signed targets metadata (via timestamp)."""
    timestamp = http.get("/tuf/metadata/timestamp.json").json()["signed"]
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = http.get(f"/tuf/metadata/{snapshot_version}.snapshot.json").json()["signed"]
    targets_version = snapshot["meta"]["targets.json"]["version"]
    targets = http.get(f"/tuf/metadata/{targets_version}.targets.json").json()["signed"]
    assert targets["version"] == targets_version
    return targets_version, targets["targets"]


def stored_state(live: LiveRegistry) -> dict[str, Any]:
    """Row counts that a publish would change, and the files in the artifact store."""
    engine = make_engine(live.config.db_url)
    try:
        with engine.connect() as conn:
            counts = {
                table.__tablename__: conn.execute(select(func.count()).select_from(table)).scalar()
                for table in (ModelVersionRow, ArtifactRow, TufMetadataRow)
            }
    finally:
        engine.dispose()
    files = sorted(
        str(p.relative_to(live.config.artifacts_dir))
        for p in live.config.artifacts_dir.rglob("*")
        if p.is_file()
    )
    return {"rows": counts, "files": files}


# -- publishing --------------------------------------------------------------------------------


def test_publishing_a_new_version_is_201_with_its_digest_and_metadata(live, admin, bundle_v1):
    response = publish(admin, bundle_v1)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    assert (body["name"], body["version"]) == (MODEL, 1)
    assert body["sha256"] == hashlib.sha256(bundle_v1).hexdigest()
    assert body["size"] == len(bundle_v1)
    assert body["target_path"] == f"{MODEL}/{MODEL}-v1.tar"
    assert body["withdrawn"] is False
    assert body["aliases"] == []
    assert body["published_by"].endswith(":first admin")
    assert body["metadata"] == json.loads(read_members(bundle_v1)["metadata.json"])
    assert stored_state(live)["files"] == [f"sha256/{body['sha256'][:2]}/{body['sha256']}"]

    _, targets = tuf_targets(admin)
    assert targets[body["target_path"]] == {
        "length": len(bundle_v1),
        "hashes": {"sha256": body["sha256"]},
        "custom": {"model": MODEL, "version": 1},
    }


def test_republishing_the_same_bytes_is_200_and_changes_nothing(live, admin, bundle_v1):
    first = publish(admin, bundle_v1).json()
    before, targets_before = stored_state(live), tuf_targets(admin)
    again = publish(admin, bundle_v1)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["sha256"] == first["sha256"]
    assert again.json()["published_at"] == first["published_at"]
    assert stored_state(live) == before
    assert tuf_targets(admin) == targets_before


def test_the_same_version_with_other_bytes_is_a_409_and_changes_nothing(
    live, admin, bundle_v1, tmp_path
):
    publish(admin, bundle_v1).raise_for_status()
    before, targets_before = stored_state(live), tuf_targets(admin)
    other = restamped(bundle_v1, tmp_path / "other.tar", code_commit="0123abc")
    response = publish(admin, other)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "version_exists"
    assert hashlib.sha256(bundle_v1).hexdigest() in response.json()["error"]["message"]
    assert stored_state(live) == before
    assert tuf_targets(admin) == targets_before


# -- reading the catalog -----------------------------------------------------------------------


def test_the_catalog_lists_models_versions_aliases_and_metadata(admin, make_bundle):
    assert admin.get(f"/v1/models/{MODEL}/next-version").json() == {"version": 1}
    for version in (1, 2):
        publish(admin, make_bundle(version)).raise_for_status()
    publish(admin, make_bundle(1, name="other-model")).raise_for_status()
    admin.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1}).raise_for_status()

    models = admin.get("/v1/models").json()["models"]
    assert models == [
        {"name": MODEL, "latest_version": 2, "versions": 2, "aliases": {"production": 1}},
        {"name": "other-model", "latest_version": 1, "versions": 1, "aliases": {}},
    ]

    detail = admin.get(f"/v1/models/{MODEL}").json()
    assert detail["name"] == MODEL
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert [v["aliases"] for v in detail["versions"]] == [["production"], []]
    assert detail["aliases"] == {"production": 1}
    assert detail["next_version"] == 3

    version = admin.get(f"/v1/models/{MODEL}/versions/2").json()
    assert version["version"] == 2
    assert version["metadata"]["version"] == 2
    assert version["metadata"]["name"] == MODEL
    assert set(version["metadata"]["members"]) == {"model.onnx", "model.pt"}
    assert admin.get(f"/v1/models/{MODEL}/next-version").json() == {"version": 3}

    for unknown in (
        "/v1/models/no-such-model",
        f"/v1/models/{MODEL}/versions/9",
        "/v1/models/no-such-model/versions/1",
        "/v1/models/Not_A_Name/next-version",
        "/v1/deployments/9",
    ):
        response = admin.get(unknown)
        assert response.status_code == 404, unknown
        assert response.json()["error"]["code"] == "not_found"


# -- downloading -------------------------------------------------------------------------------


def test_an_artifact_download_is_the_published_bytes_with_an_etag(live, bundle_v1):
    with live.client(live.admin) as admin:
        digest = publish(admin, bundle_v1).json()["sha256"]
    with live.client(live.token("viewer")) as viewer:
        response = viewer.get(f"/v1/artifacts/{digest}")
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == digest
        assert response.headers["Content-Type"] == "application/x-tar"
        assert response.headers["ETag"] == f'"{digest}"'
        assert "immutable" in response.headers["Cache-Control"]

        cached = viewer.get(f"/v1/artifacts/{digest}", headers={"If-None-Match": f'"{digest}"'})
        assert cached.status_code == 304
        assert cached.content == b""

        stale = viewer.get(f"/v1/artifacts/{digest}", headers={"If-None-Match": '"other"'})
        assert stale.status_code == 200
        assert stale.content == bundle_v1

        for unknown in ("0" * 64, "not-a-digest", digest.upper()):
            missing = viewer.get(f"/v1/artifacts/{unknown}")
            assert missing.status_code == 404, unknown
            assert missing.json()["error"]["code"] == "not_found"


def test_a_range_request_gets_206_and_exactly_those_bytes(admin, bundle_v1):
    digest = publish(admin, bundle_v1).json()["sha256"]
    size = len(bundle_v1)
    for header, (start, end) in {
        "bytes=0-99": (0, 99),
        "bytes=1000-1511": (1000, 1511),
        "bytes=-256": (size - 256, size - 1),
        f"bytes={size - 10}-": (size - 10, size - 1),
    }.items():
        response = admin.get(f"/v1/artifacts/{digest}", headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == bundle_v1[start : end + 1]
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    past_the_end = admin.get(f"/v1/artifacts/{digest}", headers={"Range": f"bytes={size + 10}-"})
    assert past_the_end.status_code == 416


def test_a_device_downloads_its_bundle_as_a_tuf_target(live, bundle_v1):
    with live.client(live.admin) as admin:
        body = publish(admin, bundle_v1).json()
    token = live.enrol("dev-1", "store-1")
    name = body["target_path"].rpartition("/")[2]
    with live.client(token) as device:
        response = device.get(f"/tuf/targets/{MODEL}/{body['sha256']}.{name}")
        assert response.status_code == 200
        assert response.content == bundle_v1
        wrong_name = device.get(f"/tuf/targets/{MODEL}/{'0' * 64}.{name}")
        assert wrong_name.status_code == 404


# -- aliases -----------------------------------------------------------------------------------


def test_a_publisher_sets_moves_and_deletes_aliases_to_live_versions_only(live, make_bundle):
    with live.client(live.token("publisher")) as publisher:
        for version in (1, 2):
            publish(publisher, make_bundle(version)).raise_for_status()
        alias = f"/v1/models/{MODEL}/aliases/production"

        made = publisher.put(alias, json={"version": 1})
        assert made.status_code == 200
        assert made.json() == {"name": MODEL, "alias": "production", "version": 1}
        assert publisher.get(f"/v1/models/{MODEL}").json()["aliases"] == {"production": 1}

        moved = publisher.put(alias, json={"version": 2})
        assert moved.json()["version"] == 2
        assert publisher.get(f"/v1/models/{MODEL}/versions/2").json()["aliases"] == ["production"]
        assert publisher.get(f"/v1/models/{MODEL}/versions/1").json()["aliases"] == []

        deleted = publisher.delete(alias)
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert publisher.get(f"/v1/models/{MODEL}").json()["aliases"] == {}
        again = publisher.delete(alias)
        assert again.status_code == 404

        publisher.post(
            f"/v1/models/{MODEL}/versions/2/withdraw", json={"reason": "bad forecasts"}
        ).raise_for_status()
        missing = publisher.put(alias, json={"version": 7})
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        withdrawn = publisher.put(alias, json={"version": 2})
        assert withdrawn.status_code == 409
        assert withdrawn.json()["error"]["code"] == "version_withdrawn"
        bad_name = publisher.put(f"/v1/models/{MODEL}/aliases/Prod!", json={"version": 1})
        assert bad_name.status_code == 422
        assert publisher.get(f"/v1/models/{MODEL}").json()["aliases"] == {}


# -- withdrawal --------------------------------------------------------------------------------


def test_withdrawing_marks_the_version_and_drops_it_from_tuf_targets(admin, make_bundle):
    v1, v2 = make_bundle(1), make_bundle(2)
    for bundle in (v1, v2):
        publish(admin, bundle).raise_for_status()
    version_before, _ = tuf_targets(admin)

    response = admin.post(f"/v1/models/{MODEL}/versions/2/withdraw", json={"reason": "drift"})
    assert response.status_code == 200, response.text
    assert response.json()["withdrawn"] is True
    assert response.json()["withdrawn_reason"] == "drift"
    shown = admin.get(f"/v1/models/{MODEL}/versions/2").json()
    assert (shown["withdrawn"], shown["withdrawn_reason"]) == (True, "drift")

    version_after, targets = tuf_targets(admin)
    assert version_after == version_before + 1
    assert set(targets) == {f"{MODEL}/{MODEL}-v1.tar"}

    again = admin.post(f"/v1/models/{MODEL}/versions/2/withdraw", json={"reason": "twice"})
    assert again.status_code == 200
    assert again.json()["withdrawn_reason"] == "drift"
    assert tuf_targets(admin)[0] == version_after

    republished = publish(admin, v2)
    assert republished.status_code == 409
    assert republished.json()["error"]["code"] == "version_withdrawn"
    refused = admin.post("/v1/deployments", json={"model": MODEL, "version": 2})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "version_withdrawn"


def test_after_a_withdrawal_devices_fall_back_to_an_older_matching_deployment(
    live, admin, make_bundle
):
    for version in (1, 2, 3):
        publish(admin, make_bundle(version)).raise_for_status()
    north = live.enrol("dev-north", "store-1", region="north")
    south = live.enrol("dev-south", "store-2", region="south")
    deploy(admin, version=1, selector={"kind": "regions", "values": ["north"]})
    deploy(admin, version=3, selector={"kind": "regions", "values": ["south"]})
    deploy(admin, version=2)  # everyone, newest
    assert assignment(live, north, "dev-north") == (MODEL, 2)
    assert assignment(live, south, "dev-south") == (MODEL, 2)

    admin.post(f"/v1/models/{MODEL}/versions/2/withdraw", json={"reason": "x"}).raise_for_status()
    assert assignment(live, north, "dev-north") == (MODEL, 1)
    assert assignment(live, south, "dev-south") == (MODEL, 3)

    admin.post(f"/v1/models/{MODEL}/versions/3/withdraw", json={"reason": "x"}).raise_for_status()
    assert assignment(live, south, "dev-south") == (None, None)


# -- deployments -------------------------------------------------------------------------------


def test_a_deployment_by_alias_follows_the_alias(live, admin, make_bundle):
    for version in (1, 2):
        publish(admin, make_bundle(version)).raise_for_status()
    token = live.enrol("dev-1", "store-1")
    alias = f"/v1/models/{MODEL}/aliases/production"
    admin.put(alias, json={"version": 1}).raise_for_status()
    deployment_id = deploy(admin, alias="production")

    with live.client(token) as device:
        first = device.get("/v1/devices/dev-1/assignment")
        assert (first.json()["version"], first.json()["deployment_id"]) == (1, deployment_id)
        admin.put(alias, json={"version": 2}).raise_for_status()
        moved = device.get(
            "/v1/devices/dev-1/assignment", headers={"If-None-Match": first.headers["ETag"]}
        )
        assert moved.status_code == 200
        assert moved.json()["version"] == 2
        assert moved.json()["sha256"] == hashlib.sha256(make_bundle(2)).hexdigest()
        assert moved.headers["ETag"] != first.headers["ETag"]

        admin.delete(alias).raise_for_status()
        assert device.get("/v1/devices/dev-1/assignment").json()["model"] is None


def test_selectors_pick_devices_by_store_region_and_tag(live, admin, make_bundle):
    for version in (1, 2, 3, 4):
        publish(admin, make_bundle(version)).raise_for_status()
    devices = {
        "a": live.enrol("a", "store-1", region="north", tags=["pilot"]),
        "b": live.enrol("b", "store-2", region="north"),
        "c": live.enrol("c", "store-3", region="south", tags=["pilot", "big"]),
        "d": live.enrol("d", "store-4", region="east"),
    }
    deploy(admin, version=1)
    deploy(admin, version=2, selector={"kind": "regions", "values": ["north"]})
    deploy(admin, version=3, selector={"kind": "tags", "values": ["big"]})
    deploy(admin, version=4, selector={"kind": "stores", "values": ["store-2", "store-9"]})
    got = {device: assignment(live, token, device)[1] for device, token in devices.items()}
    assert got == {"a": 2, "b": 4, "c": 3, "d": 1}


def test_the_newest_matching_deployment_wins(live, admin, make_bundle):
    for version in (1, 2):
        publish(admin, make_bundle(version)).raise_for_status()
    token = live.enrol("dev-1", "store-1", tags=["pilot"])
    deploy(admin, version=2, selector={"kind": "tags", "values": ["pilot"]})
    assert assignment(live, token, "dev-1") == (MODEL, 2)
    newest = deploy(admin, version=1)  # a rollback to everyone, made later
    with live.client(token) as device:
        body = device.get("/v1/devices/dev-1/assignment").json()
    assert body == {
        "device_id": "dev-1",
        "model": MODEL,
        "version": 1,
        "target_path": f"{MODEL}/{MODEL}-v1.tar",
        "sha256": hashlib.sha256(make_bundle(1)).hexdigest(),
        "length": len(make_bundle(1)),
        "deployment_id": newest,
        "arm": "A",
    }
    listed = admin.get("/v1/deployments").json()["deployments"]
    assert [d["id"] for d in listed] == sorted((d["id"] for d in listed), reverse=True)
    assert listed[0]["id"] == newest
    shown = admin.get(f"/v1/deployments/{newest}").json()
    assert shown == listed[0]
    assert shown["selector"] == {"kind": "all", "values": []}
    assert (shown["model"], shown["version"], shown["alias"]) == (MODEL, 1, None)
    assert shown["status"] == "active"


BAD_DEPLOYMENTS = [
    ({"model": MODEL, "version": 1, "alias": "production"}, 422),
    ({"model": MODEL}, 422),
    ({"model": MODEL, "version": 1, "selector": {"kind": "all", "values": ["x"]}}, 422),
    ({"model": MODEL, "version": 1, "selector": {"kind": "stores"}}, 422),
    ({"model": MODEL, "version": 1, "selector": {"kind": "planets", "values": ["x"]}}, 422),
    ({"model": MODEL, "version": 5}, 404),
    ({"model": MODEL, "alias": "nowhere"}, 404),
    ({"model": "no-such-model", "version": 1}, 404),
]


def test_a_deployment_must_name_one_live_target_and_a_sound_selector(admin, bundle_v1):
    publish(admin, bundle_v1).raise_for_status()
    for body, status in BAD_DEPLOYMENTS:
        response = admin.post("/v1/deployments", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == (
            "not_found" if status == 404 else "validation_error"
        )
    assert admin.get("/v1/deployments").json()["deployments"] == []
