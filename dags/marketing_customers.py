"""
### Customer segments

Runs whenever the nightly pipeline has published new orders (the `fct_orders` Asset) and
builds, for that business date, from published data only:

- **`mart_user_rfm`** – recency, frequency, monetary, scores 1-5 and the named RFM group;
- **`mart_user_lifecycle`** – prospect, new, growing, loyal, at_risk, churned, reactivated;
- **`mart_lifecycle_transitions`** – how many customers moved between stages since the previous snapshot.

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


@dag(
    dag_id="marketing_customers",
    schedule=[ORDERS],
    start_date=datetime.fromisoformat(CONFIG.airflow.start_date).replace(tzinfo=CONFIG.tz),
    catchup=False,
    max_active_runs=1,
    tags=["marketing", "segments"],
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
        from jobs.orchestration import deterministic_errors

        day = business_date_from_assets(get_current_context(), CONFIG.shop.timezone)
        try:
            return pipeline.CUSTOMER_STAGES["segments"](CONFIG, day)
        except deterministic_errors() as exc:
            raise AirflowFailException(f"segments {day}: {exc}") from exc

    segments()


marketing_customers()
