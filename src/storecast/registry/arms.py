"""A deployment's arms now and what each has shown: what the controller and the readout read.

``arms_now`` splits the deployment's stores between its arms (each store bucketed once);
``evidence_for`` reads each arm's figures through the analytics query (the one sideways
import of the registry: analytics' query functions, never the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from storecast.analytics.evidence import ArmEvidence, ArmScope, arms_evidence
from storecast.registry.deployments import (
    deployment_stores,
    load_aliases,
    plan_of,
    spec_of,
    stores_by_arm,
    variants_of,
)
from storecast.registry.tables import DeploymentRow


class EvidenceQuery(Protocol):
    """``storecast.analytics.evidence.arms_evidence``'s signature."""

    def __call__(
        self,
        session: Session,
        *,
        model: str,
        arms: Sequence[ArmScope],
        since: datetime,
        until: datetime,
    ) -> dict[str, ArmEvidence]: ...


def analytics_evidence() -> EvidenceQuery:
    """The analytics query the controller and the readout read evidence with."""
    return arms_evidence


@dataclass(frozen=True)
class ArmStores:
    """One arm now: its release's version (None: alias unset) and its stores."""

    arm: str
    version: int | None
    alias: str | None
    weight: float
    stores: list[str]


def arms_now(session: Session, row: DeploymentRow, *, as_of_step: bool = False) -> list[ArmStores]:
    """Every arm of ``row`` with the stores it covers now (each store bucketed once), or
    with ``as_of_step`` the stores it covered at its current or last step (a rolled-back
    or completed canary's arms as they were when it was decided)."""
    spec = spec_of(row)
    plan = plan_of(row)
    if as_of_step and plan is not None and len(spec.arms) == 2:
        share = plan.steps[row.step_index or 0].percent
        weights = (100.0 - share, share)
        spec = replace(
            spec, arms=tuple(replace(a, weight=w) for a, w in zip(spec.arms, weights, strict=True))
        )
    by_arm = stores_by_arm(spec, deployment_stores(session, row))
    aliases = load_aliases(session)
    found = []
    for variant, arm in zip(variants_of(row), spec.arms, strict=True):
        version = variant.version
        if version is None and variant.alias is not None:
            version = aliases.get((row.model, variant.alias))
        found.append(ArmStores(arm.name, version, variant.alias, arm.weight, by_arm[arm.name]))
    return found


def evidence_for(
    session: Session,
    model: str,
    arms: Sequence[ArmStores],
    since: datetime,
    until: datetime,
    query: EvidenceQuery,
) -> list[ArmEvidence]:
    """What each arm has shown in [since, until), in ``arms`` order (nothing for an arm
    without stores or without a release)."""
    scopes = [ArmScope(a.arm, a.version, a.stores) for a in arms if a.version and a.stores]
    found = query(session, model=model, arms=scopes, since=since, until=until) if scopes else {}
    return [found.get(a.arm) or ArmEvidence(a.arm, model, a.version or 0) for a in arms]
