"""What a pipeline run remembers in its output folder, so a re-run does nothing new.

Training is deterministic in its weights for a seed on CPU, but the checkpoint's bytes are
not: they record when and how long training ran. So the key of a run is the hash of its
training inputs (data digest, training parameters, model name, storecast version and code
commit), and ``pipeline-state.json`` records what those inputs produced: the checkpoint,
the bundle, its version and digest, the deployment. A run whose key matches reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from storecast.common.files import atomic_write_bytes

log = logging.getLogger(__name__)

STATE_FILE = "pipeline-state.json"


class RunState(BaseModel):
    """The record of the last run in an output folder."""

    model_config = ConfigDict(extra="ignore")

    inputs_key: str
    inputs: dict[str, Any]
    checkpoint: str  # file name in the output folder
    checkpoint_sha256: str
    bundle: str | None = None  # path relative to the output folder
    version: int | None = None
    sha256: str | None = None  # of the bundle
    deployment_id: int | None = None


def inputs_key(inputs: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a run's training inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load_state(out_dir: Path) -> RunState | None:
    """The recorded state, or None when there is none or it is unreadable (logged)."""
    path = out_dir / STATE_FILE
    try:
        return RunState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("%s: ignoring an unreadable state file (%s)", path, exc)
        return None


def save_state(out_dir: Path, state: RunState) -> None:
    """Write the state file atomically."""
    atomic_write_bytes(out_dir / STATE_FILE, (state.model_dump_json(indent=2) + "\n").encode())


def file_sha256(path: Path) -> str | None:
    """sha256 of a file, None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
