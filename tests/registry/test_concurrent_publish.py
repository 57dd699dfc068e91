"""Concurrent publishers against a live, threaded registry: one linear TUF history.

Each publisher thread has its own HTTP client; a device refreshes all the while. Whatever
the interleaving, every publish lands exactly once, TUF versions grow by one per change,
and the device always sees a consistent repository.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

from storecast.common.tuf_client import make_updater
from tests.registry.conftest import LiveRegistry, MakeBundle

MODEL = "demand-lstm"
PUBLISHERS = 20
SAME_BYTES_PUBLISHERS = 10


def target(version: int) -> str:
    return f"{MODEL}/{MODEL}-v{version}.tar"


def publish_all(live: LiveRegistry, token: str, bundles: list[bytes]) -> list[httpx.Response]:
    """POST every bundle at once, one thread and one client each."""
    start = threading.Barrier(len(bundles))

    def publish(bundle: bytes) -> httpx.Response:
        with live.client(token) as http:
            start.wait(timeout=30)
            return http.post(
                "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
            )

    with ThreadPoolExecutor(max_workers=len(bundles)) as pool:
        return list(pool.map(publish, bundles))


def metadata(live: LiveRegistry, token: str, name: str) -> Metadata[Any]:
    with live.client(token) as http:
        response = http.get(f"/tuf/metadata/{name}")
    response.raise_for_status()
    return Metadata.from_bytes(response.content)


def test_concurrent_publishes_of_distinct_versions_make_one_linear_history(
    live: LiveRegistry, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    publisher = live.token("publisher")
    device = live.enrol("dev-1", "store-1")
    root = live.config.trusted_root_path.read_bytes()
    bundles = [make_bundle(version) for version in range(1, PUBLISHERS + 1)]

    # A device refreshes (into one metadata folder) for as long as publishing goes on.
    done = threading.Event()
    refreshes: list[int] = []

    def refresh_until_done() -> None:
        while not done.is_set():
            updater = make_updater(
                live.url, device, tmp_path / "poller" / "metadata", tmp_path / "poller", root
            )
            updater.refresh()
            found = [v for v in range(1, PUBLISHERS + 1) if updater.get_targetinfo(target(v))]
            refreshes.append(len(found))

    with ThreadPoolExecutor(max_workers=1) as poller:
        polling = poller.submit(refresh_until_done)
        try:
            responses = publish_all(live, publisher, bundles)
        finally:
            done.set()
        polling.result(timeout=60)  # re-raises whatever the device rejected

    assert [r.status_code for r in responses] == [201] * PUBLISHERS, [r.text for r in responses]
    assert refreshes == sorted(refreshes)  # the device never saw a target disappear
    with live.client(publisher) as http:
        listed = http.get(f"/v1/models/{MODEL}").json()["versions"]
    assert sorted(v["version"] for v in listed) == list(range(1, PUBLISHERS + 1))

    updater = make_updater(live.url, device, tmp_path / "dev" / "metadata", tmp_path / "dev", root)
    updater.refresh()
    for version, (bundle, response) in enumerate(zip(bundles, responses, strict=True), start=1):
        info = updater.get_targetinfo(target(version))
        assert info is not None
        assert info.custom == {"model": MODEL, "version": version}
        assert info.hashes == {"sha256": response.json()["sha256"]}
        assert info.length == len(bundle)
    for version in (1, PUBLISHERS):
        info = updater.get_targetinfo(target(version))
        assert info is not None
        assert Path(updater.download_target(info)).read_bytes() == bundles[version - 1]

    # Every publish made exactly one targets version with exactly one more target.
    timestamp = metadata(live, device, "timestamp.json").signed
    assert isinstance(timestamp, Timestamp)
    snapshot = metadata(live, device, f"{timestamp.snapshot_meta.version}.snapshot.json").signed
    assert isinstance(snapshot, Snapshot)
    assert snapshot.version == timestamp.version == 1 + PUBLISHERS
    assert snapshot.meta["targets.json"].version == 1 + PUBLISHERS
    for version in range(1, PUBLISHERS + 2):
        targets = metadata(live, device, f"{version}.targets.json").signed
        assert isinstance(targets, Targets)
        assert targets.version == version
        assert len(targets.targets) == version - 1


def test_concurrent_publishes_of_the_same_bundle_create_it_once(
    live: LiveRegistry, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    publisher = live.token("publisher")
    bundle = make_bundle(1)
    responses = publish_all(live, publisher, [bundle] * SAME_BYTES_PUBLISHERS)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (SAME_BYTES_PUBLISHERS - 1) + [201], [r.text for r in responses]
    assert [r.json()["created"] for r in responses].count(True) == 1
    assert {r.json()["sha256"] for r in responses} == {hashlib.sha256(bundle).hexdigest()}
    with live.client(publisher) as http:
        listed = http.get(f"/v1/models/{MODEL}").json()["versions"]
    assert [v["version"] for v in listed] == [1]

    device = live.enrol("dev-1", "store-1")
    root = live.config.trusted_root_path.read_bytes()
    updater = make_updater(live.url, device, tmp_path / "metadata", tmp_path / "targets", root)
    updater.refresh()
    assert updater.get_targetinfo(target(1)) is not None
    assert metadata(live, device, "timestamp.json").signed.version == 2  # signed once
