"""
### Customer segments

Runs whenever the nightly pipeline has published new orders (the `fct_orders` Asset) and
builds, for that business date, from published data only:

- **`mart_user_rfm`** – recency, frequency, monetary, scores 1-5 and the named RFM group;
- **`mart_user_lifecycle`** – prospect, new, growing, loyal, at_risk, churned, reactivated;
- **`mart_lifecycle_transitions`** – how many customers moved between stages since the previous snapshot;
- **`mart_customer_scores`** – churn risk (learned nightly by backtest, calibrated, checked against a
  recency-only baseline in `mart_churn_model_quality` / `mart_churn_calibration`), expected next order
  date and predicted 12-month value.

Definitions live in `config/segments.yaml`. Re-running a date replaces that date's snapshot; history is kept.
Trigger by hand for a date with `--conf '{"business_date": "2026-10-30"}'`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from jobs import pipeline
from jobs.config import load_config
from jobs.orchestration import alert_on_failure, asset_uri, business_date_from_assets

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


def _run(stage: str) -> dict:
    from jobs.orchestration import deterministic_errors

    day = business_date_from_assets(get_current_context(), CONFIG.shop.timezone)
    try:
        return {"business_date": day.isoformat(), **pipeline.CUSTOMER_STAGES[stage](CONFIG, day)}
    except deterministic_errors() as exc:
        raise AirflowFailException(f"{stage} {day}: {exc}") from exc


@dag(
    dag_id="marketing_customers",
    schedule=[ORDERS],
    start_date=datetime.fromisoformat(CONFIG.airflow.start_date).replace(tzinfo=CONFIG.tz),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1 if CONFIG.warehouse.url.startswith("duckdb") else 16,
    tags=["marketing", "segments", "scores"],
    doc_md=__doc__,
    params={
        "business_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Build segments for this shop-local date (default: the date the triggering load published).",
        )
    },
    default_args={
        "owner": "data-engineering",
        "retries": CONFIG.airflow.retries,
        "retry_delay": timedelta(minutes=CONFIG.airflow.retry_delay_minutes),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "on_failure_callback": alert_on_failure,
    },
)
def marketing_customers():
    @task(outlets=SEGMENT_ASSETS)
    def segments() -> dict:
        return _run("segments")

    @task(outlets=SCORE_ASSETS)
    def scores() -> dict:
        return _run("scores")

    segments()
    scores()


marketing_customers()
