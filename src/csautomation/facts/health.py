"""The health model: configurable weights, bands and metric scales (health_model.yaml)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from csautomation.config import YamlSyntaxError, load_file, load_text, validation_problems
from csautomation.errors import ConfigFileError
from csautomation.facts.catalog import FACTS, FactType, unknown_fact_message

COMPONENTS = (
    "product_usage",
    "engagement",
    "business_outcomes",
    "account_characteristics",
    "support",
)
# Health facts are computed from these; a metric may not read them (no cycles).
_DERIVED_FROM_HEALTH = ("health.", "engagement.change_30d", "expansion.signal")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(_Strict):
    metric: str
    bad: float
    good: float
    weight: float = Field(default=1.0, gt=0)

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FACTS:
            raise ValueError(unknown_fact_message(value))
        if FACTS[value].type != FactType.number or value.startswith(_DERIVED_FROM_HEALTH):
            raise ValueError(f"'{value}' cannot be a health metric (numeric raw facts only)")
        return value

    @model_validator(mode="after")
    def _scale(self) -> Metric:
        if self.bad == self.good:
            raise ValueError("'bad' and 'good' must differ")
        return self


class Weights(_Strict):
    product_usage: float = Field(default=35, ge=0)
    engagement: float = Field(default=25, ge=0)
    business_outcomes: float = Field(default=20, ge=0)
    account_characteristics: float = Field(default=15, ge=0)
    support: float = Field(default=5, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> Weights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one component needs a positive weight")
        return self


class Bands(_Strict):
    green: float = Field(default=70, ge=0, le=100)
    yellow: float = Field(default=45, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.yellow > self.green:
            raise ValueError("the yellow threshold must not be above the green one")
        return self


class Expansion(_Strict):
    seat_utilization_pct_at_least: float = 90
    usage_growth_pct_at_least: float = 20


class HealthModel(_Strict):
    weights: Weights = Weights()
    bands: Bands = Bands()
    components: dict[str, list[Metric]]
    expansion: Expansion = Expansion()

    @field_validator("components")
    @classmethod
    def _names(cls, value: dict[str, list[Metric]]) -> dict[str, list[Metric]]:
        unknown = sorted(set(value) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown component '{unknown[0]}'; use {', '.join(COMPONENTS)}")
        return value

    def band(self, score: float) -> str:
        if score >= self.bands.green:
            return "green"
        return "yellow" if score >= self.bands.yellow else "red"


def load_health_model(path: Path | None = None) -> HealthModel:
    """Load `path`, or the packaged default model when no path is given."""
    try:
        if path is None:
            text = resources.files("csautomation.defaults").joinpath("health_model.yaml")
            doc = load_text(text.read_text(encoding="utf-8"), "health_model.yaml (default)")
        else:
            doc = load_file(path)
    except YamlSyntaxError as exc:
        raise ConfigFileError([exc.problem]) from None
    try:
        return HealthModel.model_validate(doc.data or {})
    except ValidationError as exc:
        raise ConfigFileError(validation_problems(doc, exc, model=HealthModel)) from None
