"""The registry's TUF repository, checked by python-tuf's own client (no network)."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import (
    BadVersionNumberError,
    DownloadHTTPError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    RepositoryError,
    UnsignedMetadataError,
)
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp
from tuf.ngclient import FetcherInterface, Updater

from storecast.common.errors import ConfigError, DataError
from storecast.registry.tuf_repo import (
    Expiry,
    OnlineKeys,
    TufRepository,
    create_root,
    generate_keys,
    load_online_keys,
    load_signer,
    metadata_path,
    parse_metadata_path,
    parse_target_request,
)

METADATA_URL = "http://repo/metadata/"
TARGETS_URL = "http://repo/targets/"
MODEL_PATH = "models/lstm/3.onnx"
MODEL_BYTES = b"pretend this is an onnx graph"
MODEL_SHA256 = "4b0f1d7c1e7b0a0e2d6c1d2f9a5e3c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d"
DEFAULT_EXPIRY = Expiry()


@dataclass
class MemoryStore:
    """A ``MetadataStore`` in a dict: role -> version -> bytes, plus the latest version."""

    versions: dict[str, dict[int, bytes]] = field(default_factory=dict)
    newest: dict[str, int] = field(default_factory=dict)

    def latest(self, role: str) -> bytes | None:
        return self.get(role, self.newest[role]) if role in self.newest else None

    def get(self, role: str, version: int) -> bytes | None:
        return self.versions.get(role, {}).get(version)

    def put(self, role: str, version: int, data: bytes) -> None:
        self.versions.setdefault(role, {})[version] = data
        self.newest[role] = version

    def latest_version(self, role: str) -> int:
        return self.newest[role]


class StoreFetcher(FetcherInterface):
    """Serves the store as the registry's HTTP API would, and target bytes by path."""

    def __init__(self, store: MemoryStore, blobs: dict[str, bytes]) -> None:
        self.store = store
        self.blobs = blobs

    def _fetch(self, url: str) -> Iterator[bytes]:
        data = None
        if url.startswith(METADATA_URL):
            wanted = parse_metadata_path(url.removeprefix(METADATA_URL))
            if wanted is not None:
                role, version = wanted
                data = self.store.latest(role) if version is None else self.store.get(role, version)
        elif url.startswith(TARGETS_URL):
            request = parse_target_request(url.removeprefix(TARGETS_URL))
            if request is not None:
                data = self.blobs.get(request[0])
        if data is None:
            raise DownloadHTTPError(f"{url} not found", 404)
        return iter([data])


@dataclass
class World:
    """A bootstrapped repository, the keys behind it, and what it serves."""

    tmp_path: Path
    store: MemoryStore
    keys: OnlineKeys
    root: bytes
    now: datetime
    blobs: dict[str, bytes]

    def repo(self, now: datetime | None = None, expiry: Expiry = DEFAULT_EXPIRY) -> TufRepository:
        return TufRepository(self.store, self.keys, now or self.now, expiry)

    def publish_model(self) -> None:
        self.blobs[MODEL_PATH] = MODEL_BYTES
        self.repo().add_target(MODEL_PATH, sha256_of(MODEL_BYTES), len(MODEL_BYTES), {"v": 3})

    def client(self, name: str = "device") -> Updater:
        """An updater that keeps its trusted metadata in a folder per ``name``."""
        return Updater(
            str(self.tmp_path / name / "metadata"),
            METADATA_URL,
            str(self.tmp_path / name / "targets"),
            TARGETS_URL,
            fetcher=StoreFetcher(self.store, self.blobs),
            bootstrap=self.root,
        )


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fresh_online_keys() -> OnlineKeys:
    return OnlineKeys(
        targets=CryptoSigner.generate_ed25519(),
        snapshot=CryptoSigner.generate_ed25519(),
        timestamp=CryptoSigner.generate_ed25519(),
    )


def make_world(tmp_path: Path, now: datetime, expiry: Expiry = DEFAULT_EXPIRY) -> World:
    keys = fresh_online_keys()
    root = create_root(CryptoSigner.generate_ed25519(), keys, now, expiry)
    world = World(tmp_path, MemoryStore(), keys, root, now, {})
    world.repo(expiry=expiry).bootstrap(root)
    return world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, datetime.now(UTC))


def signed_of(data: bytes | None) -> Metadata[Any]:
    assert data is not None
    return Metadata.from_bytes(data)


# --- keys -------------------------------------------------------------------------------


def test_generate_keys_writes_owner_only_files_with_root_key_apart(tmp_path: Path) -> None:
    keys_dir, root_key = tmp_path / "online", tmp_path / "offline" / "root.pem"
    generate_keys(keys_dir, root_key)

    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in keys_dir.iterdir()) == [
        "snapshot.pem",
        "targets.pem",
        "timestamp.pem",
    ]
    for key_file in [*keys_dir.iterdir(), root_key]:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    online = load_online_keys(keys_dir)
    keyids = {s.public_key.keyid for s in (online.targets, online.snapshot, online.timestamp)}
    keyids.add(load_signer(root_key).public_key.keyid)
    assert len(keyids) == 4


def test_generate_keys_refuses_to_overwrite_existing_keys(tmp_path: Path) -> None:
    keys_dir, root_key = tmp_path / "online", tmp_path / "offline" / "root.pem"
    generate_keys(keys_dir, root_key)
    before = {p: p.read_bytes() for p in [*keys_dir.iterdir(), root_key]}

    with pytest.raises(ConfigError, match="overwrite"):
        generate_keys(keys_dir, root_key)
    with pytest.raises(ConfigError, match="overwrite"):
        generate_keys(tmp_path / "other", root_key)
    assert {p: p.read_bytes() for p in before} == before


def test_generate_keys_refuses_root_key_beside_online_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root key"):
        generate_keys(tmp_path / "keys", tmp_path / "keys" / "root.pem")
    assert not (tmp_path / "keys").exists()


def test_load_online_keys_names_the_missing_key(tmp_path: Path) -> None:
    generate_keys(tmp_path / "online", tmp_path / "offline" / "root.pem")
    (tmp_path / "online" / "snapshot.pem").unlink()
    with pytest.raises(ConfigError, match=r"snapshot\.pem is missing"):
        load_online_keys(tmp_path / "online")
    with pytest.raises(ConfigError, match="missing"):
        load_online_keys(tmp_path / "nowhere")


def test_load_signer_rejects_a_file_that_is_not_a_pem_key(tmp_path: Path) -> None:
    garbage = tmp_path / "targets.pem"
    garbage.write_bytes(b"not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        load_signer(garbage)


# --- publishing, as the client sees it --------------------------------------------------


def test_client_downloads_published_target_with_its_custom_fields(world: World) -> None:
    world.publish_model()
    client = world.client()
    client.refresh()

    info = client.get_targetinfo(MODEL_PATH)
    assert info is not None
    assert info.custom == {"v": 3}
    assert info.hashes == {"sha256": sha256_of(MODEL_BYTES)}
    assert Path(client.download_target(info)).read_bytes() == MODEL_BYTES


def test_client_no_longer_finds_a_withdrawn_target(world: World) -> None:
    world.publish_model()
    world.client("before").refresh()

    assert world.repo().remove_target(MODEL_PATH) is True
    assert world.repo().targets() == {}
    assert world.client("before").get_targetinfo(MODEL_PATH) is None


def test_removing_an_unknown_target_publishes_nothing(world: World) -> None:
    versions = dict(world.store.newest)
    assert world.repo().remove_target("models/never.onnx") is False
    assert world.store.newest == versions


def test_versions_grow_by_one_and_snapshot_names_the_newest_targets(world: World) -> None:
    repo = world.repo()
    for n in range(1, 4):
        repo.add_target(f"models/{n}.onnx", MODEL_SHA256, n, {"n": n})
        for role in ("targets", "snapshot", "timestamp"):
            assert world.store.latest_version(role) == 1 + n
            assert signed_of(world.store.latest(role)).signed.version == 1 + n

    snapshot = signed_of(world.store.latest("snapshot")).signed
    timestamp = signed_of(world.store.latest("timestamp")).signed
    assert isinstance(snapshot, Snapshot) and isinstance(timestamp, Timestamp)
    assert snapshot.meta["targets.json"].version == world.store.latest_version("targets")
    assert timestamp.snapshot_meta.version == world.store.latest_version("snapshot")
    assert sorted(repo.targets()) == ["models/1.onnx", "models/2.onnx", "models/3.onnx"]
    assert world.store.get("targets", 1) is not None  # old versions stay for clients


def test_add_target_rejects_unsafe_paths_and_malformed_digests(world: World) -> None:
    repo = world.repo()
    for path in ["../x.onnx", "/abs.onnx", "a//b.onnx", "a/./b", "", "a\\b", "a/\nb"]:
        with pytest.raises(DataError):
            repo.add_target(path, MODEL_SHA256, 1, {})
    for digest in ["ab", MODEL_SHA256.upper(), "g" * 64]:
        with pytest.raises(DataError):
            repo.add_target("m.onnx", digest, 1, {})
    with pytest.raises(DataError):
        repo.add_target("m.onnx", MODEL_SHA256, -1, {})
    with pytest.raises(DataError, match="custom"):
        repo.add_target("m.onnx", MODEL_SHA256, 1, {"when": datetime.now(UTC)})
    assert world.store.latest_version("targets") == 1


def test_bootstrap_refuses_a_store_that_already_has_a_root(world: World) -> None:
    with pytest.raises(ConfigError, match="already"):
        world.repo().bootstrap(world.root)


def test_bootstrap_refuses_a_root_that_does_not_list_the_online_keys(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    root = create_root(CryptoSigner.generate_ed25519(), fresh_online_keys(), now, Expiry())
    store = MemoryStore()
    with pytest.raises(ConfigError, match="not listed"):
        TufRepository(store, fresh_online_keys(), now).bootstrap(root)
    assert store.newest == {}


def test_repository_refuses_to_sign_with_an_online_key_not_in_root(world: World) -> None:
    keys = replace(world.keys, timestamp=CryptoSigner.generate_ed25519())
    with pytest.raises(ConfigError, match="timestamp key"):
        TufRepository(world.store, keys, world.now).add_target("m.onnx", MODEL_SHA256, 1, {})


def test_corrupt_stored_metadata_is_a_data_error(world: World) -> None:
    world.store.put("targets", 2, b"{not json")
    with pytest.raises(DataError, match="unreadable"):
        world.repo().targets()
    world.store.put("targets", 3, world.store.get("snapshot", 1) or b"")
    with pytest.raises(DataError, match="expected targets"):
        world.repo().targets()


# --- attacks the client must catch ------------------------------------------------------


def test_client_rejects_tampered_target_bytes(world: World) -> None:
    world.publish_model()
    world.blobs[MODEL_PATH] = MODEL_BYTES.replace(b"onnx", b"evil")
    client = world.client()
    info = client.get_targetinfo(MODEL_PATH)
    assert info is not None
    with pytest.raises(LengthOrHashMismatchError):
        client.download_target(info)


def test_client_rejects_tampered_targets_metadata(world: World) -> None:
    world.publish_model()
    version = world.store.latest_version("targets")
    original = world.store.get("targets", version) or b""
    tampered = original.replace(b'"custom":{"v":3}', b'"custom":{"v":4}')
    assert tampered != original
    world.store.put("targets", version, tampered)
    with pytest.raises(RepositoryError):
        world.client().refresh()


def test_client_rejects_targets_metadata_whose_signature_is_broken(world: World) -> None:
    # Re-point snapshot at the tampered bytes so only the signature check can catch it.
    world.publish_model()
    repo_keys = world.keys
    targets_md = signed_of(world.store.latest("targets"))
    targets_md.signed.targets[MODEL_PATH].unrecognized_fields["custom"] = {"v": 4}
    tampered = targets_md.to_bytes()  # old signature, new content
    world.store.put("targets", targets_md.signed.version, tampered)
    snapshot_md = signed_of(world.store.latest("snapshot"))
    snapshot_md.signed.meta["targets.json"] = MetaFile(targets_md.signed.version)
    snapshot_md.sign(repo_keys.snapshot)
    world.store.put("snapshot", snapshot_md.signed.version, snapshot_md.to_bytes())
    timestamp_md = signed_of(world.store.latest("timestamp"))
    assert isinstance(timestamp_md.signed, Timestamp)
    timestamp_md.signed.snapshot_meta = MetaFile(snapshot_md.signed.version)
    timestamp_md.sign(repo_keys.timestamp)
    world.store.put("timestamp", timestamp_md.signed.version, timestamp_md.to_bytes())

    with pytest.raises(UnsignedMetadataError):
        world.client().refresh()


def test_client_rejects_rollback_to_an_older_timestamp(world: World) -> None:
    world.publish_model()
    world.client().refresh()
    world.store.put("timestamp", 1, world.store.get("timestamp", 1) or b"")
    with pytest.raises(BadVersionNumberError):
        world.client().refresh()


def test_client_rejects_a_timestamp_that_points_back_to_an_older_snapshot(world: World) -> None:
    world.publish_model()
    world.client().refresh()
    timestamp_md = signed_of(world.store.latest("timestamp"))
    assert isinstance(timestamp_md.signed, Timestamp)
    timestamp_md.signed.version += 1
    timestamp_md.signed.snapshot_meta = MetaFile(1)
    timestamp_md.sign(world.keys.timestamp)
    world.store.put("timestamp", timestamp_md.signed.version, timestamp_md.to_bytes())
    with pytest.raises(BadVersionNumberError):
        world.client().refresh()


def test_client_rejects_an_older_snapshot_served_under_the_newest_name(world: World) -> None:
    world.publish_model()
    world.store.put("snapshot", 2, world.store.get("snapshot", 1) or b"")
    with pytest.raises(RepositoryError):
        world.client().refresh()


def test_client_rejects_an_expired_timestamp(tmp_path: Path) -> None:
    # Published two days ago with one-day timestamps and nobody refreshed: a freeze.
    world = make_world(tmp_path, datetime.now(UTC) - timedelta(days=2))
    world.publish_model()
    with pytest.raises(ExpiredMetadataError):
        world.client().refresh()


def test_client_rejects_a_timestamp_signed_by_a_key_not_in_root(world: World) -> None:
    world.publish_model()
    timestamp_md = signed_of(world.store.latest("timestamp"))
    timestamp_md.signed.version += 1
    timestamp_md.sign(CryptoSigner.generate_ed25519())
    world.store.put("timestamp", timestamp_md.signed.version, timestamp_md.to_bytes())
    with pytest.raises(UnsignedMetadataError):
        world.client().refresh()


# --- refresh ----------------------------------------------------------------------------


def test_refresh_resigns_only_the_timestamp_past_half_its_period(world: World) -> None:
    versions = dict(world.store.newest)
    assert world.repo(world.now + timedelta(hours=13)).refresh() is True
    assert world.store.latest_version("timestamp") == versions["timestamp"] + 1
    assert world.store.latest_version("snapshot") == versions["snapshot"]
    assert world.store.latest_version("targets") == versions["targets"]
    world.client().refresh()


def test_refresh_leaves_metadata_alone_before_half_its_period(world: World) -> None:
    versions = dict(world.store.newest)
    assert world.repo(world.now + timedelta(hours=11)).refresh() is False
    assert world.store.newest == versions


def test_refresh_is_idempotent(world: World) -> None:
    later = world.now + timedelta(days=4)
    assert world.repo(later).refresh() is True
    versions = dict(world.store.newest)
    assert world.repo(later).refresh() is False
    assert world.store.newest == versions


def test_refresh_of_expiring_snapshot_also_moves_timestamp(world: World) -> None:
    versions = dict(world.store.newest)
    assert world.repo(world.now + timedelta(days=4)).refresh() is True
    assert world.store.latest_version("targets") == versions["targets"]
    assert world.store.latest_version("snapshot") == versions["snapshot"] + 1
    assert world.store.latest_version("timestamp") == versions["timestamp"] + 1


def test_refresh_of_expiring_targets_moves_snapshot_and_timestamp_once(world: World) -> None:
    versions = dict(world.store.newest)
    assert world.repo(world.now + timedelta(days=200)).refresh() is True
    for role in ("targets", "snapshot", "timestamp"):
        assert world.store.latest_version(role) == versions[role] + 1
    targets = signed_of(world.store.latest("targets")).signed
    assert isinstance(targets, Targets)
    assert targets.expires > world.now + timedelta(days=500)


def test_client_that_saw_old_metadata_accepts_refreshed_metadata(world: World) -> None:
    world.publish_model()
    world.client().refresh()
    assert world.repo(world.now + timedelta(hours=20)).refresh() is True
    client = world.client()
    client.refresh()
    assert client.get_targetinfo(MODEL_PATH) is not None


def test_repository_rejects_naive_datetimes(world: World) -> None:
    with pytest.raises(ConfigError, match="timezone"):
        TufRepository(world.store, world.keys, datetime(2030, 1, 1))


# --- names on the wire ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1.root.json", ("root", 1)),
        ("12.targets.json", ("targets", 12)),
        ("3.snapshot.json", ("snapshot", 3)),
        ("timestamp.json", ("timestamp", None)),
        ("root.json", ("root", None)),
        ("snapshot.json", ("snapshot", None)),
    ],
)
def test_parse_metadata_path_accepts_client_names(
    name: str, expected: tuple[str, int | None]
) -> None:
    assert parse_metadata_path(name) == expected
    assert metadata_path(*expected) == name


@pytest.mark.parametrize(
    "name",
    [
        "1.timestamp.json",
        "0.root.json",
        "01.root.json",
        "-1.root.json",
        "+1.root.json",
        "1.5.root.json",
        "x.root.json",
        ".root.json",
        "1.mirrors.json",
        "1.root.JSON",
        "1.root",
        "root",
        "",
        "1.root.json/",
        "../1.root.json",
        "١.root.json",  # an Arabic-Indic digit
        "9" * 30 + ".root.json",
    ],
)
def test_parse_metadata_path_rejects_other_names(name: str) -> None:
    assert parse_metadata_path(name) is None


def test_metadata_path_gives_timestamp_without_version() -> None:
    assert metadata_path("timestamp", 7) == "timestamp.json"
    with pytest.raises(DataError):
        metadata_path("mirrors", 1)
    with pytest.raises(DataError):
        metadata_path("root", 0)


@given(role=st.sampled_from(["root", "targets", "snapshot"]), version=st.integers(1, 2**31 - 1))
def test_metadata_path_round_trips(role: str, version: int) -> None:
    assert parse_metadata_path(metadata_path(role, version)) == (role, version)


def test_metadata_versions_past_what_the_database_holds_are_not_metadata() -> None:
    assert parse_metadata_path(f"{2**31}.root.json") is None


@pytest.mark.parametrize(
    ("request_path", "expected"),
    [
        (f"models/lstm/{MODEL_SHA256}.3.onnx", ("models/lstm/3.onnx", MODEL_SHA256)),
        (f"{MODEL_SHA256}.model.onnx", ("model.onnx", MODEL_SHA256)),
    ],
)
def test_parse_target_request_splits_hash_prefixed_names(
    request_path: str, expected: tuple[str, str]
) -> None:
    assert parse_target_request(request_path) == expected


@pytest.mark.parametrize(
    "request_path",
    [
        "models/3.onnx",
        f"models/{MODEL_SHA256}3.onnx",
        f"models/{MODEL_SHA256}.",
        f"models/{MODEL_SHA256.upper()}.3.onnx",
        f"models/{MODEL_SHA256[:-1]}.3.onnx",
        f"../{MODEL_SHA256}.3.onnx",
        f"models/../{MODEL_SHA256}.3.onnx",
        f"models/./{MODEL_SHA256}.3.onnx",
        f"models//{MODEL_SHA256}.3.onnx",
        f"/models/{MODEL_SHA256}.3.onnx",
        f"{MODEL_SHA256}..",
        f"models\\x/{MODEL_SHA256}.3.onnx",
        "",
    ],
)
def test_parse_target_request_rejects_malformed_or_unsafe_paths(request_path: str) -> None:
    assert parse_target_request(request_path) is None


@given(
    directory=st.lists(st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), max_size=3),
    basename=st.from_regex(r"[a-z0-9_-][a-z0-9_.-]{0,12}", fullmatch=True),
    digest=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
def test_parse_target_request_inverts_the_client_naming(
    directory: list[str], basename: str, digest: str
) -> None:
    target = "/".join([*directory, basename])
    request = "/".join([*directory, f"{digest}.{basename}"])
    assert parse_target_request(request) == (target, digest)


@given(st.text(max_size=80))
def test_parse_target_request_never_returns_an_unsafe_path(request_path: str) -> None:
    parsed = parse_target_request(request_path)
    if parsed is not None:
        segments = parsed[0].split("/")
        assert all(s not in ("", ".", "..") for s in segments)
        assert not parsed[0].startswith("/")
