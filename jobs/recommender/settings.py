"""``config/recommender.yaml``: interactions, evaluation, tuning, the model competition and the gate, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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
    min_eval_users: int = Field(
        100, ge=1
    )  # fewer evaluated users: no evidence, the strongest cheap baseline is published
    confidence: float = Field(0.90, gt=0, lt=1)  # two-sided level of the paired bootstrap interval
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)
    max_drop_vs_production: float = Field(0.10, ge=0, le=1)


class PublishingConfig(_Strict):
    top_n: int = Field(20, ge=1, le=200)
    similar_n: int = Field(10, ge=1, le=200)
    max_per_category: int | None = Field(5, ge=1)
    repurchasable_categories: tuple[str, ...] = ()
    min_history_items: int = Field(3, ge=1)


Positive = Annotated[float, Field(gt=0)]
Days = Annotated[int, Field(ge=1)]


class CompetitionConfig(_Strict):
    """The models besides ALS and the values each is tried with on the validation split: the
    best of every model is measured on the holdout, and the best on validation is the candidate."""

    models: tuple[Literal["als", "ease", "item_knn", "popularity"], ...] = ("als", "ease", "item_knn", "popularity")
    ease_l2: tuple[Positive, ...] = (50.0, 200.0, 500.0, 1000.0)
    ease_max_items: int = Field(20_000, ge=1)
    knn_neighbours: tuple[Days, ...] = (20, 50, 100)
    popularity_days: tuple[Days, ...] = (7, 14, 30)
    popularity_half_life_days: tuple[Positive | None, ...] = (None, 7.0)

    @model_validator(mode="after")
    def _not_empty(self) -> CompetitionConfig:
        for name in ("models", "ease_l2", "knn_neighbours", "popularity_days", "popularity_half_life_days"):
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one value")
        if "popularity" not in self.models:
            raise ValueError("models: popularity is the fallback of cold users and must stay in the competition")
        return self


class BuyAgainConfig(_Strict):
    """The "buy again" list (``models/buy_again.py``): which methods compete on the validation
    window's repeat purchases, and what is published."""

    top_n: int = Field(10, ge=1, le=200)
    methods: tuple[Literal["most_bought", "decayed", "cadence"], ...] = ("most_bought", "decayed", "cadence")
    half_life_days: tuple[Positive, ...] = (90.0, 180.0)  # tried for decayed and cadence
    horizon_days: int = Field(30, ge=1)  # the period a list is for: cadence ranks what falls due in it
    default_interval_days: float = Field(90, gt=0)  # cadence of a product nobody bought twice
    exclude_categories: tuple[str, ...] = ()  # never listed (bought once: furniture, appliances)

    @model_validator(mode="after")
    def _baseline_first(self) -> BuyAgainConfig:
        if not self.methods or self.methods[0] != "most_bought":
            raise ValueError("methods: most_bought (the baseline) comes first")
        if not self.half_life_days:
            raise ValueError("half_life_days: give at least one value")
        return self

    def candidates(self):
        """Every method to try, the baseline first."""
        from models.buy_again import Method

        return [Method("most_bought")] + [
            Method(method, half_life) for method in self.methods[1:] for half_life in self.half_life_days
        ]


class RecommenderConfig(_Strict):
    interactions: InteractionsConfig = InteractionsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tuning: TuningConfig = TuningConfig()
    gate: GateConfig = GateConfig()
    publishing: PublishingConfig = PublishingConfig()
    competition: CompetitionConfig = CompetitionConfig()
    buy_again: BuyAgainConfig = BuyAgainConfig()


def load_recommender(path: str | Path | None = None) -> RecommenderConfig:
    return load_yaml_model(path or DEFAULT_RECOMMENDER, RecommenderConfig, "recommender")
