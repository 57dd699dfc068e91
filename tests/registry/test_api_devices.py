"""Devices end to end (SQLite and PostgreSQL): enrolment, the assignment poll, decommissioning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.registry.conftest import LiveRegistry

MODEL = "demand-lstm"
ENROL = {"device_id": "dev-1", "store_id": "store-1", "region": "north", "tags": ["pilot"]}


@pytest.fixture
def admin(live: LiveRegistry) -> Iterator[httpx.Client]:
    with live.client(live.admin) as http:
        yield http


def publish_and_deploy(http: httpx.Client, bundle: bytes) -> int:
    http.post(
        "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
    ).raise_for_status()
    response = http.post("/v1/deployments", json={"model": MODEL, "version": 1})
    response.raise_for_status()
    return int(response.json()["id"])


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- enrolment ---------------------------------------------------------------------------------


def test_enrolment_shows_the_device_token_once_and_listings_never_do(live, admin):
    response = admin.post("/v1/devices", json=ENROL)
    assert response.status_code == 201, response.text
    body = response.json()
    secret = body["token"]
    assert secret.startswith("sct_")
    assert body["token_id"].startswith("tok_")
    assert body["device"] == {
        "device_id": "dev-1",
        "store_id": "store-1",
        "region": "north",
        "tags": ["pilot"],
        "enrolled_at": body["device"]["enrolled_at"],
        "last_seen_at": None,
        "reported_model": None,
        "reported_version": None,
        "decommissioned": False,
    }

    for path in ("/v1/devices", "/v1/devices/dev-1", "/v1/tokens", "/v1/audit"):
        listing = admin.get(path)
        assert listing.status_code == 200
        assert secret not in listing.text, path
    tokens = {t["id"]: t for t in admin.get("/v1/tokens").json()["tokens"]}
    device_token = tokens[body["token_id"]]
    assert "token" not in device_token
    assert (device_token["role"], device_token["device_id"]) == ("device", "dev-1")

    with live.client(secret) as device:
        assert device.get("/v1/devices/dev-1").json()["device_id"] == "dev-1"


def test_enrolling_a_device_twice_is_a_409_and_mints_no_token(live, admin):
    first = admin.post("/v1/devices", json=ENROL).json()
    tokens_before = admin.get("/v1/tokens").json()["tokens"]
    again = admin.post("/v1/devices", json={**ENROL, "store_id": "store-2"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "device_exists"
    assert admin.get("/v1/tokens").json()["tokens"] == tokens_before
    assert admin.get("/v1/devices/dev-1").json()["store_id"] == "store-1"
    with live.client(first["token"]) as device:
        assert device.get("/v1/devices/dev-1/assignment").status_code == 200


def test_rotating_a_device_token_revokes_the_old_one(live, admin):
    first = admin.post("/v1/devices", json=ENROL).json()
    rotated = admin.post("/v1/devices/dev-1/token")
    assert rotated.status_code == 201
    assert rotated.json()["token"] != first["token"]
    with live.client(first["token"]) as old:
        assert old.get("/v1/devices/dev-1/assignment").status_code == 401
    with live.client(rotated.json()["token"]) as new:
        assert new.get("/v1/devices/dev-1/assignment").status_code == 200
        assert new.post("/v1/devices/dev-1/token").status_code == 403
    assert admin.post("/v1/devices/nobody/token").status_code == 404
    admin.delete("/v1/devices/dev-1").raise_for_status()
    assert admin.post("/v1/devices/dev-1/token").status_code == 410
    actions = [r["action"] for r in admin.get("/v1/audit").json()["records"]]
    assert actions.count("device.token_rotate") == 4


INVALID_ENROLMENTS = [
    ({**ENROL, "device_id": ""}, "device_id"),
    ({**ENROL, "device_id": "-leading-dash"}, "device_id"),
    ({**ENROL, "device_id": "has space"}, "device_id"),
    ({**ENROL, "device_id": "a/b"}, "device_id"),
    ({**ENROL, "device_id": "x" * 129}, "device_id"),
    ({**ENROL, "device_id": "dévice"}, "device_id"),
    ({**ENROL, "device_id": 42}, "device_id"),
    ({**ENROL, "store_id": "store 1"}, "store_id"),
    ({**ENROL, "region": ""}, "region"),
    ({**ENROL, "tags": "pilot"}, "tags"),
    ({**ENROL, "tags": [f"t{i}" for i in range(33)]}, "tags"),
    ({**ENROL, "tags": ["bad tag"]}, "(body)"),
    ({"store_id": "store-1", "region": "north"}, "device_id"),
]


def test_invalid_device_fields_are_a_422_naming_the_field(admin):
    for body, field in INVALID_ENROLMENTS:
        response = admin.post("/v1/devices", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert field in [f["field"] for f in error["fields"]], (body, error)
    assert admin.get("/v1/devices").json() == {"devices": []}
    assert [t["role"] for t in admin.get("/v1/tokens").json()["tokens"]] == ["admin"]


def test_every_id_the_enrol_schema_accepts_can_be_enrolled(live, admin):
    longest = "r" * 128
    response = admin.post(
        "/v1/devices",
        json={"device_id": "d" * 128, "store_id": "s" * 128, "region": longest, "tags": [longest]},
    )
    assert response.status_code == 201, response.text
    assert response.json()["device"]["region"] == longest


def test_devices_are_listed_by_id(live, admin):
    for device_id in ("dev-c", "dev-a", "dev-b"):
        live.enrol(device_id, "store-1")
    listed = admin.get("/v1/devices").json()["devices"]
    assert [d["device_id"] for d in listed] == ["dev-a", "dev-b", "dev-c"]


# -- the assignment poll -----------------------------------------------------------------------


def test_a_poll_is_200_with_an_etag_then_304_until_a_deployment_changes_it(live, admin, bundle_v1):
    token = live.enrol("dev-1", "store-1")
    with live.client(token) as device:
        nothing = device.get("/v1/devices/dev-1/assignment")
        assert nothing.status_code == 200
        assert nothing.json()["model"] is None
        assert nothing.headers["Cache-Control"] == "no-cache"
        etag = nothing.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')

        for header in (etag, f"W/{etag}", f'"other", {etag}'):
            unchanged = device.get(
                "/v1/devices/dev-1/assignment", headers={"If-None-Match": header}
            )
            assert unchanged.status_code == 304, header
            assert unchanged.content == b""
            assert unchanged.headers["ETag"] == etag

        deployment_id = publish_and_deploy(admin, bundle_v1)
        changed = device.get("/v1/devices/dev-1/assignment", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert (changed.json()["version"], changed.json()["deployment_id"]) == (1, deployment_id)
        assert changed.headers["ETag"] != etag

        new_etag = changed.headers["ETag"]
        again = device.get("/v1/devices/dev-1/assignment", headers={"If-None-Match": new_etag})
        assert again.status_code == 304


def test_a_poll_records_when_the_device_was_seen_and_what_it_runs(live, admin):
    token = live.enrol("dev-1", "store-1")
    assert admin.get("/v1/devices/dev-1").json()["last_seen_at"] is None

    before = datetime.now(UTC)
    with live.client(token) as device:
        device.get(
            "/v1/devices/dev-1/assignment",
            params={"current_model": MODEL, "current_version": 1},
        ).raise_for_status()
        after = datetime.now(UTC)
        seen = admin.get("/v1/devices/dev-1").json()
        assert before <= when(seen["last_seen_at"]) <= after
        assert (seen["reported_model"], seen["reported_version"]) == (MODEL, 1)

        device.get("/v1/devices/dev-1/assignment").raise_for_status()
        quiet = admin.get("/v1/devices/dev-1").json()
        assert (quiet["reported_model"], quiet["reported_version"]) == (MODEL, 1)
        assert quiet["last_seen_at"] == seen["last_seen_at"]  # within last_seen_every

        device.get(
            "/v1/devices/dev-1/assignment",
            params={"current_model": MODEL, "current_version": 2},
        ).raise_for_status()
        upgraded = admin.get("/v1/devices/dev-1").json()
        assert upgraded["reported_version"] == 2
        assert when(upgraded["last_seen_at"]) >= when(seen["last_seen_at"])


def test_a_staff_poll_does_not_count_as_the_device_being_seen(live, admin):
    live.enrol("dev-1", "store-1")
    response = admin.get(
        "/v1/devices/dev-1/assignment", params={"current_model": MODEL, "current_version": 3}
    )
    assert response.status_code == 200
    shown = admin.get("/v1/devices/dev-1").json()
    assert (shown["last_seen_at"], shown["reported_version"]) == (None, None)


def test_a_poll_with_a_bad_report_is_a_422_and_records_nothing(live, admin):
    token = live.enrol("dev-1", "store-1")
    with live.client(token) as device:
        for params, field in [
            ({"current_version": 0}, "current_version"),
            ({"current_version": "latest"}, "current_version"),
            ({"current_model": "Not A Model"}, "current_model"),
            ({"colour": "red"}, "colour"),
        ]:
            response = device.get("/v1/devices/dev-1/assignment", params=params)
            assert response.status_code == 422, params
            assert [f["field"] for f in response.json()["error"]["fields"]] == [field]
    assert admin.get("/v1/devices/dev-1").json()["last_seen_at"] is None


# -- decommissioning ---------------------------------------------------------------------------


def test_a_decommissioned_device_token_is_refused_afterwards(live, admin):
    enrolled = admin.post("/v1/devices", json=ENROL).json()
    with live.client(enrolled["token"]) as device:
        assert device.get("/v1/devices/dev-1/assignment").status_code == 200

        response = admin.delete("/v1/devices/dev-1")
        assert response.status_code == 200
        assert response.json()["decommissioned"] is True

        for path in ("/v1/devices/dev-1/assignment", "/v1/devices/dev-1"):
            refused = device.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "unauthorized"

    assert admin.get("/v1/devices/dev-1").json()["decommissioned"] is True
    gone = admin.get("/v1/devices/dev-1/assignment")
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "decommissioned")
    tokens = {t["id"]: t for t in admin.get("/v1/tokens").json()["tokens"]}
    assert tokens[enrolled["token_id"]]["revoked"] is True

    again = admin.delete("/v1/devices/dev-1")
    assert again.status_code == 200
    assert admin.post("/v1/devices", json=ENROL).status_code == 409  # its history stays
    missing = admin.delete("/v1/devices/never-enrolled")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
