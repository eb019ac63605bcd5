"""
### Nightly marketing pipeline

Every night, for the shop-local business date D that just ended:

1. **collect_events** – copy D's landing event files (and late files of earlier days) to the raw zone, with a manifest.
2. **collect_sources** – extract users, products, orders and order items changed since the last watermark.
3. **clean_sources** / **clean_events** – parse, normalise, deduplicate, flag bots; bad rows go to quarantine
   with a reason. Counts must reconcile: input = clean + quarantined + duplicates.
4. **validate** – run the Great Expectations suites generated from `data_contracts/`. An error-level failure
   stops the run here: nothing is published for D.
5. **load** – publish D to the warehouse in one transaction and update the warehouse assets.

Re-running a date replaces that date's outputs. Operational records: `ops_pipeline_runs`,
`ops_quarantine_daily`, `ops_data_quality`; Data Docs under the reports root.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from jobs import pipeline
from jobs.config import load_config
from jobs.orchestration import PUBLISHED_TABLES, alert_on_failure, asset_uri, business_date

CONFIG = load_config()
TZ = CONFIG.shop.timezone
WAREHOUSE_ASSETS = [Asset(asset_uri(CONFIG, table), group="marketing_warehouse") for table in PUBLISHED_TABLES]


def _run(stage: str) -> dict:
    """Run one pipeline stage for this run's business date; deterministic failures skip retries."""
    from jobs.orchestration import deterministic_errors

    day = business_date(get_current_context(), TZ)
    try:
        summary = pipeline.STAGES[stage](CONFIG, day)
    except deterministic_errors() as exc:
        raise AirflowFailException(f"{stage} {day}: {exc}") from exc
    return {"business_date": day.isoformat(), **summary}


@dag(
    dag_id="marketing_nightly",
    schedule=CronDataIntervalTimetable(CONFIG.airflow.schedule, timezone=TZ),
    start_date=datetime.fromisoformat(CONFIG.airflow.start_date).replace(tzinfo=CONFIG.tz),
    catchup=False,
    max_active_runs=1,
    # DuckDB (the embedded default) allows one writing process at a time: run tasks serially.
    max_active_tasks=1 if CONFIG.warehouse.url.startswith("duckdb") else 16,
    tags=["marketing", "warehouse", "nightly"],
    doc_md=__doc__,
    params={
        "business_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Process this shop-local date instead of the run's data interval (reruns, backfills).",
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
def marketing_nightly():
    @task
    def collect_events() -> dict:
        return _run("collect_events")

    @task
    def collect_sources() -> dict:
        return _run("collect_sources")

    @task
    def clean_sources(collected: dict) -> dict:
        return _run("clean_sources")

    @task
    def clean_events(collected: dict, sources: dict) -> dict:
        return _run("clean_events")

    @task
    def validate(events: dict, sources: dict) -> dict:
        return _run("validate")

    @task(outlets=WAREHOUSE_ASSETS)
    def load(validated: dict) -> dict:
        summary = _run("load")
        events = get_current_context()["outlet_events"]
        for asset in WAREHOUSE_ASSETS:  # tells asset-scheduled DAGs which date was published
            events[asset].extra = {"business_date": summary["business_date"]}
        return summary

    sources = clean_sources(collect_sources())
    events = clean_events(collect_events(), sources)
    load(validate(events, sources))


marketing_nightly()
