"""pipeline.toml: what it accepts, and errors that name the key when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from storecast.common.errors import ConfigError
from storecast.pipeline.config import PipelineConfig, load_config
from tests.pipeline._config import tiny_config_dict

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_example_is_valid():
    config = load_config(REPO / "pipeline.toml")
    assert config.model.name == "demand-lstm"
    assert config.deploy.strategy == "canary"
    assert [s.percent for s in config.deploy.steps] == [50, 100]
    assert config.output.dir == REPO / "pipeline-out"  # relative to the file


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    path = tmp_path / "cfg" / "pipeline.toml"
    path.parent.mkdir()
    path.write_text('[data]\npath = "data/h.csv"\n[output]\ndir = "out"\n')
    config = load_config(path)
    assert config.data.path == tmp_path / "cfg" / "data" / "h.csv"
    assert config.output.dir == tmp_path / "cfg" / "out"


def test_defaults_fill_everything_but_the_data(tmp_path):
    config = PipelineConfig.from_dict({"data": {"synthetic": {}}}, base_dir=tmp_path)
    assert config.gate.min_improvement_vs_snaive == 0.05
    assert config.gate.max_regression_vs_production == 0.0
    assert config.deploy.promote_alias == "production"
    assert config.output.dir == tmp_path / "pipeline-out"


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("gate", {"min_improvment_vs_snaive": 0.05}, "gate.min_improvment_vs_snaive: unknown key"),
        ("gate", {"max_regression_vs_production": -0.1}, "gate.max_regression_vs_production:"),
        ("train", {"test_days": 30}, "train.test_days: Input should be a multiple of 7"),
        ("train", {"max_epochs": "many"}, "train.max_epochs:"),
        ("model", {"name": "Demand LSTM"}, "model.name: String should match pattern"),
        ("registry", {"token": "sct_secret"}, "registry: tokens never go in the file"),
        ("registry", {"url": "not a url"}, "registry.url:"),
        ("deploy", {"strategy": "yolo"}, "deploy.strategy: Input should be 'canary' or"),
        (
            "deploy",
            {"steps": [{"percent": 50}, {"percent": 40}]},
            "deploy.steps: step percentages must increase, got [50.0, 40.0]",
        ),
        ("deploy", {"steps": [{"percent": 50}]}, "deploy.steps: the last step must be 100"),
        ("deploy", {"steps": [{"percent": 100, "min_hours": 1}]}, "deploy.steps.0.min_hours:"),
        ("deploy", {"selector": {"kind": "regions"}}, "deploy.selector: selector 'regions' needs"),
        ("deploy", {"gates": {"max_error_rate": 2}}, "deploy.gates.max_error_rate:"),
        ("data", {"path": "h.csv"}, "data: give exactly one of 'path' and 'synthetic'"),
        ("output", {"folder": "x"}, "output.folder: unknown key"),
    ],
)
def test_bad_keys_and_values_are_refused_naming_the_key(tmp_path, section, values, message):
    with pytest.raises(ConfigError) as refused:
        PipelineConfig.from_dict(tiny_config_dict(tmp_path, **{section: values}))
    assert message in str(refused.value)


def test_an_unknown_section_is_refused(tmp_path):
    data = {**tiny_config_dict(tmp_path), "deploy_to": {}}
    with pytest.raises(ConfigError, match="deploy_to: unknown key"):
        PipelineConfig.from_dict(data)


def test_a_missing_data_section_is_named(tmp_path):
    data = tiny_config_dict(tmp_path)
    del data["data"]
    with pytest.raises(ConfigError, match="data: Field required"):
        PipelineConfig.from_dict(data)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[data]\nsynthetic = {}\n[gate]\nmargin = 1\n")
    with pytest.raises(ConfigError, match=r"wrong\.toml: .*gate\.margin: unknown key"):
        load_config(wrong)


def test_train_overrides_are_only_the_keys_given(tmp_path):
    config = PipelineConfig.from_dict(tiny_config_dict(tmp_path))
    assert config.train.overrides() == {"max_epochs": 12, "steps_per_epoch": 10, "batch_size": 64}


def test_an_empty_promote_alias_moves_no_alias(tmp_path):
    config = PipelineConfig.from_dict(tiny_config_dict(tmp_path, deploy={"promote_alias": ""}))
    assert config.deploy.promote_alias is None
