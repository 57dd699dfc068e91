"""Deployments: create immediate and canary ones; read them as resolver specs and API bodies.

A deployment row holds its arms in ``variants_json`` (A = control first, then B =
candidate) and, for a canary, its plan and current step. The arms' weights are not
stored: they follow from the strategy, the status and the step (``weights_of``), so a
single row update moves every store of a step at once.

    IN_FORCE            statuses whose arms still decide what stores run (all of them: a
                        rolled-back canary keeps its stores on A)
    spec_of(row)        the resolver's ``DeploymentSpec``
    deployment_stores   the stores a deployment covers (enrolled devices it matches)
    stores_by_arm       those stores split by arm, each store bucketed once
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storecast.common.arms import split_stores
from storecast.common.auth import Principal
from storecast.common.web import ApiError
from storecast.registry import schemas
from storecast.registry.catalog import get_version
from storecast.registry.context import Registry
from storecast.registry.resolver import ArmSpec, DeploymentSpec, Selector, SelectorKind
from storecast.registry.rollout import CanaryPlan, Gates, Step, candidate_percent
from storecast.registry.signing import bump_generation, lock_state
from storecast.registry.tables import AliasRow, DeploymentRow, DeviceRow, new_salt

IMMEDIATE, CANARY = "immediate", "canary"
ACTIVE, PAUSED, COMPLETED = "active", "paused", "completed"
ROLLED_BACK, ABORTED = "rolled_back", "aborted"
IN_FORCE = (ACTIVE, PAUSED, COMPLETED, ROLLED_BACK, ABORTED)
IN_PROGRESS = (ACTIVE, PAUSED)  # a canary the controller or an operator may still move

Aliases = Mapping[tuple[str, str], int]  # (model, alias) -> version


@dataclass(frozen=True)
class Variant:
    """One arm as stored: a version or an alias."""

    arm: str
    version: int | None
    alias: str | None


def variants_of(row: DeploymentRow) -> list[Variant]:
    """The arms of ``row``, control first."""
    return [
        Variant(v["arm"], v.get("version"), v.get("alias")) for v in json.loads(row.variants_json)
    ]


def plan_of(row: DeploymentRow) -> CanaryPlan | None:
    """A canary's plan (None for an immediate deployment)."""
    return None if row.plan_json is None else CanaryPlan.from_dict(json.loads(row.plan_json))


def candidate_weight(row: DeploymentRow) -> float:
    """B's share of the stores now, in %."""
    plan = plan_of(row)
    if plan is None:
        return 0.0
    return candidate_percent(row.status, plan, row.step_index or 0)


def weights_of(row: DeploymentRow) -> list[tuple[str, float]]:
    """Every arm's share of the stores now (an immediate deployment: its one arm, 100 %)."""
    variants = variants_of(row)
    if len(variants) == 1:
        return [(variants[0].arm, 100.0)]
    share = candidate_weight(row)
    return [(variants[0].arm, 100.0 - share), (variants[1].arm, share)]


def selector_of(row: DeploymentRow) -> Selector:
    data = json.loads(row.selector_json)
    return Selector(SelectorKind(data["kind"]), frozenset(data.get("values", [])))


def spec_of(row: DeploymentRow) -> DeploymentSpec:
    """The deployment as the resolver sees it."""
    weights = dict(weights_of(row))
    arms = tuple(ArmSpec(v.arm, weights[v.arm], v.version, v.alias) for v in variants_of(row))
    return DeploymentSpec(row.id, row.model, selector_of(row), arms, row.salt)


def load_aliases(session: Session) -> dict[tuple[str, str], int]:
    return {
        (row.name, row.alias): row.version for row in session.execute(select(AliasRow)).scalars()
    }


def deployment_out(row: DeploymentRow, aliases: Aliases) -> schemas.DeploymentOut:
    weights = dict(weights_of(row))
    plan = plan_of(row)
    arms = [
        schemas.ArmOut(
            arm=v.arm,
            version=v.version,
            alias=v.alias,
            resolved_version=v.version if v.alias is None else aliases.get((row.model, v.alias)),
            weight=weights[v.arm],
        )
        for v in variants_of(row)
    ]
    return schemas.DeploymentOut(
        id=row.id,
        model=row.model,
        version=row.version,
        alias=row.alias,
        selector=json.loads(row.selector_json),
        status=row.status,
        created_at=row.created_at,
        created_by=row.created_by,
        strategy=row.strategy,
        arms=arms,
        plan=None if plan is None else schemas.PlanOut.model_validate(plan.to_dict()),
        step_index=row.step_index,
        step_percent=None if plan is None else candidate_weight(row),
        step_started_at=row.step_started_at,
        promote_alias=row.promote_alias,
        updated_at=row.updated_at,
    )


# -- creating ---------------------------------------------------------------------------------


def field_error(field: str, message: str) -> ApiError:
    """A 422 naming ``field``, shaped like pydantic's."""
    return ApiError(
        422,
        "validation_error",
        f"{field}: {message}",
        fields=[{"field": field, "message": message}],
    )


def _live_version(session: Session, aliases: Aliases, model: str, target: Variant) -> int:
    """The version ``target`` names (404 unknown, 409 withdrawn)."""
    if target.version is not None:
        if get_version(session, model, target.version).withdrawn_at is not None:
            raise ApiError(409, "version_withdrawn", f"{model} v{target.version} was withdrawn")
        return target.version
    version = aliases.get((model, target.alias or ""))
    if version is None:
        raise ApiError(404, "not_found", f"model {model!r} has no alias {target.alias!r}")
    return version


def _plan(strategy: schemas.StrategyBody) -> CanaryPlan:
    steps = tuple(Step(**s.model_dump()) for s in strategy.steps or ())
    gates = Gates(**strategy.gates.model_dump()) if strategy.gates else Gates()
    return CanaryPlan(steps, gates)


def create_deployment(
    registry: Registry, body: schemas.DeploymentBody, who: Principal
) -> DeploymentRow:
    """Point a selector at a live version or alias, at once or as a canary (A → B)."""
    canary = body.strategy.kind == CANARY
    if canary:
        if body.control is None or body.candidate is None:  # the body's validators saw to it
            raise field_error("candidate" if body.control else "control", "a canary needs it")
        variants = [
            Variant("A", body.control.version, body.control.alias),
            Variant("B", body.candidate.version, body.candidate.alias),
        ]
    else:
        variants = [Variant("A", body.version, body.alias)]
    with registry.db.transaction(write=True) as session:
        lock_state(session)  # a withdrawal cannot slip in between check and insert
        aliases = load_aliases(session)
        versions = [_live_version(session, aliases, body.model, v) for v in variants]
        if canary and versions[0] == versions[1]:
            raise field_error("candidate", f"the candidate and the control are both v{versions[0]}")
        now = registry.config.clock.now()
        chosen = variants[-1]
        row = DeploymentRow(
            model=body.model,
            version=chosen.version,
            alias=chosen.alias,
            selector_json=json.dumps(
                {"kind": body.selector.kind.value, "values": sorted(set(body.selector.values))}
            ),
            status=ACTIVE,
            created_at=now,
            created_by=who.actor,
            strategy=CANARY if canary else IMMEDIATE,
            salt=body.salt or new_salt(),
            variants_json=json.dumps(
                [{"arm": v.arm, "version": v.version, "alias": v.alias} for v in variants]
            ),
            plan_json=json.dumps(_plan(body.strategy).to_dict()) if canary else None,
            step_index=0 if canary else None,
            step_started_at=now if canary else None,
            promote_alias=body.promote_alias,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        bump_generation(session)
        return row


# -- stores -----------------------------------------------------------------------------------


def matching_stores(selector: Selector, devices: Iterable[Any]) -> set[str]:
    """Stores of ``devices`` (rows with store_id, region, tags_json) the selector matches."""
    kind, values = selector.kind, selector.values
    if kind is SelectorKind.ALL:
        return {d.store_id for d in devices}
    if kind is SelectorKind.STORES:
        return {d.store_id for d in devices if d.store_id in values}
    if kind is SelectorKind.REGIONS:
        return {d.store_id for d in devices if d.region in values}
    return {d.store_id for d in devices if not values.isdisjoint(json.loads(d.tags_json))}


_ENROLLED = select(DeviceRow.store_id, DeviceRow.region, DeviceRow.tags_json).where(
    DeviceRow.decommissioned_at.is_(None)
)


def deployment_stores(session: Session, row: DeploymentRow) -> set[str]:
    """Stores with an enrolled, not decommissioned device the deployment's selector matches."""
    return matching_stores(selector_of(row), session.execute(_ENROLLED).all())


def stores_by_arm(spec: DeploymentSpec, stores: Iterable[str]) -> dict[str, list[str]]:
    """``stores`` split by the arm each is in (every arm present, maybe empty)."""
    weights = [(arm.name, arm.weight) for arm in spec.arms]
    return split_stores(spec.salt, sorted(stores), weights)
