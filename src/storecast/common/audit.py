"""The append-only, hash-chained audit log.

Every record carries the SHA-256 of its own content and of the record before it, so
editing, deleting or reordering any row breaks the chain at that row:

    hash(n) = sha256(hash(n-1) || canonical_json(record n without its hash))

``chain_hash`` and ``verify_chain`` are pure; ``append`` writes one record inside the
caller's transaction, serialised against other writers (PostgreSQL advisory lock, SQLite
write lock).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from storecast.common.db import Base, UTCDateTime

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x5C0A_0D17  # arbitrary, fixed: "the audit chain"

FIELDS = (
    "seq",
    "ts",
    "actor",
    "role",
    "action",
    "resource",
    "outcome",
    "status",
    "request_id",
    "client_addr",
    "detail",
)


class AuditRow(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_ts", "ts"),
        Index("ix_audit_log_actor", "actor"),
        Index("ix_audit_log_action", "action"),
    )

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data (what exports and the chain hash see)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
        out["ts"] = self.ts.isoformat()
        out["detail"] = json.loads(self.detail)
        out["prev_hash"] = self.prev_hash
        out["hash"] = self.hash
        return out


@dataclass(frozen=True)
class AuditEntry:
    """What happened, before it gets its place in the chain."""

    ts: datetime
    actor: str
    role: str
    action: str
    resource: str
    outcome: str
    status: int
    request_id: str
    client_addr: str
    detail: dict[str, Any]


def canonical(data: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """The hash of a record whose fields (without hashes) are ``content``."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical(content).encode("utf-8"))
    return digest.hexdigest()


def _content(row: AuditRow) -> dict[str, Any]:
    return {name: (row.ts.isoformat() if name == "ts" else getattr(row, name)) for name in FIELDS}


@dataclass(frozen=True)
class ChainReport:
    """The result of checking the chain: how many records, and the first broken one."""

    records: int
    first_broken: int | None = None
    reason: str = ""
    head: str = GENESIS  # hash of the last record (record it elsewhere to detect truncation)

    @property
    def ok(self) -> bool:
        return self.first_broken is None


def verify_chain(rows: Iterable[AuditRow]) -> ChainReport:
    """Check every link of the chain, in sequence order; report the first break."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            return ChainReport(count, expected_seq, f"record {expected_seq} is missing")
        if row.prev_hash != prev:
            return ChainReport(count, row.seq, "prev_hash does not match the record before")
        if chain_hash(prev, _content(row)) != row.hash:
            return ChainReport(count, row.seq, "content does not match its hash (edited)")
        prev = row.hash
        expected_seq += 1
    return ChainReport(count, head=prev)


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def append(session: Session, entry: AuditEntry) -> AuditRow:
    """Add ``entry`` at the end of the chain (within the caller's write transaction)."""
    _lock_chain(session)
    last = session.execute(
        select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    fields = asdict(entry) | {"ts": entry.ts.astimezone(UTC), "detail": canonical(entry.detail)}
    row = AuditRow(seq=seq, prev_hash=prev, hash="", **fields)
    row.hash = chain_hash(prev, _content(row))
    session.add(row)
    session.flush()
    return row
