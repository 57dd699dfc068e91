"""Bearer tokens and roles, shared by every cloud service.

A token is shown once when it is created and stored only as its SHA-256 (tokens are 256
random bits, so a fast hash is enough). Roles:

    admin      everything, and alone: tokens, device enrolment and decommissioning
    publisher  publish versions, move aliases, withdraw versions, deploy
    device     its own record, assignment and model downloads (bound to one device_id)
    viewer     read-only: models, deployments, devices, the audit log, analytics
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storecast.common.db import Base, UTCDateTime

TOKEN_PREFIX = "sct_"


class Role(StrEnum):
    ADMIN = "admin"
    PUBLISHER = "publisher"
    DEVICE = "device"
    VIEWER = "viewer"


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_tokens_device_id", "device_id"),)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id and name, its role, and its device when it has one."""

    token_id: str
    name: str
    role: Role
    device_id: str | None = None

    @property
    def actor(self) -> str:
        """How audit records and ``*_by`` columns name this caller."""
        return f"{self.token_id}:{self.name}"


@dataclass(frozen=True)
class NewToken:
    """A freshly minted token: ``secret`` is shown once and never stored."""

    token_id: str
    secret: str
    secret_sha256: str


def mint_token() -> NewToken:
    """Make a new random token and its id."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return NewToken("tok_" + secrets.token_hex(8), secret, hash_secret(secret))


def hash_secret(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def allows(role: Role, allowed: frozenset[Role]) -> bool:
    """Whether ``role`` may call an endpoint open to ``allowed`` (admin may call anything)."""
    return role in allowed or role is Role.ADMIN
