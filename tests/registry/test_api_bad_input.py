"""Bad input gets a clear JSON error and changes nothing: no rows (but its audit record), no
artifact files, no new TUF metadata.

One registry per database backend serves this module: every test compares the state
right before and right after its own request, so sharing the registry hides nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from storecast.analytics.tables import ApiUsageRow
from storecast.bundle import read_members
from storecast.common.audit import AuditRow
from storecast.common.db import Base, make_engine
from storecast.registry.setup import init_registry
from storecast.registry.tables import TufMetadataRow
from tests.bundle.test_bundle import tar_bytes
from tests.conftest import postgres_database
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry

MODEL = "demand-lstm"
TAR = {"Content-Type": "application/x-tar"}
HUGE = 10**20  # beyond any database integer


@dataclass
class Registry:
    """A live registry, a direct database connection, and a device enrolled in it."""

    live: LiveRegistry
    engine: Engine
    device_token: str

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def admin(self) -> httpx.Client:
        return self.live.client(self.live.admin)

    def state(self) -> dict[str, Any]:
        """Every row but the call logs' (audit, API usage), every artifact file, and the
        newest TUF versions."""
        rows: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                if table.name in (AuditRow.__tablename__, ApiUsageRow.__tablename__):
                    continue
                stmt = select(table).order_by(*table.primary_key.columns)
                rows[table.name] = [tuple(row) for row in conn.execute(stmt)]
            tuf = dict(
                conn.execute(
                    select(TufMetadataRow.role, func.max(TufMetadataRow.version)).group_by(
                        TufMetadataRow.role
                    )
                ).all()
            )
        root = self.live.config.artifacts_dir
        files = {
            str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        return {"tuf": tuf, "files": files, "rows": rows}

    def audit_tail(self, after: int) -> list[AuditRow]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq))
            )

    def audit_length(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AuditRow)).scalar_one())


@contextmanager
def _serve(
    home: Path, url: str, bundle: bytes, **overrides: Any
) -> Iterator[tuple[LiveRegistry, Engine, str]]:
    config = registry_config(home / "registry", url, **overrides)
    with serve_registry(config, init_registry(config)) as live:
        if bundle:
            with live.client(live.admin) as http:
                http.post("/v1/models", content=bundle, headers=TAR).raise_for_status()
        device = live.enrol("dev-1", "store-1")
        engine = make_engine(config.db_url)
        try:
            yield live, engine, device
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def registry(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    bundle_v1: bytes,
) -> Iterator[Registry]:
    """A registry holding demand-lstm v1 and one device, on each backend."""
    home = tmp_path_factory.mktemp(f"bad-input-{request.param}")
    if request.param == "sqlite":
        with _serve(home, f"sqlite:///{home / 'cloud.db'}", bundle_v1) as parts:
            yield Registry(*parts)
        return
    if not postgres_available:
        pytest.skip("PostgreSQL is not reachable (set STORECAST_REQUIRE_POSTGRES=1 to fail)")
    with postgres_database() as url, _serve(home, url, bundle_v1) as parts:
        yield Registry(*parts)


def assert_refused_cleanly(
    registry: Registry,
    send: Callable[[], httpx.Response],
    statuses: tuple[int, ...],
    *,
    code: str | None = None,
    mentions: str | None = None,
    audited: bool = True,
) -> dict[str, Any]:
    """Send a bad request; check its JSON error and that nothing but the audit log changed."""
    before, audit_before = registry.state(), registry.audit_length()
    response = send()
    assert response.status_code in statuses, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if mentions is not None:
        assert mentions in error["message"]
    after = registry.state()
    assert after["tuf"] == before["tuf"]
    assert after["files"] == before["files"]
    assert after["rows"] == before["rows"]
    records = registry.audit_tail(audit_before)
    if audited:
        assert [(r.outcome, r.status) for r in records] == [("failed", response.status_code)]
        assert records[0].detail and "error" in json.loads(records[0].detail)
    else:
        assert records == []
    return dict(error)


# -- bundles that are not bundles --------------------------------------------------------------


def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def with_members(bundle: bytes, changes: dict[str, bytes | None]) -> bytes:
    """The bundle re-stamped as v2 (so no version clash), members changed (None: removed)."""
    return with_metadata(bundle, lambda meta: None, changes)


def with_metadata(
    bundle: bytes,
    edit: Callable[[dict[str, Any]], object],
    changes: dict[str, bytes | None] | None = None,
) -> bytes:
    """The bundle re-stamped as v2 with its metadata edited, members changed as given."""
    original = read_members(bundle)
    members: dict[str, bytes | None] = dict(original)
    meta = json.loads(original["metadata.json"])
    meta["version"] = 2
    edit(meta)
    members["metadata.json"] = json.dumps(meta).encode()
    members.update(changes or {})
    return tar_bytes([member(n, d) for n, d in sorted(members.items()) if d is not None])


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def real_members(bundle: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [member(name, data) for name, data in sorted(read_members(bundle).items())]


BAD_BUNDLES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "random-bytes": (lambda b: random.Random(7).randbytes(4096), "not a tar archive"),
    "empty-body": (lambda b: b"", "empty"),
    "truncated": (lambda b: b[: len(b) // 2], "bundle"),
    "gzipped": (lambda b: gzip.compress(b, mtime=0), "not a tar archive"),
    "path-traversal": (
        lambda b: tar_bytes([*real_members(b), member("../x", b"evil")]),
        "unsafe member name",
    ),
    "nested-traversal": (
        lambda b: tar_bytes([*real_members(b), member("a/../../x", b"evil")]),
        "unsafe member name",
    ),
    "absolute-path": (
        lambda b: tar_bytes([*real_members(b), member("/tmp/x", b"evil")]),
        "unsafe member name",
    ),
    "symlink": (
        lambda b: tar_bytes([*real_members(b), special("link", tarfile.SYMTYPE, "/etc/passwd")]),
        "is a link",
    ),
    "hardlink": (
        lambda b: tar_bytes([*real_members(b), special("link", tarfile.LNKTYPE, "model.onnx")]),
        "is a link",
    ),
    "device": (
        lambda b: tar_bytes([*real_members(b), special("tty", tarfile.CHRTYPE)]),
        "non-regular file",
    ),
    "directory": (
        lambda b: tar_bytes([special("models", tarfile.DIRTYPE), *real_members(b)]),
        "non-regular file",
    ),
    "duplicate-member": (
        lambda b: tar_bytes([*real_members(b), member("model.onnx", b"second")]),
        "appears twice",
    ),
    "missing-model": (
        lambda b: with_members(b, {"model.onnx": None}),
        "missing member(s) model.onnx",
    ),
    "extra-member": (
        lambda b: with_members(b, {"notes.txt": b"hi"}),
        "unexpected member(s) notes.txt",
    ),
    "hash-mismatch": (
        lambda b: with_members(b, {"model.onnx": flipped(read_members(b)["model.onnx"], 100)}),
        "model.onnx has sha256",
    ),
    "size-mismatch": (
        lambda b: with_members(b, {"model.onnx": read_members(b)["model.onnx"] + b"\0"}),
        "metadata.json says",
    ),
    "metadata-not-json": (
        lambda b: with_members(b, {"metadata.json": b"{not json"}),
        "metadata.json is not valid JSON",
    ),
    "metadata-unknown-field": (
        lambda b: with_metadata(b, lambda m: m.update(colour="red")),
        "'colour'",
    ),
    "metadata-bad-name": (
        lambda b: with_metadata(b, lambda m: m.update(name="../evil")),
        "'name'",
    ),
    "metadata-missing-field": (
        lambda b: with_metadata(b, lambda m: m.pop("members")),
        "'members'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
def test_a_bad_bundle_is_a_422_that_changes_nothing(registry, bundle_v1, case):
    make, mention = BAD_BUNDLES[case]
    body = make(bundle_v1)
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.post("/v1/models", content=body, headers=TAR),
            (422,),
            code="invalid_bundle",
            mentions=mention,
        )


def test_the_same_version_with_other_bytes_is_a_409_that_changes_nothing(registry, bundle_v1):
    other = with_metadata(
        bundle_v1, lambda meta: meta.update(version=1, lineage={"code_commit": "feedface"})
    )
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.post("/v1/models", content=other, headers=TAR),
            (409,),
            code="version_exists",
        )


def test_a_bundle_sent_as_another_media_type_is_a_415(registry, make_bundle):
    bundle = make_bundle(7)
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.post(
                "/v1/models", content=bundle, headers={"Content-Type": "application/json"}
            ),
            (415,),
        )


# -- uploads over the size limit ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_registry(
    tmp_path_factory: pytest.TempPathFactory, bundle_v1: bytes
) -> Iterator[Registry]:
    """A SQLite registry whose upload limit is half a real bundle."""
    home = tmp_path_factory.mktemp("small")
    url = f"sqlite:///{home / 'cloud.db'}"
    with _serve(home, url, b"", max_upload_bytes=len(bundle_v1) // 2) as parts:
        yield Registry(*parts)


def test_an_upload_over_the_limit_is_a_413_that_changes_nothing(small_registry, bundle_v1):
    with small_registry.admin() as http:
        assert_refused_cleanly(
            small_registry,
            lambda: http.post("/v1/models", content=bundle_v1, headers=TAR),
            (413,),
            mentions=str(len(bundle_v1) // 2),
        )


def test_a_chunked_upload_over_the_limit_is_a_413_that_changes_nothing(small_registry, bundle_v1):
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(bundle_v1), 16384):
            yield bundle_v1[start : start + 16384]

    with small_registry.admin() as http:
        assert_refused_cleanly(
            small_registry,
            lambda: http.post("/v1/models", content=chunks(), headers=TAR),
            (413,),
        )


# -- JSON endpoints ----------------------------------------------------------------------------

JSON_ENDPOINTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "tokens": ("POST", "/v1/tokens", {"name": "ci", "role": "viewer"}),
    "devices": ("POST", "/v1/devices", {"device_id": "dev-9", "store_id": "s", "region": "r"}),
    "deployments": ("POST", "/v1/deployments", {"model": MODEL, "version": 1}),
    "alias": ("PUT", f"/v1/models/{MODEL}/aliases/production", {"version": 1}),
    "withdraw": ("POST", f"/v1/models/{MODEL}/versions/1/withdraw", {"reason": "test"}),
}


@pytest.mark.parametrize("endpoint", list(JSON_ENDPOINTS))
@pytest.mark.parametrize(
    "raw",
    ['{"version": 1', "[1, 2", "{'single': 'quotes'}", "\xff"],
    ids=["cut-object", "cut-array", "python-quotes", "not-utf8"],
)
def test_malformed_json_is_a_400_that_changes_nothing(registry, endpoint, raw):
    method, path, _ = JSON_ENDPOINTS[endpoint]
    data = raw.encode("latin-1")
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.request(
                method, path, content=data, headers={"Content-Type": "application/json"}
            ),
            (400,),
            code="malformed_json",
        )


@pytest.mark.parametrize("endpoint", list(JSON_ENDPOINTS))
@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_sent_as_another_media_type_is_a_415(registry, endpoint, media):
    method, path, body = JSON_ENDPOINTS[endpoint]
    headers = {"Content-Type": media} if media else {}
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.request(method, path, content=json.dumps(body), headers=headers),
            (415,),
            code="unsupported_media_type",
        )


@pytest.mark.parametrize("endpoint", list(JSON_ENDPOINTS))
def test_an_unknown_field_is_a_422_naming_the_field(registry, endpoint):
    method, path, body = JSON_ENDPOINTS[endpoint]
    with registry.admin() as http:
        error = assert_refused_cleanly(
            registry,
            lambda: http.request(method, path, json={**body, "surprise": True}),
            (422,),
            code="validation_error",
            mentions="surprise",
        )
    assert [f["field"] for f in error["fields"]] == ["surprise"]


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("tokens", {"name": "", "role": "viewer"}, "name"),
        ("tokens", {"name": "x", "role": "root"}, "role"),
        ("devices", {"device_id": "has space", "store_id": "s", "region": "r"}, "device_id"),
        ("devices", {"store_id": "s", "region": "r"}, "device_id"),
        ("deployments", {"model": "Bad Name", "version": 1}, "model"),
        ("deployments", {"model": MODEL, "version": 0}, "version"),
        ("alias", {"version": "one"}, "version"),
        ("withdraw", {"reason": ""}, "reason"),
        ("withdraw", {}, "reason"),
    ],
)
def test_an_invalid_field_is_a_422_naming_the_field(registry, endpoint, body, field):
    method, path, _ = JSON_ENDPOINTS[endpoint]
    with registry.admin() as http:
        error = assert_refused_cleanly(
            registry,
            lambda: http.request(method, path, json=body),
            (422,),
            code="validation_error",
        )
    assert field in [f["field"] for f in error["fields"]]
    assert error["message"].startswith(error["fields"][0]["field"])


def test_a_non_object_json_body_is_a_422(registry):
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.post("/v1/tokens", json=["name", "role"]),
            (422,),
            code="validation_error",
        )


def test_an_invalid_alias_name_is_a_422(registry):
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.put(f"/v1/models/{MODEL}/aliases/Not-Lower", json={"version": 1}),
            (422,),
            mentions="alias",
        )


def test_an_unknown_query_parameter_is_a_422_naming_it(registry):
    with registry.live.client(registry.device_token) as device:
        before = registry.state()
        response = device.get("/v1/devices/dev-1/assignment", params={"colour": "red"})
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["colour"]
    assert registry.state()["rows"]["devices"] == before["rows"]["devices"]


# -- numbers and strings the database cannot hold ----------------------------------------------

INTEGER_OVERFLOWS = {
    "deployment-id": ("GET", "/v1/deployments/{huge}", None, False),
    "version-path": ("GET", "/v1/models/demand-lstm/versions/{huge}", None, False),
    "withdraw-path": (
        "POST",
        "/v1/models/demand-lstm/versions/{huge}/withdraw",
        {"reason": "x"},
        True,
    ),
    "alias-body": ("PUT", "/v1/models/demand-lstm/aliases/production", {"version": HUGE}, True),
    "deployment-body": ("POST", "/v1/deployments", {"model": MODEL, "version": HUGE}, True),
}


@pytest.mark.parametrize("case", list(INTEGER_OVERFLOWS))
def test_an_integer_too_large_for_the_database_is_a_4xx_not_a_500(registry, case):
    method, path, body, audited = INTEGER_OVERFLOWS[case]
    with registry.admin() as http:
        assert_refused_cleanly(
            registry,
            lambda: http.request(method, path.format(huge=HUGE), json=body),
            (404, 422),
            audited=audited,
        )


def test_a_device_reporting_an_impossible_version_is_a_422_not_a_500(registry):
    with registry.live.client(registry.device_token) as device:
        before = registry.state()
        response = device.get(
            "/v1/devices/dev-1/assignment",
            params={"current_model": MODEL, "current_version": HUGE},
        )
    assert response.status_code == 422, response.text
    assert registry.state()["rows"] == before["rows"]


NUL_PATHS = {
    "show-device": ("GET", "/v1/devices/a%00b", False),
    "decommission": ("DELETE", "/v1/devices/a%00b", True),
    "revoke-token": ("DELETE", "/v1/tokens/a%00b", True),
}


@pytest.mark.parametrize("case", list(NUL_PATHS))
def test_a_nul_byte_in_a_path_id_is_a_404(registry, case):
    method, path, audited = NUL_PATHS[case]
    with registry.admin() as http:
        assert_refused_cleanly(
            registry, lambda: http.request(method, path), (404,), code="not_found", audited=audited
        )


def test_a_nul_byte_in_an_audit_filter_is_a_422_naming_it(registry):
    with registry.admin() as http:
        response = http.get("/v1/audit", params={"actor": "a\x00b"})
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["actor"]
