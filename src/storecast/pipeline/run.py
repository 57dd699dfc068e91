"""Train → evaluate → quality gate → package → publish → deploy: ``run_pipeline``.

Each step logs what it did (``logging``) and tells the caller through ``Callbacks``; a
failed gate raises ``GateFailed`` before anything is packaged or published. A re-run with
the same training inputs reuses the checkpoint and bundle recorded in the output folder
(see ``state``): the registry answers the publish with ``created: false``, the existing
deployment is found, and nothing new is created.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storecast import __version__
from storecast.bundle.verify import verify_bundle
from storecast.client import CloudClient
from storecast.common.clock import Clock
from storecast.common.errors import ModelError
from storecast.forecasting.history import StoreHistory, iso_hour
from storecast.forecasting.synthetic import ChainConfig
from storecast.forecasting.training import EpochStats, TrainConfig, with_overrides
from storecast.forecasting.workflow import (
    DataSource,
    code_commit,
    file_source,
    history_digest,
    metrics_path,
    synthetic_source,
    train_and_evaluate,
    write_json,
)
from storecast.pipeline import release, remote
from storecast.pipeline.compare import PRODUCTION, holdout_origins, score_bundle
from storecast.pipeline.config import PipelineConfig
from storecast.pipeline.gate import BASELINES, Evidence, GateFailed, GateReport, evaluate_gate
from storecast.pipeline.state import RunState, file_sha256, inputs_key, load_state, save_state

log = logging.getLogger(__name__)

REPORT_FILE = "pipeline-report.json"


@dataclass(frozen=True)
class Callbacks:
    """How a caller watches a run; every field is optional."""

    on_step: Callable[[str, str], None] | None = None  # (step name, what it did)
    on_train_step: Callable[[int, int], None] | None = None  # (steps done, total)
    on_epoch: Callable[[EpochStats], None] | None = None


@dataclass(frozen=True)
class PipelineResult:
    """What a run published and deployed (or found already there)."""

    model: str
    version: int
    sha256: str  # of the bundle
    created: bool  # a new version was published
    deployment_id: int
    deployment_created: bool
    gate: GateReport
    metrics: dict[str, Any]  # the candidate's hold-out report
    production_metrics: dict[str, Any] | None  # the production model's, same hold-out
    bundle: Path
    report: Path  # pipeline-report.json
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def nothing_new(self) -> bool:
        return not self.created and not self.deployment_created


class _Narrator:
    def __init__(self, callbacks: Callbacks) -> None:
        self.callbacks = callbacks

    def __call__(self, step: str, message: str) -> None:
        log.info("%s: %s", step, message)
        if self.callbacks.on_step:
            self.callbacks.on_step(step, message)


def run_pipeline(
    config: PipelineConfig,
    *,
    registry_url: str,
    token: str | None,
    callbacks: Callbacks | None = None,
    history: StoreHistory | None = None,
    clock: Clock | None = None,
) -> PipelineResult:
    """Run the release pipeline ``config`` describes against the registry at ``registry_url``.

    ``history`` replaces the configured data (the demo passes the history it simulated).
    Raises ``GateFailed`` (nothing published) when the candidate is not good enough.
    """
    say = _Narrator(callbacks or Callbacks())
    name = config.model.name
    out = config.output.dir
    out.mkdir(parents=True, exist_ok=True)
    source = _data_source(config, history)
    info = source.info
    say("data", f"{info['stores']} stores x {info['hours']:,} hours from {info['source']}")
    tcfg = _train_config(config)
    inputs = {
        "model": name,
        "data_sha256": info["sha256"],
        "quick": config.train.quick,
        "train": tcfg.to_dict(),
        "storecast_version": __version__,
        "code_commit": code_commit(),
    }
    key = inputs_key(inputs)
    with CloudClient(registry_url, token) as client:
        remote.model_state(client, name)  # a bad URL or token fails now, not after training
        state, metrics = _train(out, source, config, tcfg, key, inputs, callbacks, clock, say)

        registry = remote.model_state(client, name)
        gate, production_metrics = _gate(
            client, config, registry, state, source, tcfg, metrics, say
        )
        say("gate", "passed" if gate.passed else "failed: " + "; ".join(gate.failures))
        _write_report(out, config, state, metrics, production_metrics, gate)
        if not gate.passed:
            raise GateFailed(gate, metrics=metrics, production_metrics=production_metrics)

        state = release.package(out, name, registry, state, say)
        created = release.publish(client, out, name, state, say)
        deployment, deployment_created, notes = release.deploy(client, config, state, say)
        state = state.model_copy(update={"deployment_id": deployment["id"]})
        save_state(out, state)
    report = _write_report(out, config, state, metrics, production_metrics, gate, deployment)
    result = PipelineResult(
        model=name,
        version=int(state.version or 0),
        sha256=str(state.sha256),
        created=created,
        deployment_id=int(deployment["id"]),
        deployment_created=deployment_created,
        gate=gate,
        metrics=metrics,
        production_metrics=production_metrics,
        bundle=out / str(state.bundle),
        report=report,
        notes=gate.notes + notes,
    )
    if result.nothing_new:
        log.info("nothing new: %s v%d is published and deployed", name, result.version)
    return result


def _data_source(config: PipelineConfig, history: StoreHistory | None) -> DataSource:
    if history is not None:
        return DataSource(
            history,
            {
                "source": history.source,
                "sha256": history_digest(history),
                "synthetic": None,
                "stores": history.n_stores,
                "hours": history.n_hours,
                "start": iso_hour(history.start),
                "filled_hours": history.filled_hours,
            },
        )
    if config.data.path is not None:
        return file_source(config.data.path)
    synthetic = config.data.synthetic
    if synthetic is None:  # the config's validator requires one of them
        raise ModelError("the pipeline config names no training data")
    return synthetic_source(ChainConfig(**synthetic.model_dump()))


def _train_config(config: PipelineConfig) -> TrainConfig:
    base = TrainConfig.quick() if config.train.quick else TrainConfig()
    return with_overrides(base, **config.train.overrides())


def _train(
    out: Path,
    source: DataSource,
    config: PipelineConfig,
    tcfg: TrainConfig,
    key: str,
    inputs: dict[str, Any],
    callbacks: Callbacks | None,
    clock: Clock | None,
    say: _Narrator,
) -> tuple[RunState, dict[str, Any]]:
    """Reuse the checkpoint these inputs already produced, or train one."""
    checkpoint = out / f"{config.model.name}.pt"
    state = load_state(out)
    if state is not None and state.inputs_key == key:
        digest = file_sha256(checkpoint)
        metrics = _read_metrics(checkpoint)
        if digest == state.checkpoint_sha256 and metrics.get("checkpoint_sha256") == digest:
            say("train", f"reusing {checkpoint.name}: already trained on these inputs")
            return state, metrics
    hooks = callbacks or Callbacks()
    outcome = train_and_evaluate(
        source,
        checkpoint,
        quick=config.train.quick,
        train_config=tcfg,
        on_step=hooks.on_train_step,
        on_epoch=hooks.on_epoch,
        clock=clock,
    )
    if outcome.metrics is None:
        raise KeyboardInterrupt  # training was interrupted (Ctrl-C): nothing to release
    result = outcome.result
    say(
        "train",
        f"trained in {result.seconds:.0f}s ({result.stopped.replace('_', ' ')}, best epoch "
        f"{result.best_epoch}) -> {checkpoint}",
    )
    state = RunState(
        inputs_key=key,
        inputs=inputs,
        checkpoint=checkpoint.name,
        checkpoint_sha256=str(outcome.metrics["checkpoint_sha256"]),
    )
    save_state(out, state)
    return state, outcome.metrics


def _read_metrics(checkpoint: Path) -> dict[str, Any]:
    try:
        data = json.loads(metrics_path(checkpoint).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _gate(
    client: CloudClient,
    config: PipelineConfig,
    registry: remote.ModelState,
    state: RunState,
    source: DataSource,
    tcfg: TrainConfig,
    metrics: dict[str, Any],
    say: _Narrator,
) -> tuple[GateReport, dict[str, Any] | None]:
    """Score the production model on the candidate's hold-out, then decide."""
    alias = config.gate.production_alias
    wape = metrics["wape"]
    production_version = registry.aliases.get(alias)
    production_wape, production_metrics, note = None, None, None
    row = registry.version(production_version)
    if production_version is None or row is None:
        note = f"no model at the {alias!r} alias"
    elif state.sha256 is not None and row["sha256"] == state.sha256:
        note = f"the {alias!r} alias is this candidate (v{production_version})"
    else:
        raw = remote.download(client, row["sha256"])
        bundle = verify_bundle(raw)
        if bundle.sha256 != row["sha256"]:
            raise ModelError(
                f"{config.model.name} v{production_version}: downloaded sha256 {bundle.sha256}, "
                f"the registry lists {row['sha256']}"
            )
        origins = holdout_origins(source.history, tcfg.test_days)
        production_metrics = score_bundle(bundle, source.history, origins, seed=tcfg.seed)
        production_wape = production_metrics["wape"][PRODUCTION]
    figures = ", ".join(f"{m} {wape[m]:.3f}" for m in ("lstm", *BASELINES) if wape.get(m))
    against = (
        f"; {alias} v{production_version} {production_wape:.3f} (ONNX, same hold-out)"
        if production_wape is not None
        else f"; {note}"
    )
    say("evaluate", f"hold-out WAPE {figures}{against}")
    evidence = Evidence(
        candidate_wape=wape["lstm"],
        baseline_wape={b: wape.get(b) for b in BASELINES},
        production_wape=production_wape,
        production_version=production_version,
        production_note=note,
    )
    gate = evaluate_gate(
        evidence,
        min_improvement_vs_snaive=config.gate.min_improvement_vs_snaive,
        max_regression_vs_production=config.gate.max_regression_vs_production,
    )
    return gate, production_metrics


def _write_report(
    out: Path,
    config: PipelineConfig,
    state: RunState,
    metrics: dict[str, Any],
    production_metrics: dict[str, Any] | None,
    gate: GateReport,
    deployment: dict[str, Any] | None = None,
) -> Path:
    """``pipeline-report.json``: the figures and decisions of this run (a CI artifact)."""
    path = out / REPORT_FILE
    write_json(
        path,
        {
            "model": config.model.name,
            "inputs_key": state.inputs_key,
            "inputs": state.inputs,
            "checkpoint": state.checkpoint,
            "gate": gate.to_dict(),
            "candidate": metrics,
            "production": production_metrics,
            "version": state.version if deployment else None,
            "sha256": state.sha256 if deployment else None,
            "deployment": deployment,
        },
    )
    return path
