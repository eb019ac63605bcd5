"""
### Customer segments

Runs whenever the nightly pipeline has published new orders (the `fct_orders` Asset) and
builds, for that business date, from published data only:

- **`mart_user_rfm`** – recency, frequency, monetary, scores 1-5 and the named RFM group;
- **`mart_user_lifecycle`** – prospect, new, growing, loyal, at_risk, churned, reactivated;
- **`mart_lifecycle_transitions`** – how many customers moved between stages since the previous snapshot;
- **`mart_customer_scores`** – churn risk (learned nightly by backtest, calibrated, checked against a
  recency-only baseline in `mart_churn_model_quality` / `mart_churn_calibration`), expected next order
  date and predicted 12-month value;
- **`mart_user_tags`** / **`mart_user_profile`** – customer tags from `config/tags.yaml` (long), and one
  row per customer with attributes, segments, scores and a column per tag (wide); after segments and scores.

Publishing the lifecycle stages triggers the `marketing_recommender` DAG for the same date.
Definitions live in `config/segments.yaml` and `config/tags.yaml`. Re-running a date replaces that date's snapshot; history is kept.
Trigger by hand for a date with `--conf '{"business_date": "2026-10-30"}'`.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, get_current_context, task

from jobs.platform.config import load_config
from jobs.platform.orchestration import (
    announce,
    asset_uri,
    business_date_param,
    business_dates_from_assets,
    dag_defaults,
    run_stage_for_dates,
)

CONFIG = load_config()
ORDERS = Asset(asset_uri(CONFIG, "fct_orders"), group="marketing_warehouse")
SEGMENT_ASSETS = [
    Asset(asset_uri(CONFIG, table), group="marketing_marts")
    for table in ("mart_user_rfm", "mart_user_lifecycle", "mart_lifecycle_transitions")
]
SCORE_ASSETS = [
    Asset(asset_uri(CONFIG, table), group="marketing_marts")
    for table in ("mart_customer_scores", "mart_churn_model_quality", "mart_churn_calibration")
]
TAG_ASSETS = [
    Asset(asset_uri(CONFIG, table), group="marketing_marts") for table in ("mart_user_tags", "mart_user_profile")
]


def _run(stage: str) -> dict:
    days = business_dates_from_assets(get_current_context(), CONFIG.shop.timezone)
    return run_stage_for_dates(CONFIG, stage, days)  # every queued date gets its own snapshot


@dag(
    dag_id="marketing_customers",
    schedule=[ORDERS],
    tags=["marketing", "segments", "scores", "tags"],
    doc_md=__doc__,
    params=business_date_param(
        "Build segments and scores for this shop-local date (default: the date the triggering load published)."
    ),
    **dag_defaults(CONFIG),
)
def marketing_customers():
    @task(outlets=SEGMENT_ASSETS)
    def segments() -> dict:
        return announce(SEGMENT_ASSETS, _run("segments"))  # the recommender DAG waits for these

    @task(outlets=SCORE_ASSETS)
    def scores() -> dict:
        return announce(SCORE_ASSETS, _run("scores"))

    @task(outlets=TAG_ASSETS)
    def tags() -> dict:
        return announce(TAG_ASSETS, _run("tags"))

    [segments(), scores()] >> tags()


marketing_customers()
