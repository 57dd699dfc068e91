"""The audit log: a hash chain checked purely, then end to end (SQLite and PostgreSQL):
what each call records, the filters and exports, and tampering found by the API and CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from storecast.common import audit
from storecast.common.audit import GENESIS, AuditRow, canonical, chain_hash, verify_chain
from storecast.common.db import make_engine
from tests.registry.conftest import LiveRegistry

MODEL = "demand-lstm"
TAR = {"Content-Type": "application/x-tar"}
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# -- the chain, purely -------------------------------------------------------------------------


def content_of(row: AuditRow) -> dict[str, Any]:
    """What the chain hashes: every field but the hashes, the time in ISO form."""
    return {
        name: (row.ts.isoformat() if name == "ts" else getattr(row, name)) for name in audit.FIELDS
    }


def make_chain(length: int) -> list[AuditRow]:
    rows, prev = [], GENESIS
    for seq in range(1, length + 1):
        row = AuditRow(
            seq=seq,
            ts=T0 + timedelta(seconds=seq),
            actor=f"tok_{seq:016x}:someone",
            role="admin",
            action="token.create",
            resource=f"token:tok_{seq}",
            outcome="ok",
            status=201,
            request_id=f"req-{seq}",
            client_addr="127.0.0.1",
            detail=canonical({"n": seq}),
            prev_hash=prev,
            hash="",
        )
        row.hash = prev = chain_hash(prev, content_of(row))
        rows.append(row)
    return rows


def test_chain_hash_is_the_sha256_of_the_previous_hash_then_canonical_json():
    content = {"b": 1, "a": "é"}
    expected = hashlib.sha256((GENESIS + '{"a":"é","b":1}').encode("utf-8")).hexdigest()
    assert chain_hash(GENESIS, content) == expected
    assert chain_hash(GENESIS, {"a": "é", "b": 1}) == expected  # key order does not matter


def test_chain_hash_changes_with_the_previous_hash_and_with_any_field():
    content = content_of(make_chain(1)[0])
    base = chain_hash(GENESIS, content)
    assert chain_hash("1" * 64, content) != base
    for name in audit.FIELDS:
        changed = {**content, name: f"{content[name]}x"}
        assert chain_hash(GENESIS, changed) != base, name


def test_an_empty_chain_verifies():
    report = verify_chain([])
    assert (report.ok, report.records, report.first_broken) == (True, 0, None)


def test_an_intact_chain_verifies_and_counts_its_records():
    report = verify_chain(make_chain(5))
    assert (report.ok, report.records, report.first_broken, report.reason) == (True, 5, None, "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("detail", canonical({"n": 999})),
        ("actor", "tok_0000000000000000:mallory"),
        ("outcome", "denied"),
        ("status", 500),
        ("ts", T0),
    ],
)
def test_an_edited_record_is_the_first_broken_one(field, value):
    rows = make_chain(5)
    setattr(rows[2], field, value)
    report = verify_chain(rows)
    assert (report.ok, report.first_broken) == (False, 3)
    assert "edited" in report.reason


def test_an_edit_with_a_recomputed_hash_breaks_the_link_to_the_next_record():
    rows = make_chain(5)
    rows[2].detail = canonical({"n": "forged"})
    rows[2].hash = chain_hash(rows[2].prev_hash, content_of(rows[2]))
    report = verify_chain(rows)
    assert (report.ok, report.first_broken) == (False, 4)
    assert "prev_hash" in report.reason


def test_a_deleted_record_is_reported_missing():
    rows = make_chain(5)
    del rows[2]
    report = verify_chain(rows)
    assert (report.ok, report.first_broken) == (False, 3)
    assert report.reason == "record 3 is missing"


def test_swapped_records_are_reported():
    rows = make_chain(5)
    rows[1], rows[2] = rows[2], rows[1]
    assert verify_chain(rows).first_broken == 2


def test_a_chain_that_does_not_start_at_genesis_is_broken_at_its_first_record():
    rows = make_chain(3)
    rows[0].prev_hash = "f" * 64
    rows[0].hash = chain_hash(rows[0].prev_hash, content_of(rows[0]))
    assert verify_chain(rows).first_broken == 1


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture
def admin(live: LiveRegistry) -> Iterator[httpx.Client]:
    with live.client(live.admin) as http:
        yield http


def records(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


def verify(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/v1/audit/verify")
    assert response.status_code == 200, response.text
    return dict(response.json())


def change_rows(live: LiveRegistry, statement: Any) -> None:
    """Edit the audit table directly, as someone with database access could."""
    engine = make_engine(live.config.db_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(statement).rowcount == 1
    finally:
        engine.dispose()


def busy_registry(live: LiveRegistry, bundle: bytes) -> None:
    """A few calls of every kind, so the log has something in it."""
    with live.client(live.admin) as admin:
        admin.post("/v1/models", content=bundle, headers=TAR).raise_for_status()
        admin.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1})
        admin.post("/v1/tokens", json={"name": "x", "role": "nobody"})  # failed
    with httpx.Client(base_url=live.url) as anonymous:
        anonymous.post("/v1/tokens", json={"name": "x", "role": "viewer"})  # denied
    live.enrol("dev-1", "store-1")


def test_every_mutating_call_and_download_is_recorded_with_who_what_and_how_it_went(
    live, bundle_v1
):
    publisher_token = live.token("publisher", name="ci-publisher")
    admin_actor = f"{live.init.admin_token_id}:first admin"
    done: list[tuple[str, str, int]] = []  # (request id, action, status)

    def call(
        http: httpx.Client,
        action: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        request_id = f"req-{len(done) + 1}"
        headers = {**(headers or {}), "X-Request-ID": request_id}
        response = http.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 300, response.text
        assert response.headers["X-Request-ID"] == request_id
        done.append((request_id, action, response.status_code))
        return response

    with live.client(live.admin) as admin, live.client(publisher_token) as publisher:
        made = call(
            admin, "token.create", "POST", "/v1/tokens", json={"name": "v", "role": "viewer"}
        )
        published = call(
            publisher, "model.publish", "POST", "/v1/models", content=bundle_v1, headers=TAR
        ).json()
        call(
            publisher,
            "model.alias",
            "PUT",
            f"/v1/models/{MODEL}/aliases/production",
            json={"version": 1},
        )
        call(
            publisher,
            "deployment.create",
            "POST",
            "/v1/deployments",
            json={"model": MODEL, "alias": "production"},
        )
        enrolled = call(
            admin,
            "device.enrol",
            "POST",
            "/v1/devices",
            json={"device_id": "dev-1", "store_id": "store-1", "region": "north"},
        ).json()
        call(publisher, "artifact.download", "GET", f"/v1/artifacts/{published['sha256']}")
        with live.client(enrolled["token"]) as device:
            name = published["target_path"].rpartition("/")[2]
            call(
                device,
                "artifact.download",
                "GET",
                f"/tuf/targets/{MODEL}/{published['sha256']}.{name}",
            )
        call(publisher, "model.alias_delete", "DELETE", f"/v1/models/{MODEL}/aliases/production")
        call(
            publisher,
            "model.withdraw",
            "POST",
            f"/v1/models/{MODEL}/versions/1/withdraw",
            json={"reason": "drift"},
        )
        call(admin, "device.decommission", "DELETE", "/v1/devices/dev-1")
        call(admin, "token.revoke", "DELETE", f"/v1/tokens/{made.json()['id']}")

        log = records(admin)
    by_request = {r["request_id"]: r for r in log}
    assert [
        (rid, by_request[rid]["action"], by_request[rid]["status"]) for rid, _, _ in done
    ] == done
    assert [r["request_id"] for r in log if r["request_id"].startswith("req-")] == [
        rid for rid, _, _ in done
    ]
    for record in (by_request[rid] for rid, _, _ in done):
        assert record["outcome"] == "ok"
        assert record["client_addr"] == "127.0.0.1"
        assert record["ts"]

    publisher_actor = by_request["req-2"]["actor"]
    assert publisher_actor.startswith("tok_") and publisher_actor.endswith(":ci-publisher")
    assert (by_request["req-1"]["actor"], by_request["req-1"]["role"]) == (admin_actor, "admin")
    assert by_request["req-2"]["role"] == "publisher"
    assert by_request["req-2"]["resource"] == f"model:{MODEL}/v1"
    assert by_request["req-2"]["detail"] == {"sha256": published["sha256"], "created": True}
    assert by_request["req-3"]["resource"] == f"model:{MODEL}@production"
    assert by_request["req-5"]["resource"] == "device:dev-1"
    assert by_request["req-6"]["resource"] == f"artifact:{published['sha256']}"
    assert by_request["req-7"]["actor"].endswith(":device:dev-1")
    assert by_request["req-7"]["role"] == "device"
    assert by_request["req-7"]["detail"]["sha256"] == published["sha256"]
    assert by_request["req-9"]["detail"] == {"reason": "drift"}
    assert by_request["req-11"]["resource"] == f"token:{made.json()['id']}"

    text = json.dumps(log)
    assert made.json()["token"] not in text
    assert enrolled["token"] not in text
    assert publisher_token not in text


def test_refused_and_failed_calls_are_recorded_as_denied_and_failed(live, admin):
    viewer = live.token("viewer", name="read-only")
    with httpx.Client(base_url=live.url) as anonymous:
        anonymous.post(
            "/v1/tokens", json={"name": "x", "role": "viewer"}, headers={"X-Request-ID": "anon"}
        )
    with live.client(viewer) as http:
        http.post(
            "/v1/deployments", json={"model": MODEL, "version": 1}, headers={"X-Request-ID": "view"}
        )
    admin.post("/v1/models", content=b"not a bundle", headers={**TAR, "X-Request-ID": "junk"})
    admin.delete("/v1/tokens/tok_missing", headers={"X-Request-ID": "gone"})

    by_request = {r["request_id"]: r for r in records(admin)}
    anon = by_request["anon"]
    assert (anon["actor"], anon["role"], anon["outcome"], anon["status"]) == (
        "anonymous",
        "-",
        "denied",
        401,
    )
    view = by_request["view"]
    assert view["actor"].endswith(":read-only")
    assert (view["role"], view["outcome"], view["status"]) == ("viewer", "denied", 403)
    assert view["action"] == "deployment.create"
    junk = by_request["junk"]
    assert (junk["action"], junk["outcome"], junk["status"]) == ("model.publish", "failed", 422)
    assert "not a tar archive" in junk["detail"]["error"]
    gone = by_request["gone"]
    assert (gone["outcome"], gone["status"], gone["resource"]) == (
        "failed",
        404,
        "token:tok_missing",
    )
    assert verify(admin)["ok"] is True


def test_the_log_filters_by_action_actor_outcome_time_and_limit(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    everything = records(admin)
    assert [r["seq"] for r in everything] == list(range(1, len(everything) + 1))
    assert everything[0]["action"] == "registry.init"

    assert {r["action"] for r in records(admin, action="model.publish")} == {"model.publish"}
    assert len(records(admin, action="model.publish")) == 1
    assert {r["outcome"] for r in records(admin, outcome="denied")} == {"denied"}
    assert len(records(admin, outcome="failed")) == 1
    assert {r["actor"] for r in records(admin, actor="first admin")} == {
        f"{live.init.admin_token_id}:first admin"
    }
    assert records(admin, actor="no such actor") == []
    assert [r["seq"] for r in records(admin, limit=2)] == [1, 2]

    middle = everything[len(everything) // 2]
    since = records(admin, since=middle["ts"])
    assert since[0]["seq"] == middle["seq"]
    until = records(admin, until=middle["ts"])
    assert until[-1]["seq"] == middle["seq"] - 1
    assert len(since) + len(until) == len(everything)
    assert records(admin, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []

    for bad in ({"outcome": "maybe"}, {"limit": 0}, {"since": "yesterday"}, {"format": "xml"}):
        response = admin.get("/v1/audit", params=bad)
        assert response.status_code == 422, bad
        assert [f["field"] for f in response.json()["error"]["fields"]] == list(bad)


def test_a_time_filter_without_an_offset_is_read_as_utc_or_refused(admin):
    response = admin.get("/v1/audit", params={"since": "2020-01-01T00:00:00"})
    assert response.status_code in (200, 422), response.text


def test_csv_and_jsonl_exports_hold_the_same_records_as_json(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    expected = records(admin)

    jsonl = admin.get("/v1/audit", params={"format": "jsonl"})
    assert jsonl.status_code == 200
    assert jsonl.headers["Content-Type"].startswith("application/x-ndjson")
    assert "audit.jsonl" in jsonl.headers["Content-Disposition"]
    assert [json.loads(line) for line in jsonl.text.splitlines()] == expected

    exported = admin.get("/v1/audit", params={"format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["Content-Type"].startswith("text/csv")
    assert "audit.csv" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == [*audit.FIELDS, "prev_hash", "hash"]
    parsed = [
        {
            **row,
            "seq": int(row["seq"]),
            "status": int(row["status"]),
            "detail": json.loads(row["detail"]),
        }
        for row in rows
    ]
    assert parsed == expected

    filtered = admin.get("/v1/audit", params={"format": "csv", "outcome": "denied"})
    assert [r["outcome"] for r in csv.DictReader(io.StringIO(filtered.text))] == ["denied"]


def test_the_exported_records_verify_offline_with_verify_chain(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    rows = [
        AuditRow(**{**r, "ts": datetime.fromisoformat(r["ts"]), "detail": canonical(r["detail"])})
        for r in records(admin)
    ]
    assert verify_chain(rows).ok


def test_verify_reports_an_intact_chain(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    report = verify(admin)
    assert report.pop("head") == records(admin)[-1]["hash"]
    assert report == {
        "ok": True,
        "records": len(records(admin)),
        "first_broken": None,
        "reason": "",
    }
    with live.client(live.token("viewer")) as viewer:
        assert viewer.get("/v1/audit/verify").json()["ok"] is True


def test_an_edited_row_is_reported_as_the_first_broken_record(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    target = records(admin, action="model.publish")[0]["seq"]
    forged = canonical({"sha256": "0" * 64, "created": True})
    change_rows(live, update(AuditRow).where(AuditRow.seq == target).values(detail=forged))
    report = verify(admin)
    assert (report["ok"], report["first_broken"]) == (False, target)
    assert "edited" in report["reason"]


def test_a_deleted_row_is_detected(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    target = records(admin, action="model.alias")[0]["seq"]
    change_rows(live, delete(AuditRow).where(AuditRow.seq == target))
    report = verify(admin)
    assert (report["ok"], report["first_broken"]) == (False, target)
    assert report["reason"] == f"record {target} is missing"


def test_the_cli_verify_exits_0_when_intact_and_1_naming_the_broken_record(live, admin, bundle_v1):
    busy_registry(live, bundle_v1)
    command = [
        sys.executable,
        "-m",
        "storecast",
        "audit",
        "verify",
        "--registry",
        live.url,
        "--token",
        live.admin,
    ]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("STORECAST_REGISTRY", None)
    env.pop("STORECAST_TOKEN", None)

    intact = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert intact.returncode == 0, intact.stderr
    assert f"intact: {len(records(admin))} records" in intact.stdout

    target = records(admin, action="device.enrol")[0]["seq"]
    forged = "tok_0000000000000000:someone else"
    change_rows(live, update(AuditRow).where(AuditRow.seq == target).values(actor=forged))
    broken = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert broken.returncode == 1
    assert f"broken at record {target}" in broken.stdout + broken.stderr


def test_concurrent_audited_calls_keep_one_unbroken_chain(live, admin):
    def make_token(n: int) -> int:
        with live.client(live.admin) as http:
            return http.post("/v1/tokens", json={"name": f"t{n}", "role": "viewer"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(make_token, range(24)))
    assert statuses == [201] * 24
    report = verify(admin)
    assert report["ok"] is True
    assert len(records(admin, action="token.create")) == 24


# -- values the audit table must hold ----------------------------------------------------------


def test_a_token_with_the_longest_allowed_name_can_make_audited_calls(live, admin):
    token = live.token("publisher", name="n" * 100)
    with live.client(token) as publisher:
        response = publisher.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1})
    assert response.status_code == 404, response.text
    assert records(admin, actor="n" * 100)[-1]["status"] == 404


def test_an_audited_call_on_a_long_path_is_answered_and_recorded(live, admin):
    for method, path in [
        ("GET", f"/v1/artifacts/{'a' * 400}"),
        ("GET", f"/tuf/targets/{'a' * 400}.tar"),
        ("DELETE", f"/v1/models/{'m' * 400}/aliases/production"),
    ]:
        response = admin.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert records(admin)[-1]["status"] == 404


def test_a_fresh_registry_log_holds_only_its_initialisation(live, admin):
    (only,) = records(admin)
    assert (only["seq"], only["action"], only["prev_hash"]) == (1, "registry.init", GENESIS)
    assert only["detail"] == {"admin_token_id": live.init.admin_token_id}
    report = verify(admin)
    assert re.fullmatch(r"[0-9a-f]{64}", report.pop("head"))
    assert report == {"ok": True, "records": 1, "first_broken": None, "reason": ""}
