"""python-tuf's unmodified ``Updater`` (through ``make_updater``) against a live registry.

Every attack here is staged the way it would happen in production: on the artifact files,
on the ``tuf_metadata`` rows, on the online keys or on the registry's clock. The device must
refuse, and must keep what it already trusted.
"""

from __future__ import annotations

import hashlib
import shutil
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from securesystemslib.signer import Signer
from sqlalchemy import delete, select
from tuf.api.exceptions import (
    BadVersionNumberError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    UnsignedMetadataError,
)
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp
from tuf.ngclient import Updater

from storecast.common.clock import FixedClock
from storecast.common.errors import ConfigError
from storecast.common.tuf_client import BearerFetcher, make_updater
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import Initialised, init_registry
from storecast.registry.storage import ArtifactStore
from storecast.registry.tables import TufMetadataRow
from storecast.registry.tuf_repo import generate_keys, load_online_keys, load_signer
from tests.registry.conftest import LiveRegistry, MakeBundle, registry_config, serve_registry

MODEL = "demand-lstm"


def target(version: int) -> str:
    return f"{MODEL}/{MODEL}-v{version}.tar"


# --- helpers ------------------------------------------------------------------------------


def publish(live: LiveRegistry, token: str, bundle: bytes) -> dict[str, Any]:
    with live.client(token) as http:
        response = http.post(
            "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
        )
    assert response.status_code == 201, response.text
    return cast(dict[str, Any], response.json())


def device_updater(
    live: LiveRegistry, token: str, home: Path, *, provisioned: bool = True
) -> Updater:
    """A device's updater keeping its metadata under ``home`` (one refresh per instance).

    ``provisioned``: start from the registry's ``1.root.json``; otherwise from the root the
    device kept on an earlier run.
    """
    root = live.config.trusted_root_path.read_bytes() if provisioned else None
    return make_updater(live.url, token, home / "metadata", home / "targets", root)


def stored(live: LiveRegistry, role: str) -> dict[int, bytes]:
    """Every stored version of ``role``."""
    with live.database.transaction() as session:
        rows = session.execute(
            select(TufMetadataRow.version, TufMetadataRow.data).where(TufMetadataRow.role == role)
        ).all()
    return {version: data for version, data in rows}


def newest(live: LiveRegistry, role: str) -> tuple[int, bytes]:
    versions = stored(live, role)
    version = max(versions)
    return version, versions[version]


def overwrite(live: LiveRegistry, role: str, version: int, data: bytes) -> None:
    with live.database.transaction(write=True) as session:
        row = session.get(TufMetadataRow, (role, version))
        assert row is not None
        row.data = data


def insert(live: LiveRegistry, role: str, version: int, data: bytes) -> None:
    with live.database.transaction(write=True) as session:
        session.add(
            TufMetadataRow(role=role, version=version, data=data, created_at=datetime.now(UTC))
        )


def served_timestamp(live: LiveRegistry, token: str) -> Timestamp:
    with live.client(token) as http:
        response = http.get("/tuf/metadata/timestamp.json")
    response.raise_for_status()
    signed = Metadata[Timestamp].from_bytes(response.content).signed
    assert isinstance(signed, Timestamp)
    return signed


def resign(data: bytes, signer: Signer, **changes: Any) -> bytes:
    """``data`` with fields of its signed part changed, signed by ``signer`` alone."""
    md = Metadata.from_bytes(data)
    for name, value in changes.items():
        setattr(md.signed, name, value)
    md.signatures.clear()
    md.sign(signer)
    return md.to_bytes()


@pytest.fixture
def publisher(live: LiveRegistry) -> str:
    return live.token("publisher")


@pytest.fixture
def device(live: LiveRegistry) -> str:
    return live.enrol("dev-1", "store-1")


# --- the happy path -----------------------------------------------------------------------


def test_device_downloads_a_published_bundle_verified_by_tuf(
    live: LiveRegistry, publisher: str, device: str, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    bundle = make_bundle(1)
    published = publish(live, publisher, bundle)
    assert published["sha256"] == hashlib.sha256(bundle).hexdigest()

    updater = device_updater(live, device, tmp_path / "dev")
    updater.refresh()
    info = updater.get_targetinfo(target(1))

    assert info is not None
    assert info.custom == {"model": MODEL, "version": 1}
    assert info.length == len(bundle) == published["size"]
    assert info.hashes == {"sha256": published["sha256"]}
    assert updater.get_targetinfo(target(2)) is None
    path = Path(updater.download_target(info))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == published["sha256"]
    assert updater.find_cached_target(info) == str(path)


@pytest.mark.parametrize("role", ["device", "viewer", "publisher", "admin"])
def test_every_role_may_read_the_tuf_repository(
    live: LiveRegistry, role: str, tmp_path: Path
) -> None:
    token = {"device": live.enrol("dev-1", "store-1"), "admin": live.admin}.get(role)
    device_updater(live, token or live.token(role), tmp_path / role).refresh()


def test_the_tuf_repository_needs_a_valid_token(live: LiveRegistry, tmp_path: Path) -> None:
    root = live.config.trusted_root_path.read_bytes()
    anonymous = Updater(
        str(tmp_path / "anonymous"), f"{live.url}/tuf/metadata/", bootstrap=root
    )  # python-tuf's own fetcher, no Authorization header
    with pytest.raises(DownloadHTTPError) as raised:
        anonymous.refresh()
    assert raised.value.status_code == 401

    with pytest.raises(DownloadHTTPError) as raised:
        device_updater(live, "sct_not-a-token", tmp_path / "forged").refresh()
    assert raised.value.status_code == 401

    fetcher = BearerFetcher("sct_not-a-token")
    with pytest.raises(DownloadHTTPError) as raised:
        fetcher.download_bytes(f"{live.url}/tuf/targets/{MODEL}/{'0' * 64}.x.tar", 10)
    assert raised.value.status_code == 401


# --- tampering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("same length", LengthOrHashMismatchError),
        ("shorter", LengthOrHashMismatchError),
        ("longer", DownloadLengthMismatchError),  # the fetch stops at the signed length
    ],
)
def test_device_rejects_a_tampered_artifact(
    live: LiveRegistry,
    publisher: str,
    device: str,
    make_bundle: MakeBundle,
    tmp_path: Path,
    tamper: str,
    error: type[Exception],
) -> None:
    bundle = make_bundle(1)
    digest = publish(live, publisher, bundle)["sha256"]
    evil = {
        "same length": bundle[:-1] + bytes([bundle[-1] ^ 1]),
        "shorter": bundle[:-512],
        "longer": bundle + b"\0" * 512,
    }[tamper]
    ArtifactStore(live.config.artifacts_dir).path(digest).write_bytes(evil)

    updater = device_updater(live, device, tmp_path / "dev")
    info = updater.get_targetinfo(target(1))
    assert info is not None
    with pytest.raises(error):
        updater.download_target(info)
    assert updater.find_cached_target(info) is None
    assert not list((tmp_path / "dev" / "targets").glob("*"))  # nothing unverified is kept


def test_device_rejects_targets_metadata_changed_in_the_database(
    live: LiveRegistry, publisher: str, device: str, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    publish(live, publisher, make_bundle(1))
    version, original = newest(live, Targets.type)
    md = Metadata[Targets].from_bytes(original)
    md.signed.targets[target(1)].unrecognized_fields["custom"]["version"] = 9
    tampered = md.to_bytes()  # same version, same length, old signature
    assert len(tampered) == len(original) and tampered != original
    overwrite(live, Targets.type, version, tampered)

    with pytest.raises(LengthOrHashMismatchError):  # snapshot pins the targets file's hash
        device_updater(live, device, tmp_path / "dev").refresh()


def test_device_rejects_changed_targets_even_when_snapshot_and_timestamp_vouch_for_it(
    live: LiveRegistry, publisher: str, device: str, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    # An attacker holding the snapshot and timestamp keys, but not the targets key.
    publish(live, publisher, make_bundle(1))
    keys = load_online_keys(live.config.keys_dir)
    targets_version, targets_data = newest(live, Targets.type)
    md = Metadata[Targets].from_bytes(targets_data)
    md.signed.targets[target(1)].unrecognized_fields["custom"]["version"] = 9
    overwrite(live, Targets.type, targets_version, md.to_bytes())
    snapshot_version, snapshot_data = newest(live, Snapshot.type)
    snapshot = resign(
        snapshot_data, keys.snapshot, meta={"targets.json": MetaFile(targets_version)}
    )
    overwrite(live, Snapshot.type, snapshot_version, snapshot)
    timestamp_version, timestamp_data = newest(live, Timestamp.type)
    timestamp = resign(timestamp_data, keys.timestamp, snapshot_meta=MetaFile(snapshot_version))
    overwrite(live, Timestamp.type, timestamp_version, timestamp)

    with pytest.raises(UnsignedMetadataError):
        device_updater(live, device, tmp_path / "dev").refresh()


# --- rollback ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["delete the newest rows", "replay an older timestamp"])
def test_device_that_saw_newer_metadata_rejects_a_rollback(
    live: LiveRegistry,
    publisher: str,
    device: str,
    make_bundle: MakeBundle,
    tmp_path: Path,
    how: str,
) -> None:
    publish(live, publisher, make_bundle(1))
    device_updater(live, device, tmp_path / "dev").refresh()
    publish(live, publisher, make_bundle(2))
    seen = device_updater(live, device, tmp_path / "dev", provisioned=False)
    assert seen.get_targetinfo(target(2)) is not None  # the device trusts v3 metadata now
    newest_version, _ = newest(live, Timestamp.type)
    assert newest_version == 3

    if how == "delete the newest rows":
        with live.database.transaction(write=True) as session:
            session.execute(delete(TufMetadataRow).where(TufMetadataRow.version == 3))
    else:
        overwrite(live, Timestamp.type, 3, stored(live, Timestamp.type)[2])
    assert served_timestamp(live, device).version == 2

    for provisioned in (True, False):  # with or without the root it shipped with
        with pytest.raises(BadVersionNumberError):
            device_updater(live, device, tmp_path / "dev", provisioned=provisioned).refresh()
    kept = Metadata.from_file(str(tmp_path / "dev" / "metadata" / "timestamp.json"))
    assert kept.signed.version == 3

    # A device that never saw v3 cannot tell: it accepts v2, which only knows v1.
    fresh = device_updater(live, device, tmp_path / "fresh")
    assert fresh.get_targetinfo(target(1)) is not None
    assert fresh.get_targetinfo(target(2)) is None


# --- freeze and expiry ----------------------------------------------------------------------


def registry_with_clock(
    tmp_path: Path, database_url: str, clock: FixedClock, timestamp_expiry: timedelta
) -> tuple[RegistryConfig, Initialised]:
    config = registry_config(
        tmp_path / "registry", database_url, clock=clock, timestamp_expiry=timestamp_expiry
    )
    return config, init_registry(config)


def serve_with_clock(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> AbstractContextManager[LiveRegistry]:
    """A registry signing with one-day timestamps by ``clock``."""
    return serve_registry(*registry_with_clock(tmp_path, database_url, clock, timedelta(days=1)))


def test_device_rejects_a_frozen_repository_whose_timestamp_expired(
    tmp_path: Path, database_url: str, make_bundle: MakeBundle
) -> None:
    # The registry's clock is stuck three days ago: all it signs expired two days ago.
    clock = FixedClock(datetime.now(UTC) - timedelta(days=3))
    with serve_with_clock(tmp_path, database_url, clock) as live:
        publish(live, live.token("publisher"), make_bundle(1))
        device = live.enrol("dev-1", "store-1")
        stale = served_timestamp(live, device)
        assert stale.expires < datetime.now(UTC)

        with pytest.raises(ExpiredMetadataError, match="timestamp"):
            device_updater(live, device, tmp_path / "dev").refresh()
        assert served_timestamp(live, device).version == stale.version  # nothing re-signed


def test_registry_resigns_the_timestamp_so_devices_recover_without_an_operator(
    tmp_path: Path, database_url: str, make_bundle: MakeBundle
) -> None:
    # Signed 30 hours ago with one-day timestamps: expired for devices, which use real time.
    clock = FixedClock(datetime.now(UTC) - timedelta(hours=30))
    with serve_with_clock(tmp_path, database_url, clock) as live:
        publish(live, live.token("publisher"), make_bundle(1))
        device = live.enrol("dev-1", "store-1")
        before = served_timestamp(live, device)
        with pytest.raises(ExpiredMetadataError, match="timestamp"):
            device_updater(live, device, tmp_path / "dev").refresh()

        clock.advance(timedelta(hours=30).total_seconds())  # past half the lifetime
        after = served_timestamp(live, device)

        assert after.version == before.version + 1
        assert after.expires == clock.now().replace(microsecond=0) + timedelta(days=1)
        assert after.snapshot_meta.version == before.snapshot_meta.version  # only re-signed
        assert served_timestamp(live, device).version == after.version  # once, not per request
        updater = device_updater(live, device, tmp_path / "dev", provisioned=False)
        updater.refresh()
        assert updater.get_targetinfo(target(1)) is not None


def test_snapshot_never_expires_under_a_long_timestamp_lifetime(
    tmp_path: Path, database_url: str, make_bundle: MakeBundle
) -> None:
    # STORECAST_TIMESTAMP_EXPIRY_S accepts 20 days; snapshots live 7 (the default).
    clock = FixedClock(datetime.now(UTC) - timedelta(days=8))
    try:
        config, init = registry_with_clock(tmp_path, database_url, clock, timedelta(days=20))
    except ConfigError:
        return  # refusing such a configuration is a fix as good as re-signing in time
    with serve_registry(config, init) as live:
        publish(live, live.token("publisher"), make_bundle(1))
        clock.advance(timedelta(days=8).total_seconds())  # the registry's clock is now real
        device = live.enrol("dev-1", "store-1")
        # The timestamp has 12 of its 20 days left, so nothing is re-signed, but the
        # snapshot it names expired a day ago.
        device_updater(live, device, tmp_path / "dev").refresh()


# --- keys ---------------------------------------------------------------------------------


def replace_timestamp_key(config: RegistryConfig, scratch: Path) -> Path:
    """Put a fresh timestamp key, one root does not list, in place of the registry's.

    Keys load when the app is created: restart the server to use it. Returns its path.
    """
    generate_keys(scratch / "keys", scratch / "offline" / "root.pem")
    wrong_key = scratch / "keys" / "timestamp.pem"
    shutil.copyfile(wrong_key, config.keys_dir / "timestamp.pem")
    return wrong_key


def test_wrong_timestamp_key_is_refused_by_the_registry_and_by_devices(
    registry_home: tuple[RegistryConfig, Initialised], make_bundle: MakeBundle, tmp_path: Path
) -> None:
    config, init = registry_home
    with serve_registry(config, init) as live:
        publisher = live.token("publisher")
        device = live.enrol("dev-1", "store-1")
        publish(live, publisher, make_bundle(1))
        device_updater(live, device, tmp_path / "dev").refresh()

    wrong_key = replace_timestamp_key(config, tmp_path / "other")
    with serve_registry(config, init) as live:
        before = {role: newest(live, role)[0] for role in ("targets", "snapshot", "timestamp")}
        bundle = make_bundle(2)
        with live.client(publisher) as http:
            refused = http.post(
                "/v1/models", content=bundle, headers={"Content-Type": "application/x-tar"}
            )
            versions = http.get(f"/v1/models/{MODEL}").json()["versions"]
        assert refused.status_code == 500
        assert refused.json()["error"]["code"] == "internal_error"
        assert [v["version"] for v in versions] == [1]  # nothing half-published
        assert {role: newest(live, role)[0] for role in before} == before
        digest = hashlib.sha256(bundle).hexdigest()
        assert not ArtifactStore(config.artifacts_dir).exists(digest)  # no orphan file

        # What the server refused to sign, an attacker with that key writes straight in.
        version, data = newest(live, Timestamp.type)
        forged = resign(data, load_signer(wrong_key), version=version + 1)
        insert(live, Timestamp.type, version + 1, forged)
        for home in ("dev", "fresh"):
            with pytest.raises(UnsignedMetadataError):
                device_updater(live, device, tmp_path / home).refresh()


# --- withdrawal ---------------------------------------------------------------------------


def test_withdrawn_version_is_no_longer_a_tuf_target(
    live: LiveRegistry, publisher: str, device: str, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    publish(live, publisher, make_bundle(1))
    publish(live, publisher, make_bundle(2))
    assert device_updater(live, device, tmp_path / "dev").get_targetinfo(target(1)) is not None

    with live.client(publisher) as http:
        response = http.post(
            f"/v1/models/{MODEL}/versions/1/withdraw", json={"reason": "bad forecasts"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["withdrawn"] is True

    for home in ("dev", "fresh"):
        updater = device_updater(live, device, tmp_path / home)
        updater.refresh()
        assert updater.get_targetinfo(target(1)) is None
        assert updater.get_targetinfo(target(2)) is not None

    # Nor can the withdrawn bundle be fetched by its hash-prefixed target path.
    digest = hashlib.sha256(make_bundle(1)).hexdigest()
    directory, filename = target(1).split("/")
    with live.client(device) as http:
        gone = http.get(f"/tuf/targets/{directory}/{digest}.{filename}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


def test_bearer_fetcher_reports_a_missing_metadata_version_as_404(
    live: LiveRegistry, device: str
) -> None:
    fetcher = BearerFetcher(device, client=httpx.Client())
    assert fetcher.download_bytes(f"{live.url}/tuf/metadata/1.root.json", 100_000)
    with pytest.raises(DownloadHTTPError) as raised:
        fetcher.download_bytes(f"{live.url}/tuf/metadata/99.root.json", 100_000)
    assert raised.value.status_code == 404


def test_a_failed_timestamp_resign_still_serves_the_valid_timestamp(
    tmp_path: Path, database_url: str, make_bundle: MakeBundle
) -> None:
    clock = FixedClock(datetime.now(UTC))
    config, init = registry_with_clock(tmp_path, database_url, clock, timedelta(days=1))
    with serve_registry(config, init) as live:
        publish(live, live.token("publisher"), make_bundle(1))
        device = live.enrol("dev-1", "store-1")
        stored_timestamp = served_timestamp(live, device)
    replace_timestamp_key(config, tmp_path / "other")  # re-signing will now fail
    clock.advance(timedelta(hours=13).total_seconds())  # due for re-signing, valid for 11 h
    with serve_registry(config, init) as live, live.client(device) as http:
        response = http.get("/tuf/metadata/timestamp.json")
        assert response.status_code == 200, response.text
        assert Metadata.from_bytes(response.content).signed.version == stored_timestamp.version
