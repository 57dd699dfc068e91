"""The pipeline end to end against a live registry: release, re-run, refuse a worse model.

One registry for the module; the tests run in order and build on each other's releases
(v1 at once, then v2 as a canary against it), as a team's weekly releases would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storecast.pipeline import Callbacks, GateFailed, PipelineResult, run_pipeline
from storecast.pipeline.config import PipelineConfig
from storecast.registry.setup import init_registry
from tests.pipeline._config import tiny_config
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry

pytestmark = pytest.mark.slow

MODEL = "demand-lstm"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    home = tmp_path_factory.mktemp("registry")
    config = registry_config(home, f"sqlite:///{home / 'cloud.db'}")
    with serve_registry(config, init_registry(config)) as running:
        yield running


@pytest.fixture(scope="module")
def publisher(live: LiveRegistry) -> str:
    return live.token("publisher", "ci")


@pytest.fixture(scope="module")
def out_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release-v1")


def run(config: PipelineConfig, live: LiveRegistry, token: str) -> PipelineResult:
    steps: list[tuple[str, str]] = []
    result = run_pipeline(
        config,
        registry_url=live.url,
        token=token,
        callbacks=Callbacks(on_step=lambda step, message: steps.append((step, message))),
    )
    assert [s for s, _ in steps][:1] == ["data"]
    return result


def model(live: LiveRegistry) -> dict[str, Any]:
    with live.client(live.admin) as http:
        return dict(http.get(f"/v1/models/{MODEL}").raise_for_status().json())


def deployments(live: LiveRegistry) -> list[dict[str, Any]]:
    with live.client(live.admin) as http:
        return list(http.get("/v1/deployments").raise_for_status().json()["deployments"])


@pytest.fixture(scope="module")
def first(live: LiveRegistry, publisher: str, out_v1: Path) -> PipelineResult:
    return run(tiny_config(out_v1), live, publisher)


def test_first_release_passes_vs_naive_publishes_v1_and_deploys_it_at_once(
    first: PipelineResult, live: LiveRegistry
) -> None:
    assert (first.version, first.created, first.deployment_created) == (1, True, True)
    assert first.gate.passed
    vs_snaive, vs_production = first.gate.checks
    assert vs_snaive.passed and vs_snaive.value is not None and vs_snaive.value >= 0.05
    assert vs_production.passed and vs_production.value is None
    assert "no model at the 'production' alias" in vs_production.detail
    # a canary needs a control: with no production model the first release goes out at once
    assert any("deploying at once" in note for note in first.notes)
    found = model(live)
    assert [v["sha256"] for v in found["versions"]] == [first.sha256]
    assert found["aliases"] == {"production": 1}
    [deployment] = deployments(live)
    assert deployment["id"] == first.deployment_id
    assert (deployment["strategy"], deployment["version"]) == ("immediate", 1)
    assert first.report.is_file() and first.bundle.is_file()


def test_a_rerun_with_the_same_config_does_nothing_new(
    first: PipelineResult, live: LiveRegistry, publisher: str, out_v1: Path
) -> None:
    again = run(tiny_config(out_v1), live, publisher)
    assert again.nothing_new
    assert (again.version, again.sha256, again.deployment_id) == (1, first.sha256, 1)
    assert "'production' alias is this candidate (v1)" in again.gate.checks[1].detail
    assert len(model(live)["versions"]) == 1
    assert len(deployments(live)) == 1


def test_a_candidate_worse_than_production_is_refused_and_nothing_is_published(
    first: PipelineResult, live: LiveRegistry, publisher: str, tmp_path: Path
) -> None:
    weak = tiny_config(tmp_path, train={"max_epochs": 1, "steps_per_epoch": 2})  # barely trained
    with pytest.raises(GateFailed) as refused:
        run(weak, live, publisher)
    report = refused.value.report
    assert not report.passed
    vs_production = report.checks[1]
    assert not vs_production.passed and vs_production.value is not None
    candidate_report, production_report = refused.value.metrics, refused.value.production_metrics
    assert candidate_report is not None and production_report is not None
    candidate = candidate_report["wape"]["lstm"]
    production = production_report["wape"]["production"]
    assert production == pytest.approx(first.metrics["wape"]["lstm"], abs=1e-4)  # ONNX ~ torch
    assert vs_production.value == pytest.approx(candidate - production) and candidate > production
    assert vs_production.detail == (
        f"WAPE {candidate:.3f} vs production v1 {production:.3f}: "
        f"worse by {candidate - production:.3f} > 0.000"
    )
    assert vs_production.detail in str(refused.value)
    # the same hold-out: the baselines score identically for both models
    assert production_report["wape"]["snaive_168"] == first.metrics["wape"]["snaive_168"]
    assert production_report["backtest"] == first.metrics["backtest"]
    assert len(model(live)["versions"]) == 1
    assert len(deployments(live)) == 1


def test_a_second_release_goes_out_as_a_canary_against_production(
    first: PipelineResult, live: LiveRegistry, publisher: str, tmp_path: Path
) -> None:
    # another seed: another model, allowed to be a little worse than v1 on the hold-out
    config = tiny_config(tmp_path, train={"seed": 1}, gate={"max_regression_vs_production": 0.05})
    second = run(config, live, publisher)
    assert (second.version, second.created, second.deployment_created) == (2, True, True)
    assert second.gate.checks[1].value is not None  # scored against production v1
    newest = deployments(live)[0]
    assert newest["id"] == second.deployment_id
    assert newest["strategy"] == "canary" and newest["promote_alias"] == "production"
    arms = {arm["arm"]: arm for arm in newest["arms"]}
    assert (arms["A"]["alias"], arms["A"]["resolved_version"]) == ("production", 1)
    assert arms["B"]["version"] == 2
    assert [s["percent"] for s in newest["plan"]["steps"]] == [50, 100]
    assert model(live)["aliases"] == {"production": 1}  # moves when the canary completes
