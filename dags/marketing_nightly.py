"""
### Nightly marketing pipeline

Every night, for the shop-local business date D that just ended:

1. **collect_events** – copy D's landing event files (and late files of earlier days) to the raw zone, with a manifest.
2. **collect_sources** – extract users, products, orders, order items and suppressions changed since the last watermark.
3. **clean_sources** / **clean_events** – parse, normalise, deduplicate, flag bots; bad rows go to quarantine
   with a reason. Counts must reconcile: input = clean + quarantined + duplicates.
4. **validate** – run the Great Expectations suites generated from `data_contracts/`. An error-level failure
   stops the run here: nothing is published for D.
5. **load** – publish D to the warehouse in one transaction and update the warehouse assets.
6. **retention** – delete raw, quarantine and restricted lake partitions older than `retention.*`.

Re-running a date replaces that date's outputs. Operational records: `ops_pipeline_runs`,
`ops_quarantine_daily`, `ops_data_quality`; Data Docs under the reports root.
"""

from __future__ import annotations

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, get_current_context, task

from jobs.platform.config import load_config
from jobs.platform.orchestration import (
    PUBLISHED_TABLES,
    announce,
    asset_uri,
    business_date,
    business_date_param,
    dag_defaults,
    run_stage,
)

CONFIG = load_config()
TZ = CONFIG.shop.timezone
WAREHOUSE_ASSETS = [Asset(asset_uri(CONFIG, table), group="marketing_warehouse") for table in PUBLISHED_TABLES]


def _run(stage: str) -> dict:
    day = business_date(get_current_context(), TZ)
    return run_stage(CONFIG, stage, day)


@dag(
    dag_id="marketing_nightly",
    schedule=CronDataIntervalTimetable(CONFIG.airflow.schedule, timezone=TZ),
    tags=["marketing", "warehouse", "nightly"],
    doc_md=__doc__,
    params=business_date_param("Process this shop-local date instead of the run's data interval (reruns, backfills)."),
    **dag_defaults(CONFIG),
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
        return announce(WAREHOUSE_ASSETS, _run("load"))  # tells asset-scheduled DAGs the date

    @task
    def retention(loaded: dict) -> dict:
        return _run("retention")

    sources = clean_sources(collect_sources())
    events = clean_events(collect_events(), sources)
    retention(load(validate(events, sources)))


marketing_nightly()
