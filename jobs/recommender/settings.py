"""``config/recommender.yaml``: interactions, evaluation, tuning and baselines, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.platform.config import PROJECT_ROOT, load_yaml_model
from jobs.platform.interface import EVENT_TYPES, ORDER_STATUSES

DEFAULT_RECOMMENDER = PROJECT_ROOT / "config" / "recommender.yaml"
Confidence = Literal["raw", "log", "binary"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InteractionsConfig(_Strict):
    lookback_days: int = Field(180, ge=1)
    half_life_days: float = Field(30, gt=0)
    event_weights: dict[str, float] = {"product_view": 1, "favorite": 2, "add_to_cart": 3, "checkout_start": 3}
    purchase_weights: dict[str, float] = {
        "created": 3, "paid": 5, "shipped": 5, "completed": 5, "cancelled": 2, "refunded": 0,
    }  # fmt: skip
    max_events_per_day: int = Field(5, ge=1)
    max_weight: float = Field(50, gt=0)
    min_relevant_weight: float = Field(3, gt=0)

    @field_validator("event_weights")
    @classmethod
    def _known_events(cls, weights: dict[str, float]) -> dict[str, float]:
        for name, weight in weights.items():
            if name not in EVENT_TYPES:
                raise ValueError(f"unknown event type {name!r}; choose from {list(EVENT_TYPES)}")
            if weight < 0:
                raise ValueError(f"weight of {name} must not be negative")
        return weights

    @field_validator("purchase_weights")
    @classmethod
    def _every_status(cls, weights: dict[str, float]) -> dict[str, float]:
        missing = [s for s in ORDER_STATUSES if s not in weights]
        unknown = [s for s in weights if s not in ORDER_STATUSES]
        if missing or unknown:
            raise ValueError(f"give a weight for exactly the order statuses {list(ORDER_STATUSES)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("purchase weights must not be negative")
        return weights


class EvaluationConfig(_Strict):
    k: int = Field(10, ge=1, le=100)
    holdout_days: int = Field(7, ge=1)
    validation_days: int = Field(7, ge=1)
    min_train_users: int = Field(20, ge=2)


class AlsParams(_Strict):
    rank: int = Field(32, ge=1, le=512)
    reg_param: float = Field(0.1, gt=0)
    alpha: float = Field(10.0, gt=0)
    max_iter: int = Field(10, ge=1, le=100)
    confidence: Confidence = "log"


class SearchSpace(_Strict):
    rank: tuple[int, ...] = (16, 32, 64)
    reg_param: tuple[float, ...] = (0.01, 0.1, 1.0)
    alpha: tuple[float, ...] = (1.0, 10.0, 40.0)
    max_iter: tuple[int, ...] = (10, 15)
    confidence: tuple[Confidence, ...] = ("raw", "log", "binary")

    @model_validator(mode="after")
    def _not_empty(self) -> SearchSpace:
        for name in type(self).model_fields:
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one value")
            AlsParams.model_validate({name: getattr(self, name)[0]})
        return self


class TuningConfig(_Strict):
    max_trials: int = Field(8, ge=1, le=200)
    every_days: int = Field(7, ge=0)  # search at most this often; in between refit the live parameters (0: nightly)
    seed: int = 7
    default: AlsParams = AlsParams()
    space: SearchSpace = SearchSpace()


class GateConfig(_Strict):
    min_lift_over_popularity: float = Field(0.10, ge=-1)  # below 0 accepts a model worse than popularity (dev only)
    max_drop_vs_production: float = Field(0.10, ge=0, le=1)


class PublishingConfig(_Strict):
    top_n: int = Field(20, ge=1, le=200)
    similar_n: int = Field(10, ge=1, le=200)
    max_per_category: int | None = Field(5, ge=1)
    repurchasable_categories: tuple[str, ...] = ()
    min_history_items: int = Field(3, ge=1)


class BaselinesConfig(_Strict):
    popularity_days: int = Field(30, ge=1)
    knn_neighbours: int = Field(50, ge=1)


class RecommenderConfig(_Strict):
    interactions: InteractionsConfig = InteractionsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tuning: TuningConfig = TuningConfig()
    gate: GateConfig = GateConfig()
    publishing: PublishingConfig = PublishingConfig()
    baselines: BaselinesConfig = BaselinesConfig()


def load_recommender(path: str | Path | None = None) -> RecommenderConfig:
    return load_yaml_model(path or DEFAULT_RECOMMENDER, RecommenderConfig, "recommender")
