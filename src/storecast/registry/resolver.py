"""Which model version a device should run: a pure function over plain data.

Deployments point a selector (all devices, some stores, regions or tags) at a model
version or alias. For a device, the newest active deployment that matches it and points at
a live (published, not withdrawn) version wins; a deployment whose alias is unset or whose
version was withdrawn is passed over, so no device is ever sent to a withdrawn version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum


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
class DeploymentSpec:
    """An active deployment as the resolver sees it (exactly one of version / alias)."""

    id: int
    model: str
    selector: Selector
    version: int | None = None
    alias: str | None = None


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

    def release_for(self, deployment: DeploymentSpec) -> Release | None:
        version = deployment.version
        if version is None and deployment.alias is not None:
            version = self.aliases.get((deployment.model, deployment.alias))
        if version is None:
            return None
        return self.releases.get((deployment.model, version))


@dataclass(frozen=True)
class Assignment:
    """What a device should run, and which deployment said so."""

    deployment_id: int
    model: str
    version: int
    target_path: str
    sha256: str
    length: int

    def etag(self) -> str:
        return etag_of(self)


def etag_of(assignment: Assignment | None) -> str:
    """A strong ETag for an assignment (or for having none)."""
    body = json.dumps(asdict(assignment) if assignment else None, sort_keys=True)
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def resolve(
    device: DeviceFacts, deployments: Iterable[DeploymentSpec], catalog: Catalog
) -> Assignment | None:
    """The assignment of ``device``: newest matching deployment with a live release."""
    for deployment in sorted(deployments, key=lambda d: d.id, reverse=True):
        if not deployment.selector.matches(device):
            continue
        release = catalog.release_for(deployment)
        if release is None:
            continue
        return Assignment(
            deployment.id,
            release.model,
            release.version,
            release.target_path,
            release.sha256,
            release.length,
        )
    return None
