"""``config/campaigns.yaml``: campaign definitions, the global holdout and the contact cap,
validated on load against the segment and tag definitions they name.

An audience is a condition (:mod:`jobs.platform.conditions`) over :func:`audience_fields`: the
customer profile of the date (segments, scores, one ``tag_<name>`` per tag of
``config/tags.yaml``) and a few derived fields of recent behaviour. A bad definition (unknown
field, tag, segment or value, unknown product source, a duplicated id or priority) is a
one-line error naming the campaign and the key.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.customers.segments_config import load_segments
from jobs.customers.tags_config import load_tags
from jobs.platform.conditions import Condition, check_condition
from jobs.platform.config import PROJECT_ROOT, load_yaml_model
from jobs.platform.interface import ORDER_STATUSES, PURCHASE_STATUSES

DEFAULT_CAMPAIGNS = PROJECT_ROOT / "config" / "campaigns.yaml"
CHANNELS = ("email", "sms", "push")
CONSENT_FIELD = {"email": "has_email_consent", "sms": "has_sms_consent", "push": "has_push_consent"}
PRODUCT_SOURCES = ("cart", "recommendations", "associations", "similar")
LIFECYCLE_STAGES = ("prospect", "new", "growing", "loyal", "at_risk", "churned", "reactivated")
CHURN_RISK_BANDS = ("low", "medium", "high")
PROGRAMME = "programme"  # campaign_id of the global holdout's results
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# name -> (kind, description): the profile's columns (mart_user_profile) an audience may use
PROFILE_FIELDS: dict[str, tuple[str, str]] = {
    "gender": ("string", "F, M or U"),
    "age": ("number", "age in years"),
    "region": ("string", "registered region"),
    "city": ("string", "registered city"),
    "has_email_consent": ("boolean", "opted in to e-mail"),
    "has_sms_consent": ("boolean", "opted in to SMS"),
    "has_push_consent": ("boolean", "opted in to push"),
    "lifecycle_stage": ("string", ", ".join(LIFECYCLE_STAGES)),
    "rfm_group": ("string", "RFM group of config/segments.yaml"),
    "r_score": ("number", "recency score 1-5"),
    "f_score": ("number", "frequency score 1-5"),
    "m_score": ("number", "monetary score 1-5"),
    "recency_days": ("number", "days since the last purchase"),
    "frequency": ("number", "purchases in the RFM lookback"),
    "monetary": ("number", "spend in the RFM lookback"),
    "churn_risk": ("number", "predicted probability of churning, 0-1"),
    "churn_risk_band": ("string", ", ".join(CHURN_RISK_BANDS)),
    "predicted_value_12m": ("number", "predicted spend in the next 12 months"),
}
# name -> (kind, description): computed by the allocate stage for the date
DERIVED_FIELDS: dict[str, tuple[str, str]] = {
    "days_since_first_order": ("number", "days since the first purchase ever"),
    "days_since_last_order": ("number", "days since the last order of any status"),
    "days_until_expected_order": ("number", "days from the date to expected_next_order_date (negative: overdue)"),
    "abandoned_cart": ("boolean", "carted in the last 24 hours (the date) and no order since the last cart"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Campaign(_Strict):
    id: str
    name: str
    owner: str
    channel: Literal["email", "sms", "push"]
    priority: int = Field(ge=1, description="1 is the highest: a customer gets the highest-priority campaign")
    audience: Condition = {}
    audience_any: tuple[Condition, ...] = ()  # any of these must hold too
    holdout_share: float | None = Field(None, ge=0.01, le=0.5)
    attribution_window_days: int | None = Field(None, ge=1, le=90)
    recontact_days: int | None = Field(None, ge=1, le=365)
    max_audience_share: float | None = Field(None, gt=0, le=1)
    active_from: date | None = None
    active_to: date | None = None
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()  # none: every day
    products: tuple[Literal["cart", "recommendations", "associations", "similar"], ...] = ()
    score: str | None = None  # a numeric audience field published as the score used
    version: int = Field(1, ge=1, description="changing it re-draws the holdout groups")
    description: str = ""

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("campaign ids are lower_snake_case, start with a letter, at most 40 characters")
        if value == PROGRAMME:
            raise ValueError(f"{PROGRAMME!r} names the whole programme in the results; choose another id")
        return value

    @model_validator(mode="after")
    def _dates(self) -> Campaign:
        if not self.audience and not self.audience_any:
            raise ValueError("an audience is needed ('audience' and/or 'audience_any')")
        if self.active_from and self.active_to and self.active_to < self.active_from:
            raise ValueError("active_to is before active_from")
        if len(set(self.products)) != len(self.products):
            raise ValueError("products: a source is listed twice")
        if len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("weekdays: a day is listed twice")
        return self

    @property
    def salt(self) -> str:
        return f"{self.id}:v{self.version}"

    def is_active(self, day: date) -> bool:
        """Within the active dates, on one of the weekdays (if any are given)."""
        return (
            (self.active_from is None or self.active_from <= day)
            and (self.active_to is None or day <= self.active_to)
            and (not self.weekdays or WEEKDAYS[day.weekday()] in self.weekdays)
        )


class GlobalHoldout(_Strict):
    share: float = Field(0.05, ge=0, le=0.5)
    salt: str = Field("global-holdout:v1", min_length=1)


class Defaults(_Strict):
    holdout_share: float = Field(0.10, ge=0.01, le=0.5)
    attribution_window_days: int = Field(14, ge=1, le=90)
    recontact_days: int = Field(
        7, ge=1, le=365, description="a campaign reaches a customer at most once in this many days"
    )
    max_audience_share: float = Field(
        1.0, gt=0, le=1, description="a campaign reaches at most this share of the night's customers (both arms)"
    )


class Measurement(_Strict):
    alpha: float = Field(0.05, gt=0, lt=0.5, description="1 - confidence of the intervals")
    winsorize_percentile: float = Field(99.9, gt=50, le=100, description="cap revenue per customer here")
    pre_period_days: int = Field(30, ge=1, description="CUPED covariate: revenue in these days before contact")
    srm_p_threshold: float = Field(0.001, gt=0, lt=0.5, description="sample-ratio mismatch below this p-value")
    programme_window_days: int = Field(28, ge=1, description="global holdout: revenue over these days")


class AssociationSettings(BaseModel):
    """How baskets are formed and which rules are kept (``associations:`` in config/campaigns.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback_days: int = Field(365, ge=1)  # baskets: purchases placed in (D - lookback_days, D]
    # Retail baskets are sparse: a useful pair is in well under 1% of baskets (Spark's default is 0.3).
    min_support: float = Field(0.001, gt=0, lt=1)
    min_confidence: float = Field(0.05, ge=0, le=1)
    min_lift: float = Field(1.0, ge=0)  # kept only above: 1 is "no better than chance"
    # 1: rules between products (pairs, what campaigns use); 2: also "A and B -> c" (triples)
    max_antecedent_items: int = Field(1, ge=1, le=2)
    max_rules: int = Field(5000, ge=1)
    min_basket_items: int = Field(2, ge=1)
    # Wholesale and stock orders of hundreds of products say little about what goes together;
    # they are left out of mining (and counted)
    max_basket_items: int = Field(100, ge=2)
    # A rule seen in a single basket is an anecdote; on a small shop min_support alone would let
    # every subset of every basket become frequent (exponential in the basket's size).
    min_rule_baskets: int = Field(3, ge=1)
    # Budgets: the rows the pair (and triple) counting may generate, and the stage's Spark time;
    # past either the stage fails with a one-line error naming the setting
    max_candidate_pairs: int = Field(50_000_000, ge=1)
    max_seconds: float = Field(600, gt=0)
    # Benjamini-Hochberg false discovery rate over every rule the frequent products could form
    fdr: float = Field(0.05, gt=0, lt=1)
    statuses: tuple[str, ...] = PURCHASE_STATUSES  # which orders are baskets: purchases

    @field_validator("statuses")
    @classmethod
    def _known_statuses(cls, statuses: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in statuses if s not in ORDER_STATUSES]
        if unknown or not statuses:
            raise ValueError(f"give one or more order statuses of {list(ORDER_STATUSES)}; unknown: {unknown}")
        return statuses


class CampaignsConfig(_Strict):
    max_contacts_per_7_days: int = Field(2, ge=1)
    global_holdout: GlobalHoldout = GlobalHoldout()
    defaults: Defaults = Defaults()
    measurement: Measurement = Measurement()
    associations: AssociationSettings = AssociationSettings()  # cross-sell rules (activation/associations)
    campaigns: tuple[Campaign, ...]

    @model_validator(mode="after")
    def _unique(self) -> CampaignsConfig:
        for key, plural in (("id", "ids"), ("priority", "priorities")):
            values = [getattr(c, key) for c in self.campaigns]
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"campaign {plural} must be unique: {', '.join(repeated)}")
        return self

    def holdout_share(self, campaign: Campaign) -> float:
        return campaign.holdout_share if campaign.holdout_share is not None else self.defaults.holdout_share

    def window_days(self, campaign: Campaign) -> int:
        if campaign.attribution_window_days is not None:
            return campaign.attribution_window_days
        return self.defaults.attribution_window_days

    def audience_cap(self, campaign: Campaign, customers: int) -> int:
        """Most customers ``campaign`` may be allocated tonight (both arms) of ``customers``."""
        share = campaign.max_audience_share
        share = self.defaults.max_audience_share if share is None else share
        return int(share * customers)

    def recontact_days(self, campaign: Campaign) -> int:
        return campaign.recontact_days if campaign.recontact_days is not None else self.defaults.recontact_days

    def active(self, day: date) -> list[Campaign]:
        """Campaigns active on ``day``, highest priority first."""
        return sorted((c for c in self.campaigns if c.is_active(day)), key=lambda c: c.priority)


def audience_fields(tags_file: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """Every field an audience may use: (kind, description), tag columns included."""
    fields = {**PROFILE_FIELDS, **DERIVED_FIELDS}
    for tag in load_tags(tags_file).tags:
        fields[f"tag_{tag.name}"] = ("list" if tag.kind == "top_n" else "string", tag.description)
    return fields


def _allowed_values(tags_file: str | Path | None, segments_file: str | Path | None) -> dict[str, set[str]]:
    allowed = {
        "lifecycle_stage": set(LIFECYCLE_STAGES),
        "churn_risk_band": set(CHURN_RISK_BANDS),
        "rfm_group": {group.name for group in load_segments(segments_file).rfm.groups},
    }
    for tag in load_tags(tags_file).tags:
        values = {rule.value for rule in tag.rules} | {tier.value for tier in tag.tiers}
        if tag.default:
            values.add(tag.default)
        if values:  # attribute and top_n tags take the data's values
            allowed[f"tag_{tag.name}"] = values
    return allowed


def load_campaigns(
    path: str | Path | None = None, tags_file: str | Path | None = None, segments_file: str | Path | None = None
) -> CampaignsConfig:
    """Read and check ``config/campaigns.yaml``; audiences are checked against the fields, tags
    and segments the pipeline publishes."""
    from jobs.platform.errors import ConfigError

    path = Path(path or DEFAULT_CAMPAIGNS)
    config = load_yaml_model(path, CampaignsConfig, "campaigns")
    fields = audience_fields(tags_file)
    kinds = {name: kind for name, (kind, _) in fields.items()}
    allowed = _allowed_values(tags_file, segments_file)
    for index, campaign in enumerate(config.campaigns):
        where = f"{path}: setting 'campaigns.{index}({campaign.id})"
        for key, condition in [("audience", campaign.audience)] + [
            (f"audience_any.{n}", c) for n, c in enumerate(campaign.audience_any)
        ]:
            try:
                check_condition(condition, kinds, allowed)
            except ValueError as exc:
                raise ConfigError(f"{where}.{key}': {exc}") from None
        if campaign.score is not None and kinds.get(campaign.score) != "number":
            raise ConfigError(f"{where}.score': {campaign.score!r} is not a numeric audience field")
    return config


def describe_campaigns(config: CampaignsConfig, tags_file: str | Path | None = None) -> str:
    """The audience fields, then the campaigns: what ``marketing campaigns`` prints."""
    lines = ["audience fields:"]
    lines += [f"  {name:<28} {kind:<8} {text}" for name, (kind, text) in audience_fields(tags_file).items()]
    lines.append(
        f"campaigns ({len(config.campaigns)}; at most {config.max_contacts_per_7_days} contacts per customer"
        f" in 7 days; global holdout {config.global_holdout.share:.0%}):"
    )
    for c in sorted(config.campaigns, key=lambda c: c.priority):
        lines.append(
            f"  {c.priority:>2} {c.id:<26} {c.channel:<5} holdout {config.holdout_share(c):.0%},"
            f" window {config.window_days(c)} d, products {', '.join(c.products) or '-'}: {c.name}"
        )
    return "\n".join(lines)
