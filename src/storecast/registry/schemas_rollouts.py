"""Bodies of the rollout API: operator actions and the readout (pydantic); the readout
snapshot's stored body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Source = Literal["snapshot", "live"]  # where a readout's evidence came from
# A readout window's end: with a zone, in [2000, 2200).
QueryTime = Annotated[
    AwareDatetime,
    Field(ge=datetime(2000, 1, 1, tzinfo=UTC), lt=datetime(2200, 1, 1, tzinfo=UTC)),
]


class ActionBody(BaseModel):
    """An operator's action on a canary; ``reason`` lands in its decision and audit record."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000, pattern=r"^[^\x00]*$")


class ReadoutQuery(BaseModel):
    """``GET .../readout``: ``fresh=true`` computes the evidence now instead of reading the
    snapshot (costly on a large fleet: seconds at 10,000 stores)."""

    model_config = ConfigDict(extra="forbid")

    fresh: bool = False
    # Another evidence window (e.g. simulated time); computed now, never from the snapshot.
    since: QueryTime | None = None
    until: QueryTime | None = None

    @model_validator(mode="after")
    def _window(self) -> ReadoutQuery:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class GateOut(BaseModel):
    """One gate: passed, failed, or null while it cannot tell yet."""

    name: str
    passed: bool | None
    value: float | None
    limit: float
    detail: str


class ArmReadout(BaseModel):
    """One arm's figures over the window (null: not computable from the data yet)."""

    arm: str
    version: int | None
    alias: str | None
    weight: float  # share of the stores now, %
    stores: int  # enrolled stores of the deployment in this arm now
    reporting_stores: int  # of which reported anything for the arm's version
    forecast_hours: int
    wape: float | None
    wape_low: float | None  # its interval (stores as clusters)
    wape_high: float | None
    bias: float | None
    coverage: float | None  # share of actuals inside [q10, q90]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    inferences: int
    errors: int
    error_rate: float | None
    activations: int
    failed_activations: int


class DifferenceOut(BaseModel):
    """WAPE(B) − WAPE(A) with its confidence interval (< 0: B is more accurate)."""

    estimate: float
    low: float
    high: float
    confidence: float


class StepOut(BaseModel):
    """The canary's current step."""

    index: int  # 0-based
    of: int  # number of steps
    percent: float
    started_at: datetime | None
    min_duration_s: float
    min_forecast_hours: int
    min_inferences: int


class GateCheck(BaseModel):
    """What the controller would decide now (evidence since the step began); not acted on."""

    action: Literal["wait", "promote", "complete", "rollback"]
    reason: str
    since: datetime
    gates: list[GateOut]


class DecisionOut(BaseModel):
    """A decision taken on the canary (by the controller or an operator)."""

    id: int
    step_index: int
    action: str
    percent_before: float
    percent_after: float
    reason: str
    gates: list[GateOut]
    decided_at: datetime
    decided_by: str


class ReadoutWindow(BaseModel):
    """The span the arms' figures cover."""

    since: datetime
    until: datetime
    basis: str


class ReadoutEvidence(BaseModel):
    """The costly part of a readout, read from the rollups, as a snapshot stores it: valid
    for the ``status`` and ``step_index`` it was computed at."""

    status: str
    step_index: int | None
    window: ReadoutWindow
    arms: list[ArmReadout]
    difference: DifferenceOut | None
    verdict: Literal["better", "worse", "inconclusive"]
    gates_now: GateCheck | None


class Readout(BaseModel):
    """A deployment's A/B readout: arms, the difference, a verdict, gates and decisions.

    Status, step and decisions are read at each request; the arms, the difference, the
    verdict and the gates (the evidence) were computed at ``as_of``, by the controller's
    last tick or an earlier request (``source`` "snapshot") or for this one ("live").
    """

    deployment_id: int
    model: str
    strategy: str
    status: str
    as_of: datetime  # when the evidence was read (= window.until)
    source: Source
    window: ReadoutWindow
    step: StepOut | None
    arms: list[ArmReadout]
    difference: DifferenceOut | None
    verdict: Literal["better", "worse", "inconclusive"]
    gates_now: GateCheck | None
    decisions: list[DecisionOut]
