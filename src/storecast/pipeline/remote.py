"""The registry calls the pipeline makes, over ``CloudClient`` (HTTP, like any client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storecast.client import ApiRefused, CloudClient
from storecast.pipeline.config import DeployConfig


@dataclass(frozen=True)
class ModelState:
    """A model as the registry has it now (empty when it was never published)."""

    name: str
    versions: list[dict[str, Any]] = field(default_factory=list)  # VersionSummary bodies
    aliases: dict[str, int] = field(default_factory=dict)
    next_version: int = 1

    def version(self, number: int | None) -> dict[str, Any] | None:
        return next((v for v in self.versions if v["version"] == number), None)

    def with_digest(self, sha256: str) -> dict[str, Any] | None:
        return next((v for v in self.versions if v["sha256"] == sha256), None)


def model_state(client: CloudClient, name: str) -> ModelState:
    """``GET /v1/models/{name}``; a model never published has no versions and no aliases."""
    try:
        body = client.json("GET", f"/v1/models/{name}")
    except ApiRefused as exc:
        if exc.status == 404:
            return ModelState(name)
        raise
    return ModelState(
        name, list(body["versions"]), dict(body["aliases"]), int(body["next_version"])
    )


def download(client: CloudClient, sha256: str) -> bytes:
    """A bundle's bytes by digest (``GET /v1/artifacts/{sha256}``); verify before use."""
    return client.request("GET", f"/v1/artifacts/{sha256}").content


def find_deployment(client: CloudClient, name: str, version: int) -> dict[str, Any] | None:
    """The newest deployment of ``name`` whose (candidate) version is ``version``."""
    for deployment in client.json("GET", "/v1/deployments")["deployments"]:
        if deployment["model"] == name and deployment["version"] == version:
            return dict(deployment)
    return None


def deployment_body(
    deploy: DeployConfig, name: str, version: int, control_version: int | None
) -> tuple[dict[str, Any], str | None]:
    """The ``POST /v1/deployments`` body for ``version``, and a note when the configured
    canary falls back to an immediate rollout (no control to compare with)."""
    selector = deploy.selector.model_dump()
    note = None
    if deploy.strategy == "canary":
        if control_version is not None and control_version != version:
            body: dict[str, Any] = {
                "model": name,
                "control": {"alias": deploy.control},
                "candidate": {"version": version},
                "selector": selector,
                "strategy": {
                    "kind": "canary",
                    "steps": [s.model_dump() for s in deploy.steps],
                    "gates": deploy.gates.model_dump(),
                },
            }
            if deploy.promote_alias:
                body["promote_alias"] = deploy.promote_alias
            if deploy.salt:
                body["salt"] = deploy.salt
            return body, None
        note = (
            f"no model at the {deploy.control!r} alias to be the canary's control"
            if control_version is None
            else f"v{version} is already at the {deploy.control!r} alias"
        ) + ": deploying at once"
    return {"model": name, "version": version, "selector": selector}, note


def create_deployment(client: CloudClient, body: dict[str, Any]) -> dict[str, Any]:
    return dict(client.json("POST", "/v1/deployments", json=body))


def set_alias(client: CloudClient, name: str, alias: str, version: int) -> None:
    client.json("PUT", f"/v1/models/{name}/aliases/{alias}", json={"version": version})
