"""The pipeline's configuration: ``pipeline.toml`` read into validated pydantic models.

Unknown keys are refused and every error names the key (``deploy.steps.1.percent: ...``),
so a typo fails before an hour of training, not after. The registry token never lives in
the file: it comes from ``STORECAST_TOKEN``.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storecast.bundle.metadata import NAME_PATTERN
from storecast.common.errors import ConfigError

ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"  # as the registry accepts them
SELECTOR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class SyntheticData(_Section):
    """A synthetic chain (``storecast.forecasting.synthetic.ChainConfig``)."""

    stores: int = Field(default=20, ge=1, le=10_000)
    days: int = Field(default=730, ge=1, le=20_000)
    seed: int = 7
    start: str = Field(default="2024-01-01", pattern=r"^\d{4}-\d{2}-\d{2}$")  # first day, UTC


class DataConfig(_Section):
    """Training data: a history file (CSV or Parquet) or a synthetic chain, not both."""

    path: Path | None = None  # relative paths are relative to the config file
    synthetic: SyntheticData | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'path' and 'synthetic'")
        return self


class TrainSection(_Section):
    """``quick`` picks the small architecture and budget; the rest override its fields
    (``storecast.forecasting.training.TrainConfig``)."""

    quick: bool = False
    max_epochs: int | None = Field(default=None, ge=1)
    steps_per_epoch: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    grad_clip: float | None = Field(default=None, gt=0)
    patience: int | None = Field(default=None, ge=1)
    seed: int | None = None
    test_days: int | None = Field(default=None, ge=7, multiple_of=7)  # hold-out, whole weeks
    val_days: int | None = Field(default=None, ge=1)
    val_origin_step: int | None = Field(default=None, ge=1)  # hours
    max_seconds: float | None = Field(default=None, gt=0)  # wall-clock budget of the fit
    threads: int | None = Field(default=None, ge=1)

    def overrides(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields this section sets."""
        return {k: v for k, v in self.model_dump(exclude={"quick"}).items() if v is not None}


class ModelSection(_Section):
    name: str = Field(default="demand-lstm", pattern=NAME_PATTERN)


class GateConfig(_Section):
    """What a candidate must show on the hold-out before it is published."""

    # relative WAPE improvement over the better seasonal naive (0.05: at least 5 % lower)
    min_improvement_vs_snaive: float = Field(default=0.05, ge=-1.0, lt=1.0)
    # absolute WAPE the candidate may be worse than the production model by (0.0: not worse)
    max_regression_vs_production: float = Field(default=0.0, ge=0.0, le=1.0)
    production_alias: str = Field(default="production", pattern=ALIAS_PATTERN)


class RegistrySection(_Section):
    """Where to publish; ``STORECAST_REGISTRY`` overrides ``url``. The token comes from
    ``STORECAST_TOKEN`` only."""

    url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    @model_validator(mode="before")
    @classmethod
    def _no_token(cls, data: Any) -> Any:
        if isinstance(data, dict) and "token" in data:
            raise ValueError("tokens never go in the file; set STORECAST_TOKEN")
        return data


class SelectorConfig(_Section):
    kind: Literal["all", "stores", "regions", "tags"] = "all"
    values: list[str] = Field(default_factory=list)

    @field_validator("values")
    @classmethod
    def _ids(cls, values: list[str]) -> list[str]:
        import re

        for value in values:
            if not re.fullmatch(SELECTOR_ID_PATTERN, value):
                raise ValueError(f"{value!r} is not a store, region or tag id")
        return values

    @model_validator(mode="after")
    def _values_fit_kind(self) -> SelectorConfig:
        if self.kind == "all" and self.values:
            raise ValueError("selector 'all' takes no values")
        if self.kind != "all" and not self.values:
            raise ValueError(f"selector {self.kind!r} needs at least one value")
        return self


class StepConfig(_Section):
    """A canary step: the candidate's share of the stores and what it must show first."""

    percent: float = Field(gt=0, le=100)
    min_duration_s: float = Field(default=3600.0, ge=0)
    min_forecast_hours: int = Field(default=24, ge=0)
    min_inferences: int = Field(default=100, ge=0)


class CanaryGates(_Section):
    """Health and accuracy limits the registry's rollout controller enforces."""

    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    max_p99_ms: float = Field(default=250.0, gt=0)
    max_failed_activations: int = Field(default=0, ge=0)
    wape_margin: float = Field(default=0.02, ge=0, le=1)


DEFAULT_STEPS = (StepConfig(percent=50), StepConfig(percent=100))


class DeployConfig(_Section):
    """How a published candidate reaches the stores."""

    strategy: Literal["canary", "immediate"] = "canary"
    selector: SelectorConfig = Field(default_factory=SelectorConfig)
    control: str = Field(default="production", pattern=ALIAS_PATTERN)  # the canary's A arm
    promote_alias: str | None = Field(default="production", pattern=ALIAS_PATTERN)
    steps: list[StepConfig] = Field(default_factory=lambda: list(DEFAULT_STEPS), max_length=20)
    # The canary's bucketing salt; unset, the registry draws one. Set it to repeat a split.
    salt: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{4,64}$")

    @field_validator("promote_alias", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # TOML has no null: "" moves no alias

    gates: CanaryGates = Field(default_factory=CanaryGates)

    @field_validator("steps")
    @classmethod
    def _steps_grow_to_100(cls, steps: list[StepConfig]) -> list[StepConfig]:
        percents = [step.percent for step in steps]
        if not percents:
            raise ValueError("a canary needs at least one step")
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError(f"step percentages must increase, got {percents}")
        if percents[-1] != 100:
            raise ValueError(f"the last step must be 100, got {percents[-1]:g}")
        return steps


class OutputSection(_Section):
    dir: Path = Path("pipeline-out")  # relative paths are relative to the config file


class PipelineConfig(_Section):
    """A whole ``pipeline.toml``. Build one in code with ``PipelineConfig.from_dict``."""

    data: DataConfig
    train: TrainSection = Field(default_factory=TrainSection)
    model: ModelSection = Field(default_factory=ModelSection)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    output: OutputSection = Field(default_factory=OutputSection)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: Path | None = None) -> PipelineConfig:
        """Validate ``data`` (the TOML's structure); relative paths resolve against
        ``base_dir`` (default: the working directory). ``ConfigError`` names the key."""
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None
        return config.resolved(base_dir or Path.cwd())

    def resolved(self, base_dir: Path) -> PipelineConfig:
        """This config with its relative paths made absolute against ``base_dir``."""
        data = self.data
        if data.path is not None and not data.path.is_absolute():
            data = data.model_copy(update={"path": base_dir / data.path})
        out = self.output
        if not out.dir.is_absolute():
            out = out.model_copy(update={"dir": base_dir / out.dir})
        return self.model_copy(update={"data": data, "output": out})


def describe(exc: ValidationError) -> str:
    """One line per problem, each naming its key: ``gate.min_improvement_vs_snaive: ...``."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{key}: {message}")
    return "invalid pipeline config: " + "; ".join(lines)


def load_config(path: Path) -> PipelineConfig:
    """Read and validate ``pipeline.toml``; relative paths in it are relative to its folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return PipelineConfig.from_dict(raw, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
