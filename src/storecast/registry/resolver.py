"""Which model version a device should run: a pure function over plain data.

Deployments point a selector (all devices, some stores, regions or tags) at arms: one for
an immediate deployment, control A and candidate B for a canary, each a model version or
alias with a weight (B's share of the stores, in %). For a device, the newest in-force
deployment that matches it and has a live (published, not withdrawn) release for it wins;
within it, the store's arm comes from ``storecast.common.arms.arm_for`` (a sticky hash of
the deployment's salt and the store id). A store whose arm has no live release gets the
control arm's release; a deployment with neither is passed over, so no device is ever sent
to a withdrawn version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum

from storecast.common.arms import arm_for


class SelectorKind(StrEnum):
    ALL = "all"
    STORES = "stores"
    REGIONS = "regions"
    TAGS = "tags"


@dataclass(frozen=True)
class DeviceFacts:
    """What the resolver knows about a device."""

    device_id: str
    store_id: str
    region: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Selector:
    kind: SelectorKind
    values: frozenset[str] = frozenset()

    def matches(self, device: DeviceFacts) -> bool:
        if self.kind is SelectorKind.ALL:
            return True
        if self.kind is SelectorKind.STORES:
            return device.store_id in self.values
        if self.kind is SelectorKind.REGIONS:
            return device.region in self.values
        return not self.values.isdisjoint(device.tags)


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a deployment: a version or an alias, and its share of the stores in %."""

    name: str  # "A" (control), "B" (candidate)
    weight: float
    version: int | None = None
    alias: str | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    """An in-force deployment as the resolver sees it (arms: control first)."""

    id: int
    model: str
    selector: Selector
    arms: tuple[ArmSpec, ...]
    salt: str = ""

    @classmethod
    def single(
        cls,
        id: int,
        model: str,
        selector: Selector,
        *,
        version: int | None = None,
        alias: str | None = None,
    ) -> DeploymentSpec:
        """An immediate deployment: one arm, every store."""
        return cls(id, model, selector, (ArmSpec("A", 100.0, version, alias),))

    def arm_of(self, store_id: str) -> ArmSpec:
        """The arm ``store_id`` is in."""
        if len(self.arms) == 1:
            return self.arms[0]
        name = arm_for(self.salt, store_id, [(arm.name, arm.weight) for arm in self.arms])
        return next(arm for arm in self.arms if arm.name == name)


@dataclass(frozen=True)
class Release:
    """A live model version: what a device downloads."""

    model: str
    version: int
    target_path: str  # the TUF target
    sha256: str
    length: int  # bytes


@dataclass(frozen=True)
class Catalog:
    """Live releases by (model, version) and aliases by (model, alias) → version."""

    releases: Mapping[tuple[str, int], Release]
    aliases: Mapping[tuple[str, str], int]

    def version_of(self, model: str, arm: ArmSpec) -> int | None:
        """The version an arm names now (its alias followed), live or not."""
        if arm.version is not None:
            return arm.version
        return None if arm.alias is None else self.aliases.get((model, arm.alias))

    def release_for(self, model: str, arm: ArmSpec) -> Release | None:
        """The live release of ``arm``, or None (alias unset, version withdrawn)."""
        version = self.version_of(model, arm)
        return None if version is None else self.releases.get((model, version))


@dataclass(frozen=True)
class Assignment:
    """What a device should run, and which deployment said so."""

    deployment_id: int
    model: str
    version: int
    target_path: str
    sha256: str
    length: int
    arm: str  # the deployment's arm the device's store is in

    def etag(self) -> str:
        return etag_of(self)


def etag_of(assignment: Assignment | None) -> str:
    """A strong ETag for an assignment (or for having none)."""
    body = json.dumps(asdict(assignment) if assignment else None, sort_keys=True)
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def resolve(
    device: DeviceFacts, deployments: Iterable[DeploymentSpec], catalog: Catalog
) -> Assignment | None:
    """The assignment of ``device``: its arm of the newest matching deployment with a live
    release."""
    for deployment in sorted(deployments, key=lambda d: d.id, reverse=True):
        if not deployment.selector.matches(device):
            continue
        arm = deployment.arm_of(device.store_id)
        release = catalog.release_for(deployment.model, arm)
        if release is None and arm is not deployment.arms[0]:
            arm = deployment.arms[0]  # the candidate was withdrawn: back to the control
            release = catalog.release_for(deployment.model, arm)
        if release is None:
            continue
        return Assignment(
            deployment.id,
            release.model,
            release.version,
            release.target_path,
            release.sha256,
            release.length,
            arm.name,
        )
    return None
