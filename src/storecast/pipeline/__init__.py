"""The model release pipeline: train → evaluate → quality gate → package → publish → deploy.

    config      ``pipeline.toml`` as validated pydantic models (``load_config``,
                ``PipelineConfig.from_dict`` to build one in code)
    gate        the quality gate, a pure function over hold-out figures
    compare     scoring the production model's ONNX on the candidate's hold-out
    state       the output folder's record that makes a re-run do nothing new
    remote      the registry calls (HTTP through ``CloudClient``)
    release     package, publish, deploy: each finds its work done or does it
    run         ``run_pipeline``, which sequences the steps

``storecast pipeline run --config pipeline.toml`` is the command line; see docs/pipeline.md.
Importing this package imports torch (training); the config and gate modules alone do not
need it, but importing them through the package does.
"""

from storecast.pipeline.config import PipelineConfig, load_config
from storecast.pipeline.gate import Check, Evidence, GateFailed, GateReport, evaluate_gate
from storecast.pipeline.run import Callbacks, PipelineResult, run_pipeline

__all__ = [
    "Callbacks",
    "Check",
    "Evidence",
    "GateFailed",
    "GateReport",
    "PipelineConfig",
    "PipelineResult",
    "evaluate_gate",
    "load_config",
    "run_pipeline",
]
