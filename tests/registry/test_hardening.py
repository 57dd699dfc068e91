"""Private caching of protected files, range limits, and concurrent writers getting 409."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from tests.registry.conftest import LiveRegistry, MakeBundle


def test_protected_files_may_only_be_cached_privately(
    live: LiveRegistry, make_bundle: MakeBundle
) -> None:
    bundle = make_bundle(1)
    digest = hashlib.sha256(bundle).hexdigest()
    with live.client(live.admin) as http:
        assert (
            http.post(
                "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
            ).status_code
            == 201
        )
        for path in (
            f"/v1/artifacts/{digest}",
            f"/tuf/targets/demand-lstm/{digest}.demand-lstm-v1.tar",
            "/tuf/metadata/1.root.json",
        ):
            response = http.get(path)
            assert response.status_code == 200, path
            cache = response.headers["Cache-Control"]
            assert "private" in cache and "public" not in cache, (path, cache)


def test_metadata_versions_past_the_column_range_are_404(live: LiveRegistry) -> None:
    with live.client(live.admin) as http:
        for name in ("3000000000.root.json", "9999999999999999999.root.json"):
            response = http.get(f"/tuf/metadata/{name}")
            assert response.status_code == 404, (name, response.text)


def test_audit_times_out_of_range_in_utc_are_422(live: LiveRegistry) -> None:
    with live.client(live.admin) as http:
        for since in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
            response = http.get("/v1/audit", params={"since": since})
            assert response.status_code == 422, (since, response.text)
            assert response.json()["error"]["fields"][0]["field"] == "since"


def test_concurrent_enrolments_of_one_device_give_one_201_and_409s(live: LiveRegistry) -> None:
    body = {"device_id": "edge-1", "store_id": "S001", "region": "north"}

    def enrol(_: int) -> int:
        with live.client(live.admin) as http:
            return http.post("/v1/devices", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(enrol, range(8)))
    assert statuses == [201] + [409] * 7
