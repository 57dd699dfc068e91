"""Request and response bodies of the analytics API (pydantic; they feed ``/openapi.json``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from storecast.common.telemetry import EventRejection

MAX_EVENTS = 1000  # events per telemetry batch
MAX_BATCH_BYTES = 2 * 1024 * 1024  # bytes per telemetry batch body


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- ingestion ----------------------------------------------------------------------------


class TelemetryAck(BaseModel):
    """What happened to a telemetry batch: stored, already stored, or refused (by index)."""

    accepted: int
    duplicates: int
    rejected: list[EventRejection]


# -- shared pieces -------------------------------------------------------------------------


class Accuracy(BaseModel):
    """Forecast accuracy over paired points (all horizons)."""

    points: int  # forecast hours with an actual
    wape: float | None  # sum |q50 - actual| / sum actual
    bias: float | None  # (sum q50 - sum actual) / sum actual
    coverage_80: float | None  # share of actuals within [q10, q90]


class Latency(BaseModel):
    """Percentiles (ms) interpolated from the fixed-bucket histogram."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class Window(BaseModel):
    """A time range ``[start, end)``; an hourly rollup counts when its hour starts in it."""

    start: datetime
    end: datetime


# -- stores -------------------------------------------------------------------------------


class StoreRow(BaseModel):
    store_id: str
    region: str | None
    devices: int  # enrolled and not decommissioned, or heard from without enrolment
    status: Literal["online", "stale", "offline"]  # its best device's, now
    last_heartbeat_at: datetime | None
    model_name: str | None
    model_version: int | None
    agent_version: str | None
    accuracy: Accuracy  # over the list's window
    forecasts_served: int
    error_rate: float | None


class StoreList(BaseModel):
    window: Window
    stores: list[StoreRow]


class SeriesPoint(BaseModel):
    ts: datetime  # hour or day start
    q10: float | None
    q50: float | None
    q90: float | None
    actual: float | None


class StoreSummary(BaseModel):
    store_id: str
    window: Window
    granularity: Literal["hour", "day"]
    horizon: int  # the forecast horizon the series shows
    series: list[SeriesPoint]  # every bucket of the window; null where nothing is known
    accuracy: Accuracy  # all horizons
    totals: dict[str, float]  # actual, forecast (sum of q50 at ``horizon``), forecasts_served,
    # errors


# -- models -------------------------------------------------------------------------------


class VersionPerformance(BaseModel):
    model_name: str
    model_version: int
    # The version's A/B arm in the newest in-force canary deployment of its model (null
    # when it is in none); its figures still cover every store that ran the version.
    arm: str | None = None
    deployment_id: int | None = None  # that deployment
    accuracy: Accuracy
    wape_ci95: tuple[float, float] | None  # linearised over stores (None below 2 stores)
    latency: Latency
    forecasts_served: int
    errors: int
    error_rate: float | None
    devices: int  # devices whose latest heartbeat reports this version
    stores: int  # stores that served or scored forecasts with it in the window


class ModelPerformance(BaseModel):
    window: Window
    versions: list[VersionPerformance]


# -- fleet --------------------------------------------------------------------------------


class DeviceCounts(BaseModel):
    total: int
    online: int  # heartbeat within ONLINE_AFTER
    stale: int  # heartbeat within STALE_AFTER
    offline: int  # older, or never


class VersionShare(BaseModel):
    model_name: str | None
    model_version: int | None
    devices: int


class UpdateCounts(BaseModel):
    activated: int
    rejected: int
    rolled_back: int
    success_rate: float | None  # activated / (activated + rejected)


class FleetKpis(BaseModel):
    at: datetime
    window: Window
    devices: DeviceCounts
    versions: list[VersionShare]
    updates: UpdateCounts
    forecasts_served: int
    errors: int
    error_rate: float | None
    latency: Latency
    sales: dict[str, float | None]  # actual, forecast, wape (chain level, paired hours)
    telemetry: dict[str, int]  # backlog (sum of outbox depths), dropped (sum reported)
    thresholds_s: dict[str, int]  # online, stale: heartbeat ages (seconds) of the statuses


class FleetHour(BaseModel):
    hour: datetime
    forecasts_served: int
    errors: int
    error_rate: float | None
    latency: Latency
    accuracy: Accuracy


class FleetSeries(BaseModel):
    window: Window
    hours: list[FleetHour]


# -- model events, usage -------------------------------------------------------------------


class ModelEventOut(BaseModel):
    event_id: str
    ts: datetime
    device_id: str
    store_id: str
    action: str
    model_name: str
    model_version: int
    agent_version: str
    digest: str | None
    reason: str | None
    duration_ms: float | None


class ModelEventList(BaseModel):
    events: list[ModelEventOut]


class ForecastUsageRow(BaseModel):
    day: date
    store_id: str
    forecasts_served: int
    errors: int


class ApiUsageOut(BaseModel):
    day: date
    actor: str
    role: str
    method: str
    endpoint: str
    status: int
    count: int


class ForecastUsage(BaseModel):
    rows: list[ForecastUsageRow]


class ApiUsage(BaseModel):
    rows: list[ApiUsageOut]


# -- root cause ----------------------------------------------------------------------------

Metric = Literal["error_rate", "wape", "latency_p95"]
Dimension = Literal[
    "model_version", "store", "region", "agent_version", "hour_of_day", "error_kind"
]


class Finding(BaseModel):
    """One dimension value and how much of the change it explains."""

    dimension: str
    value: str
    share_of_excess: float  # this value's excess / the total excess
    share_of_volume: float  # this value's share of the window's volume
    score: float  # share_of_excess - share_of_volume: how concentrated the change is here
    window_value: float | None
    baseline_value: float | None


class DeploymentRef(BaseModel):
    """A registry deployment created in the window."""

    id: int
    model: str
    version: int | None
    alias: str | None
    status: str
    selector: dict[str, object]
    created_at: datetime
    created_by: str


class ModelEventCount(BaseModel):
    """Model lifecycle events of one action and version in the window."""

    action: str
    model_name: str
    model_version: int
    events: int
    stores: int
    first_ts: datetime
    last_ts: datetime


class RootCause(BaseModel):
    metric: Metric
    window: Window
    baseline: Window
    window_value: float | None  # the metric itself (latency_p95 in ms)
    baseline_value: float | None
    excess: float  # window numerator minus what the baseline rate predicts
    # latency_p95 is ranked as the share of inferences slower than this (the upper bound of
    # the bucket holding the baseline p95); findings' values are that share, not ms
    slow_after_ms: float | None = None
    findings: list[Finding]
    model_events: list[ModelEventOut]  # activations, rejections, rollbacks; newest first
    model_event_summary: list[ModelEventCount]
    deployments: list[DeploymentRef]


class Incident(BaseModel):
    """A metric that crossed its threshold against the baseline."""

    kind: Literal["anomaly"] = "anomaly"
    metric: Metric
    window: Window
    window_value: float | None
    baseline_value: float | None
    threshold: float
    findings: list[Finding]


class GateOut(BaseModel):
    """One rollout gate at one decision: passed, failed, or null while it could not tell."""

    name: str
    passed: bool | None
    value: float | None
    limit: float | None
    detail: str


class RolloutIncident(BaseModel):
    """A canary rolled back by the controller, or aborted."""

    kind: Literal["rollout"] = "rollout"
    deployment_id: int
    model: str
    action: str  # rollback | abort
    control_version: int | None  # arm A's version (the stores went back to it)
    candidate_version: int | None  # arm B's version
    step_index: int
    percent_before: float | None  # B's share of the stores before the decision
    reason: str
    failed_gates: list[GateOut]
    decided_at: datetime
    decided_by: str


AnyIncident = Annotated[Incident | RolloutIncident, Field(discriminator="kind")]


class IncidentList(BaseModel):
    at: datetime
    incidents: list[AnyIncident]  # anomalies by metric, then rollouts newest first


# -- rollouts --------------------------------------------------------------------------------


class RolloutArm(BaseModel):
    arm: str  # A = control, B = candidate, ...
    version: int | None  # the alias's version now, for an arm given by alias
    alias: str | None


class RolloutDecisionOut(BaseModel):
    """What the rollout controller (or an operator) decided at one tick."""

    action: str  # wait | promote | complete | rollback | pause | resume | abort ...
    step_index: int
    percent_before: float | None
    percent_after: float | None
    reason: str
    gates: list[GateOut]
    decided_at: datetime
    decided_by: str


class RolloutOut(BaseModel):
    """A canary deployment: where it stands and what was decided last."""

    deployment_id: int
    model: str
    status: str  # active | paused | completed | rolled_back | aborted
    arms: list[RolloutArm]
    steps: list[float]  # B's share (%) at each step of the plan
    step_index: int | None
    percent: float | None  # B's share of the deployment's stores now
    step_started_at: datetime | None
    promote_alias: str | None
    created_at: datetime
    latest_decision: RolloutDecisionOut | None


class RolloutList(BaseModel):
    at: datetime
    window: Window  # canaries in force, and the others decided on in this window
    rollouts: list[RolloutOut]  # newest first


# -- query strings ---------------------------------------------------------------------------

Granularity = Literal["hour", "day"]
Format = Literal["json", "csv", "jsonl"]
Horizon = Annotated[int, Field(ge=1, le=168)]
# The lifecycle actions of ``storecast.common.telemetry.MODEL_ACTIONS``.
Action = Literal["download_started", "verified", "activated", "rejected", "rolled_back"]
IdParam = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


QUERY_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
QUERY_LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # room for windows and baselines around it


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # naive means UTC
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range once converted to UTC") from exc
    if not QUERY_EARLIEST <= value < QUERY_LATEST:
        raise ValueError(f"times must lie between {QUERY_EARLIEST:%Y} and {QUERY_LATEST:%Y}")
    return value


QueryTime = Annotated[datetime, AfterValidator(_as_utc)]


class RangeQuery(_Query):
    """A time range; ``end`` defaults to now and ``start`` to a view-specific span before it."""

    start: QueryTime | None = None
    end: QueryTime | None = None


class StoreSummaryQuery(RangeQuery):
    granularity: Granularity = "hour"
    horizon: Horizon = 1


class ModelsQuery(RangeQuery):
    model_name: IdParam | None = None


class FleetQuery(_Query):
    at: QueryTime | None = None  # defaults to now
    window_hours: Annotated[int, Field(ge=1, le=92 * 24)] = 24


class ModelEventsQuery(RangeQuery):
    action: Action | None = None
    store_id: IdParam | None = None
    limit: Annotated[int, Field(ge=1, le=10000)] = 100


class ForecastUsageQuery(RangeQuery):
    store_id: IdParam | None = None
    format: Format = "json"


class ApiUsageQuery(RangeQuery):
    actor: Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")] | None = None
    format: Format = "json"


class RootCauseQuery(RangeQuery):
    metric: Metric
    baseline_start: QueryTime | None = None  # defaults to 7 days before the baseline end
    baseline_end: QueryTime | None = None  # defaults to the window start


class RolloutsQuery(_Query):
    at: QueryTime | None = None  # defaults to now
    window_hours: Annotated[int, Field(ge=1, le=92 * 24)] = 24


class IncidentsQuery(_Query):
    at: QueryTime | None = None  # defaults to now
    window_hours: Annotated[int, Field(ge=1, le=7 * 24)] = 6
