"""The release steps after the gate: package, publish, deploy, each idempotent.

A step that finds its work already done (the bundle built for this checkpoint, the same
bytes published, a deployment of the version) reports so and creates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from storecast.bundle.packaging import build_bundle
from storecast.client import CloudClient
from storecast.common.errors import ModelError
from storecast.pipeline import remote
from storecast.pipeline.config import PipelineConfig
from storecast.pipeline.state import RunState, file_sha256, save_state

Say = Callable[[str, str], None]  # (step, what it did)


def package(
    out: Path, name: str, registry: remote.ModelState, state: RunState, say: Say
) -> RunState:
    """The bundle: the one built before for this checkpoint when its version is still its
    own (published with this digest, or still the next free one); else a new version."""
    if state.bundle and state.sha256 and state.version is not None:
        same = file_sha256(out / state.bundle) == state.sha256
        mine = registry.with_digest(state.sha256) is not None
        if same and (mine or state.version == registry.next_version):
            say("package", f"reusing {state.bundle} (sha256 {state.sha256[:12]})")
            return state
    version = registry.next_version
    built = build_bundle(out / state.checkpoint, name=name, version=version, out_dir=out / "dist")
    state = state.model_copy(
        update={
            "bundle": str(built.path.relative_to(out)),
            "version": version,
            "sha256": built.bundle.sha256,
            "deployment_id": None,
        }
    )
    save_state(out, state)
    say("package", f"{built.path} v{version} (sha256 {built.bundle.sha256[:12]})")
    return state


def publish(client: CloudClient, out: Path, name: str, state: RunState, say: Say) -> bool:
    """Publish the bundle; False when the registry already had these bytes."""
    published = client.publish(out / str(state.bundle))
    if published["sha256"] != state.sha256 or published["version"] != state.version:
        raise ModelError(
            f"the registry stored {name} v{published['version']} sha256 "
            f"{published['sha256']}, not the bundle sent (v{state.version} {state.sha256})"
        )
    created = bool(published["created"])
    what = "published" if created else "already published:"
    say("publish", f"{what} {name} v{state.version} (sha256 {state.sha256})")
    return created


def deploy(
    client: CloudClient,
    config: PipelineConfig,
    state: RunState,
    say: Say,
) -> tuple[dict[str, Any], bool, tuple[str, ...]]:
    """The deployment of this version: the existing one, or a new one as configured."""
    name, version = config.model.name, int(state.version or 0)
    existing = remote.find_deployment(client, name, version)
    if existing is not None:
        say("deploy", f"deployment #{existing['id']} of v{version} exists ({existing['status']})")
        return existing, False, ()
    deploy = config.deploy
    control = remote.model_state(client, name).aliases.get(deploy.control)
    body, note = remote.deployment_body(deploy, name, version, control)
    deployment = remote.create_deployment(client, body)
    what = (
        f"canary #{deployment['id']}: v{version} against @{deploy.control} (v{control}), "
        f"steps {[s.percent for s in deploy.steps]} %"
        if body.get("strategy")
        else f"deployment #{deployment['id']}: v{version} to every selected store at once"
    )
    say("deploy", what + (f" ({note})" if note else ""))
    if not body.get("strategy") and deploy.promote_alias:
        remote.set_alias(client, name, deploy.promote_alias, version)
        say("deploy", f"{name}@{deploy.promote_alias} -> v{version}")
    return deployment, True, (note,) if note else ()
