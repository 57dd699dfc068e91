"""Request and response bodies of the registry API (pydantic; unknown fields refused)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    arm: str | None = None  # the deployment's arm the device's store is in


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


class TargetBody(_In):
    """One arm's release: a version or an alias of the deployment's model."""

    version: int | None = Field(default=None, ge=1, le=MAX_INT)
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)

    @model_validator(mode="after")
    def _one_target(self) -> TargetBody:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' and 'alias'")
        return self


class StepBody(_In):
    """One canary step: B's share of the stores and what it must show before the next."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    percent: float = Field(gt=0, le=100)
    min_duration_s: float = Field(default=3600.0, ge=0, le=366 * 86400)
    min_forecast_hours: int = Field(default=24, ge=0, le=MAX_INT)
    min_inferences: int = Field(default=100, ge=0, le=MAX_INT)


class GatesBody(_In):
    """Limits the candidate must stay within at every step."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    max_p99_ms: float = Field(default=250.0, gt=0, le=3_600_000)
    max_failed_activations: int = Field(default=0, ge=0, le=MAX_INT)
    wape_margin: float = Field(default=0.02, ge=0, le=1)
    confidence: float = Field(default=0.95, ge=0.5, le=0.999)


class StrategyBody(_In):
    """``immediate`` (the default), or ``canary`` with steps ending at 100 % and gates."""

    kind: Literal["immediate", "canary"] = "immediate"
    steps: list[StepBody] | None = Field(default=None, min_length=1, max_length=20)
    gates: GatesBody | None = None

    @field_validator("steps")
    @classmethod
    def _steps_grow_to_100(cls, steps: list[StepBody] | None) -> list[StepBody] | None:
        if steps is None:
            return None
        percents = [step.percent for step in steps]
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError(f"step percentages must increase, got {percents}")
        if percents[-1] != 100:
            raise ValueError(f"the last step must be 100, got {percents[-1]:g}")
        return steps

    @model_validator(mode="after")
    def _steps_fit_kind(self) -> StrategyBody:
        if self.kind == "canary" and self.steps is None:
            raise ValueError("a canary needs 'steps'")
        if self.kind == "immediate" and (self.steps is not None or self.gates is not None):
            raise ValueError("'steps' and 'gates' are for kind 'canary'")
        return self


def _strategy_kind(info: ValidationInfo) -> str | None:
    strategy = info.data.get("strategy")
    return strategy.kind if isinstance(strategy, StrategyBody) else None


class DeploymentBody(_In):
    """Immediate: ``version`` or ``alias``. Canary: ``control``, ``candidate`` and
    ``strategy`` ``{"kind": "canary", "steps": [...], "gates": {...}}``."""

    model: str = Field(pattern=NAME_PATTERN)
    selector: SelectorBody = Field(default_factory=lambda: SelectorBody(kind=SelectorKind.ALL))
    strategy: StrategyBody = Field(default_factory=StrategyBody)
    version: int | None = Field(default=None, ge=1, le=MAX_INT, validate_default=True)
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN, validate_default=True)
    control: TargetBody | None = Field(default=None, validate_default=True)
    candidate: TargetBody | None = Field(default=None, validate_default=True)
    promote_alias: str | None = Field(default=None, pattern=ALIAS_PATTERN, validate_default=True)
    # The bucketing salt (a canary's arms); unset, one is drawn. Set it to repeat a split.
    salt: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{4,64}$")

    @field_validator("version", "alias")
    @classmethod
    def _immediate_target(cls, value: Any, info: ValidationInfo) -> Any:
        kind = _strategy_kind(info)
        if kind == "canary" and value is not None:
            raise ValueError("a canary takes 'control' and 'candidate' instead")
        if (
            kind == "immediate"
            and info.field_name == "alias"
            and "version" in info.data  # else 'version' itself was refused
            and (info.data["version"] is None) == (value is None)
        ):
            raise ValueError("give exactly one of 'version' and 'alias'")
        return value

    @field_validator("control", "candidate", "promote_alias")
    @classmethod
    def _canary_target(cls, value: Any, info: ValidationInfo) -> Any:
        kind = _strategy_kind(info)
        if kind == "immediate" and value is not None:
            raise ValueError("only a canary (strategy kind 'canary') takes this")
        if kind == "canary" and value is None and info.field_name != "promote_alias":
            raise ValueError(f"a canary needs its {info.field_name}")
        same = value is not None and value == info.data.get("control")
        if info.field_name == "candidate" and same:
            raise ValueError("the candidate must differ from the control")
        return value


class ArmOut(_Out):
    """One arm of a deployment: its release and its share of the stores now."""

    arm: str
    version: int | None
    alias: str | None
    resolved_version: int | None  # the alias followed (null: alias unset)
    weight: float


class PlanOut(_Out):
    """A canary's steps and gates."""

    steps: list[StepBody]
    gates: GatesBody


class DeploymentOut(_Out):
    """A deployment (``version`` / ``alias``: the one arm of an immediate deployment, the
    candidate of a canary)."""

    id: int
    model: str
    version: int | None
    alias: str | None
    selector: dict[str, Any]
    status: str
    created_at: datetime
    created_by: str
    strategy: str = "immediate"
    arms: list[ArmOut] = Field(default_factory=list)
    plan: PlanOut | None = None
    step_index: int | None = None
    step_percent: float | None = None  # B's share now (canary)
    step_started_at: datetime | None = None
    promote_alias: str | None = None
    updated_at: datetime | None = None


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
