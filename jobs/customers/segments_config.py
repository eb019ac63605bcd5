"""``config/segments.yaml``: RFM scoring and lifecycle rules, validated on load."""

from __future__ import annotations

from itertools import product
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.platform.config import PROJECT_ROOT, load_yaml_model

DEFAULT_SEGMENTS = PROJECT_ROOT / "config" / "segments.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ascending(values: list[float], name: str) -> list[float]:
    if len(values) != 4 or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"{name} needs 4 strictly increasing thresholds (bounds of scores 2..5)")
    return values


class FixedThresholds(_Strict):
    recency_days: list[float] = [180, 90, 30, 14]
    frequency: list[float] = [2, 3, 5, 8]
    monetary: list[float] = [100, 300, 800, 2000]

    @field_validator("recency_days")
    @classmethod
    def _descending(cls, values: list[float]) -> list[float]:
        _ascending(list(reversed(values)), "recency_days (descending)")
        return values

    @field_validator("frequency", "monetary")
    @classmethod
    def _increasing(cls, values: list[float]) -> list[float]:
        return _ascending(values, "thresholds")


class Scoring(_Strict):
    method: Literal["quantile", "fixed"] = "quantile"
    min_population_for_quantiles: int = Field(20, ge=1)
    fixed: FixedThresholds = FixedThresholds()


class GroupRule(_Strict):
    name: str
    r: tuple[int, int]
    fm: tuple[int, int]

    @field_validator("r", "fm")
    @classmethod
    def _score_range(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        low, high = bounds
        if not 1 <= low <= high <= 5:
            raise ValueError(f"score range {list(bounds)} must be within 1..5 and low <= high")
        return bounds

    def matches(self, r: int, fm: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.fm[0] <= fm <= self.fm[1]


class RfmConfig(_Strict):
    lookback_days: int = Field(365, ge=1)
    scoring: Scoring = Scoring()
    groups: tuple[GroupRule, ...]

    @model_validator(mode="after")
    def _covers_every_combination(self) -> RfmConfig:
        missing = [
            (r, fm) for r, fm in product(range(1, 6), repeat=2) if not any(g.matches(r, fm) for g in self.groups)
        ]
        if missing:
            raise ValueError(f"groups do not cover (R, FM) score combinations {missing[:5]}")
        return self

    def group_of(self, r: int, fm: int) -> str:
        return next(g.name for g in self.groups if g.matches(r, fm))


class LifecycleConfig(_Strict):
    new_days: int = Field(30, ge=1)
    churn_days: int = Field(180, ge=1)
    reactivated_days: int = Field(60, ge=1)
    at_risk_factor: float = Field(1.5, gt=1)
    default_gap_days: int = Field(60, ge=1)
    loyal_min_orders: int = Field(4, ge=2)


class SegmentsConfig(_Strict):
    rfm: RfmConfig
    lifecycle: LifecycleConfig = LifecycleConfig()


def load_segments(path: str | Path | None = None) -> SegmentsConfig:
    return load_yaml_model(path or DEFAULT_SEGMENTS, SegmentsConfig, "segments")
