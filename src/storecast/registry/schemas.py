"""Request and response bodies of the registry API (pydantic; unknown fields refused)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storecast.bundle.metadata import NAME_PATTERN
from storecast.registry.resolver import SelectorKind

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    pass


# -- models -------------------------------------------------------------------------------


class VersionSummary(_Out):
    """One version of a model."""

    name: str
    version: int
    sha256: str
    size: int
    target_path: str
    published_at: datetime
    published_by: str
    withdrawn: bool
    withdrawn_reason: str | None = None
    aliases: list[str] = Field(default_factory=list)


class VersionDetail(VersionSummary):
    """A version with its full bundle metadata."""

    metadata: dict[str, Any]


class PublishResult(VersionDetail):
    """The published version; ``created`` is false when the same bytes were already there."""

    created: bool


class ModelSummary(_Out):
    name: str
    latest_version: int
    versions: int
    aliases: dict[str, int]


class ModelList(_Out):
    """Every model in the registry."""

    models: list[ModelSummary]


class ModelDetail(_Out):
    """A model, its versions and its aliases."""

    name: str
    versions: list[VersionSummary]
    aliases: dict[str, int]
    next_version: int


MAX_INT = 2**31 - 1  # what an INTEGER column holds on every database


class AliasBody(_In):
    version: int = Field(ge=1, le=MAX_INT)


class NextVersion(_Out):
    """The next free version number of a model."""

    version: int


class AliasResult(_Out):
    """Where an alias points now."""

    name: str
    alias: str
    version: int


class WithdrawBody(_In):
    reason: str = Field(min_length=1, max_length=1000, pattern=r"^[^\x00]+$")


# -- devices --------------------------------------------------------------------------------


class EnrolBody(_In):
    device_id: str = Field(pattern=ID_PATTERN)
    store_id: str = Field(pattern=ID_PATTERN)
    region: str = Field(pattern=ID_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _tags_are_names(self) -> EnrolBody:
        import re

        for tag in self.tags:
            if not re.fullmatch(ID_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must match {ID_PATTERN}")
        return self


class DeviceOut(_Out):
    """An enrolled device."""

    device_id: str
    store_id: str
    region: str
    tags: list[str]
    enrolled_at: datetime
    last_seen_at: datetime | None
    reported_model: str | None
    reported_version: int | None
    decommissioned: bool


class DeviceList(_Out):
    """Enrolled devices."""

    devices: list[DeviceOut]


class Enrolled(_Out):
    """A new device and its token (shown this once)."""

    device: DeviceOut
    token: str
    token_id: str


class AssignmentQuery(_In):
    current_model: str | None = Field(default=None, pattern=NAME_PATTERN)
    current_version: int | None = Field(default=None, ge=1, le=MAX_INT)


class AssignmentOut(_Out):
    """What the device should run (``model`` null: nothing is deployed to it)."""

    device_id: str
    model: str | None
    version: int | None
    target_path: str | None
    sha256: str | None
    length: int | None
    deployment_id: int | None


# -- deployments ----------------------------------------------------------------------------


class SelectorBody(_In):
    kind: SelectorKind
    values: list[str] = Field(default_factory=list, max_length=10000)

    @model_validator(mode="after")
    def _values_fit_kind(self) -> SelectorBody:
        if self.kind is SelectorKind.ALL and self.values:
            raise ValueError("selector 'all' takes no values")
        if self.kind is not SelectorKind.ALL and not self.values:
            raise ValueError(f"selector {self.kind.value!r} needs at least one value")
        return self


class DeploymentBody(_In):
    model: str = Field(pattern=NAME_PATTERN)
    version: int | None = Field(default=None, ge=1, le=MAX_INT)
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)
    selector: SelectorBody = Field(default_factory=lambda: SelectorBody(kind=SelectorKind.ALL))

    @model_validator(mode="after")
    def _one_target(self) -> DeploymentBody:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' and 'alias'")
        return self


class DeploymentOut(_Out):
    """A deployment."""

    id: int
    model: str
    version: int | None
    alias: str | None
    selector: dict[str, Any]
    status: str
    created_at: datetime
    created_by: str


class DeploymentList(_Out):
    """Deployments, newest first."""

    deployments: list[DeploymentOut]


# -- tokens ---------------------------------------------------------------------------------


class TokenBody(_In):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    role: Literal["admin", "publisher", "viewer"]


class TokenOut(_Out):
    """A token (never its secret)."""

    id: str
    name: str
    role: str
    device_id: str | None
    created_at: datetime
    revoked: bool


class TokenList(_Out):
    """Every token."""

    tokens: list[TokenOut]


class TokenCreated(TokenOut):
    """A new token; ``token`` is shown this once."""

    token: str


# -- audit ------------------------------------------------------------------------------------


class AuditQuery(_In):
    actor: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00]*$")
    action: str | None = Field(default=None, max_length=64, pattern=r"^[^\x00]*$")
    outcome: Literal["ok", "denied", "failed"] | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=1000, ge=1, le=100000)
    format: Literal["json", "csv", "jsonl"] = "json"

    @field_validator("since", "until")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # naive means UTC
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("the time is out of range once converted to UTC") from exc


class AuditRecord(_Out):
    seq: int
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
    prev_hash: str
    hash: str


class AuditList(_Out):
    """Audit records, oldest first."""

    records: list[AuditRecord]


class ChainStatus(_Out):
    """The audit chain check."""

    ok: bool
    records: int
    first_broken: int | None
    reason: str
    head: str  # hash of the last record: keep it elsewhere to detect a cut-off tail
