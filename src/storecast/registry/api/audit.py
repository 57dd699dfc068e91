"""``/v1/audit``: read, filter and export the audit log, and check its hash chain."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, stream_with_context
from sqlalchemy import Select, select

from storecast.common import audit
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import endpoint, parse_query
from storecast.registry import schemas

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")

CSV_FIELDS = [*audit.FIELDS, "prev_hash", "hash"]


def _filtered(query: schemas.AuditQuery) -> Select[audit.AuditRow]:
    stmt = select(audit.AuditRow).order_by(audit.AuditRow.seq)
    if query.actor:
        stmt = stmt.where(audit.AuditRow.actor.contains(query.actor, autoescape=True))
    if query.action:
        stmt = stmt.where(audit.AuditRow.action == query.action)
    if query.outcome:
        stmt = stmt.where(audit.AuditRow.outcome == query.outcome)
    if query.since:
        stmt = stmt.where(audit.AuditRow.ts >= query.since)
    if query.until:
        stmt = stmt.where(audit.AuditRow.ts < query.until)
    return stmt.limit(query.limit)


@bp.get("")
@endpoint(
    "Audit records, filtered; format=json, csv or jsonl",
    tag="audit",
    roles=("viewer",),
    query=schemas.AuditQuery,
    responses={200: schemas.AuditList},
    alt_media=("text/csv", "application/x-ndjson"),
)
@authorize(Role.VIEWER)
def list_records() -> Response | dict[str, Any]:
    query = parse_query(schemas.AuditQuery)
    with database().transaction() as session:
        records = [row.as_dict() for row in session.execute(_filtered(query)).scalars()]
    if query.format == "json":
        return {"records": records}
    if query.format == "jsonl":
        lines = (json.dumps(record, sort_keys=True) + "\n" for record in records)
        return Response(
            stream_with_context(lines),
            mimetype="application/x-ndjson",
            headers={"Content-Disposition": "attachment; filename=audit.jsonl"},
        )
    return Response(
        stream_with_context(_csv(records)),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit.csv"},
    )


def _csv(records: list[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "detail": audit.canonical(record["detail"])})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@bp.get("/verify")
@endpoint(
    "Check the audit hash chain; reports the first broken record",
    tag="audit",
    roles=("viewer",),
    responses={200: schemas.ChainStatus},
)
@authorize(Role.VIEWER)
def verify() -> dict[str, Any]:
    with database().transaction() as session:
        report = audit.verify_chain(
            session.execute(select(audit.AuditRow).order_by(audit.AuditRow.seq)).scalars()
        )
    return schemas.ChainStatus(
        ok=report.ok,
        records=report.records,
        first_broken=report.first_broken,
        reason=report.reason,
        head=report.head,
    ).model_dump()
