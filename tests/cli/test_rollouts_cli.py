"""`storecast deploy --canary` and `storecast rollouts ...` against a live registry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storecast.cli import app
from storecast.client import ApiRefused
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import init_registry
from tests.registry import conftest as registry_fixtures
from tests.registry._rollouts import MODEL, publish_versions
from tests.registry.conftest import LiveRegistry, MakeBundle, registry_config, serve_registry

bundle_v1 = registry_fixtures.bundle_v1  # the registry's bundle fixtures, for this module too
make_bundle = registry_fixtures.make_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveRegistry]:
    bundles: MakeBundle = request.getfixturevalue("make_bundle")
    home = tmp_path_factory.mktemp("rollouts-cli")
    config = registry_config(home / "registry", f"sqlite:///{home / 'cloud.db'}")
    with serve_registry(config, init_registry(config)) as served:
        with served.client(served.admin) as http:
            publish_versions(http, bundles, 1, 2)
        served.enrol("dev-1", "S001")
        yield served


def cli(live: LiveRegistry, *args: str) -> tuple[int, str, BaseException | None]:
    env = {"STORECAST_REGISTRY": live.url, "STORECAST_TOKEN": live.admin, "COLUMNS": "200"}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output, result.exception


CANARY = [
    "deploy", "--canary", "--model", MODEL, "--control-version", "1", "--candidate-version", "2",
    "--steps", "5,25,50,100", "--step-duration", "3600", "--min-forecast-hours", "24",
    "--min-inferences", "100", "--wape-margin", "0.02", "--promote-alias", "production",
]  # fmt: skip


def test_deploy_canary_then_status_and_operator_actions(live):
    code, out, _ = cli(live, *CANARY)
    assert code == 0, out
    found = re.search(r"deployment (\d+): canary demand-lstm v1 -> v2, steps 5,25,50,100 %", out)
    assert found, out
    deployment = found.group(1)
    shown = live.client(live.admin).get(f"/v1/deployments/{deployment}").json()
    assert shown["promote_alias"] == "production"
    assert shown["plan"]["steps"][0] == {
        "percent": 5.0, "min_duration_s": 3600.0, "min_forecast_hours": 24, "min_inferences": 100,
    }  # fmt: skip

    code, out, _ = cli(live, "rollouts", "status")
    assert code == 0 and "canary" in out and "A=v1 95%, B=v2 5%" in out and "1/4" in out
    code, out, _ = cli(live, "rollouts", "status", deployment)
    assert code == 0, out
    assert f"deployment {deployment} (demand-lstm, canary): active, step 1/4 at 5%" in out
    assert "controller now: wait" in out
    code, out, _ = cli(live, "rollouts", "status", deployment, "--json")
    assert code == 0 and json.loads(out)["deployment_id"] == int(deployment)

    code, out, _ = cli(live, "rollouts", "pause", deployment, "--reason", "holiday week")
    assert code == 0 and f"deployment {deployment}: paused" in out
    code, out, _ = cli(live, "rollouts", "resume", deployment)
    assert code == 0 and "active" in out
    code, out, _ = cli(live, "rollouts", "promote", deployment)
    assert code == 0 and "step 2/4" in out and "B=v2 25%" in out
    code, out, _ = cli(live, "rollouts", "abort", deployment)
    assert code == 0 and "aborted" in out and "B=v2 0%" in out
    code, _, exc = cli(live, "rollouts", "resume", deployment)
    assert isinstance(exc, ApiRefused) and exc.status == 409  # exit 2 through main()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "5,x,100"], "comma-separated percentages"),
        (["--steps", "50,25,100"], "--steps must increase"),
        (["--steps", "5,50"], "must end at 100"),
        (["--steps", "0,100"], "(0, 100]"),
        (
            ["--candidate-alias", "canary"],
            "exactly one of --candidate-version and --candidate-alias",
        ),
        (["--version", "2"], "not --version / --alias"),
    ],
)
def test_deploy_canary_refuses_bad_input_with_exit_code_2(live, args, message):
    code, out, _ = cli(live, *CANARY, *args)
    assert code == 2
    assert message in out


def test_canary_options_need_canary(live):
    code, out, _ = cli(
        live, "deploy", "--model", MODEL, "--version", "1", "--candidate-version", "2"
    )
    assert code == 2 and "need --canary" in out


def test_rollouts_tick_runs_the_controller_once_for_cron(tmp_path: Path):
    config = RegistryConfig(home=tmp_path / "home")
    init_registry(config)
    result = runner.invoke(app, ["rollouts", "tick", "--home", str(config.home)])
    assert result.exit_code == 0, result.output
    assert "0 active canaries checked" in result.output
    nothing = runner.invoke(app, ["rollouts", "tick", "--home", str(tmp_path / "none")])
    assert nothing.exit_code == 2 and "registry init" in nothing.output
