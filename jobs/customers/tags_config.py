"""``config/tags.yaml``: declarative customer tags, validated on load.

A tag reads the features of one *source* (a per-user feature table the tags stage builds, see
:data:`FEATURES`) and turns them into values with one of four kinds:

- ``attribute``       the value of one feature (``gender``, ``region``);
- ``rules``           first matching rule wins (``when``: all conditions must hold), else
                      ``default``; ``score`` names a numeric feature to publish beside it;
- ``quantile_tiers``  the mean percentile rank of ``features`` within the population that
                      passes ``where``, cut into tiers (``below`` upper bounds, the last open);
- ``top_n``           the ``top`` strongest interests of a user in a ``dimension`` (category or
                      brand), from time-decayed weighted behaviour and purchases; score = share.

Conditions are data, not code: ``{feature: {op: value, ...}, ...}`` with ops
``eq ne lt lte gt gte in not_in is_null``, checked against each feature's type here, so a
typo is a one-line error naming the tag before any Spark work starts. ``freshness_days``
drops a tag for users whose evidence (their latest data in that source) is older.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.platform.conditions import Condition, check_condition
from jobs.platform.config import PROJECT_ROOT, load_yaml_model
from jobs.platform.interface import EVENT_TYPES

DEFAULT_TAGS = PROJECT_ROOT / "config" / "tags.yaml"
SOURCES = ("users", "orders", "events", "interest")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# name -> (source, type, description). Types: number, string, boolean.
FEATURES: dict[str, tuple[str, str, str]] = {
    "gender": ("users", "string", "F, M or U (unknown) as registered"),
    "age": ("users", "number", "Age in years at the snapshot date, from the birth year"),
    "region": ("users", "string", "Registered region"),
    "city": ("users", "string", "Registered city"),
    "signup_days": ("users", "number", "Days since registration"),
    "has_email_consent": ("users", "boolean", "Opted in to e-mail marketing"),
    "has_sms_consent": ("users", "boolean", "Opted in to SMS marketing"),
    "has_push_consent": ("users", "boolean", "Opted in to push notifications"),
    "orders": ("orders", "number", "Orders placed in the orders lookback, any status"),
    "purchases": (
        "orders",
        "number",
        "Orders in the lookback that count as purchases (segments.yaml statuses)",
    ),
    "net_spend": ("orders", "number", "Total of purchases in the lookback"),
    "avg_order_value": ("orders", "number", "net_spend / purchases"),
    "max_order_value": ("orders", "number", "Largest purchase in the lookback"),
    "tenure_days": ("orders", "number", "Days since the first purchase ever"),
    "repeat_rate": (
        "orders",
        "number",
        "(purchases - 1) / purchases: 0 for one purchase, towards 1 for many",
    ),
    "discount_share": ("orders", "number", "Share of purchases with a discount"),
    "coupon_share": ("orders", "number", "Share of purchases with a coupon code"),
    "promo_share": ("orders", "number", "Share of purchases with a discount or a coupon"),
    "cancel_rate": ("orders", "number", "Share of orders cancelled"),
    "refund_rate": ("orders", "number", "Share of orders refunded"),
    "days_since_last_order": ("orders", "number", "Days since the last order of any status"),
    "preferred_order_channel": (
        "orders",
        "string",
        "Channel of most orders (web, app, mini_program, store, phone)",
    ),
    "anomaly_score": (
        "orders",
        "number",
        "IsolationForest anomaly score of the order behaviour (higher = more unusual)",
    ),
    "is_anomaly": (
        "orders",
        "boolean",
        "Among the most unusual order behaviours (tags.yaml anomaly.contamination)",
    ),
    "active_days": ("events", "number", "Days with behaviour in the events lookback"),
    "active_days_30": ("events", "number", "Days with behaviour in the last 30 days"),
    "sessions": ("events", "number", "Sessions in the events lookback"),
    "product_views": ("events", "number", "Product views in the events lookback"),
    "cart_adds": ("events", "number", "Add-to-cart events in the events lookback"),
    "days_since_last_visit": ("events", "number", "Days since the last behaviour event"),
    "preferred_channel": (
        "events",
        "string",
        "Channel of most behaviour events (web, app, mini_program)",
    ),
    "preferred_device": ("events", "string", "Device of most behaviour events"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_condition(when: Condition, source: str) -> None:
    for feature in when:
        if feature in FEATURES and FEATURES[feature][0] != source:
            raise ValueError(f"feature {feature!r} belongs to source {FEATURES[feature][0]!r}, not {source!r}")
    check_condition(when, {name: kind for name, (_, kind, _) in FEATURES.items()}, noun="feature")


class Rule(_Strict):
    value: str
    when: Condition = {}


class Tier(_Strict):
    value: str
    below: float | None = Field(None, gt=0, le=1)


class TagDef(_Strict):
    name: str
    description: str
    source: Literal["users", "orders", "events", "interest"]
    kind: Literal["attribute", "rules", "quantile_tiers", "top_n"]
    freshness_days: int | None = Field(None, ge=1)
    feature: str | None = None  # attribute
    rules: tuple[Rule, ...] = ()  # rules
    default: str | None = None  # rules
    score: str | None = None  # rules: a numeric feature published as the score
    features: tuple[str, ...] = ()  # quantile_tiers
    where: Condition = {}  # quantile_tiers: the population ranked
    tiers: tuple[Tier, ...] = ()  # quantile_tiers
    dimension: Literal["category", "brand"] | None = None  # top_n
    top: int = Field(3, ge=1, le=20)  # top_n
    min_share: float = Field(0.0, ge=0, lt=1)  # top_n

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("tag names are lower_snake_case, start with a letter, at most 40 characters")
        return name

    @model_validator(mode="after")
    def _fits_kind(self) -> TagDef:
        needs = {
            "attribute": ("feature",),
            "rules": ("rules",),
            "quantile_tiers": ("features", "tiers"),
            "top_n": ("dimension",),
        }[self.kind]
        for key in needs:
            if not getattr(self, key):
                raise ValueError(f"kind {self.kind} needs '{key}'")
        if (self.kind == "top_n") != (self.source == "interest"):
            raise ValueError("kind top_n reads source interest, and source interest is only for top_n")
        named = [self.feature] if self.feature else []
        named += list(self.features) + ([self.score] if self.score else [])
        _check_condition({name: {"is_null": False} for name in named}, self.source)
        for name in list(self.features) + ([self.score] if self.score else []):
            if FEATURES[name][1] != "number":
                raise ValueError(f"feature {name!r} is not a number")
        for rule in self.rules:
            _check_condition(rule.when, self.source)
        _check_condition(self.where, self.source)
        if self.tiers:
            bounds = [t.below for t in self.tiers]
            if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
                raise ValueError("every tier but the last needs 'below'; the last one is open")
            if any(b <= a for a, b in zip(bounds[:-2], bounds[1:-1], strict=False)):
                raise ValueError("tier bounds ('below') must increase")
        return self


class InterestConfig(_Strict):
    lookback_days: int = Field(90, ge=1)
    half_life_days: float = Field(30, gt=0)
    weights: dict[str, float] = {
        "product_view": 1,
        "favorite": 2,
        "add_to_cart": 3,
        "checkout_start": 4,
        "purchase": 6,
    }

    @field_validator("weights")
    @classmethod
    def _known_events(cls, weights: dict[str, float]) -> dict[str, float]:
        allowed = {*EVENT_TYPES, "purchase"}
        for name, weight in weights.items():
            if name not in allowed:
                raise ValueError(f"unknown event type {name!r}; choose from {sorted(allowed)}")
            if weight <= 0:
                raise ValueError(f"weight of {name} must be positive")
        return weights


class AnomalyConfig(_Strict):
    features: tuple[str, ...] = (
        "orders",
        "avg_order_value",
        "max_order_value",
        "cancel_rate",
        "refund_rate",
        "promo_share",
    )
    contamination: float = Field(0.02, gt=0, le=0.5)
    n_estimators: int = Field(200, ge=10)
    min_customers: int = Field(50, ge=10)
    random_state: int = 0

    @field_validator("features")
    @classmethod
    def _order_numbers(cls, features: tuple[str, ...]) -> tuple[str, ...]:
        for name in features:
            if name in ("anomaly_score", "is_anomaly") or FEATURES.get(name, ("", "", ""))[:2] != (
                "orders",
                "number",
            ):
                raise ValueError(f"{name!r} is not a numeric orders feature")
        return features


class TagsConfig(_Strict):
    orders_lookback_days: int = Field(365, ge=1)
    events_lookback_days: int = Field(90, ge=1)
    history_days: int = Field(90, ge=1)
    interest: InterestConfig = InterestConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    tags: tuple[TagDef, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> TagsConfig:
        names = [t.name for t in self.tags]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"tag names must be unique: {', '.join(duplicated)}")
        return self


def load_tags(path: str | Path | None = None) -> TagsConfig:
    return load_yaml_model(path or DEFAULT_TAGS, TagsConfig, "tags")


def describe_tags(config: TagsConfig) -> str:
    """Human-readable catalogue: features per source, then the configured tags."""
    lines = ["features (use them in a tag of the same source):"]
    for source in SOURCES[:-1]:
        lines.append(f"  {source}:")
        lines += [f"    {name:<24} {kind:<8} {text}" for name, (src, kind, text) in FEATURES.items() if src == source]
    lines.append("  interest: top_n tags over dimension category or brand (no features)")
    lines.append(f"tags ({len(config.tags)}):")
    for tag in config.tags:
        fresh = f", fresh {tag.freshness_days} d" if tag.freshness_days else ""
        lines.append(f"  {tag.name:<24} {tag.kind} on {tag.source}{fresh}: {tag.description}")
    return "\n".join(lines)
