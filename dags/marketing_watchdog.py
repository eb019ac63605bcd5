"""
### Watchdog: the night's deadline and stale tables

Runs every day at `alerts.finish_by` (shop-local time, e.g. 07:00) for the night D that has just
become due:

- **deadline** – fails when any stage of the chain (`marketing_nightly` → `marketing_customers`
  → `marketing_recommender` → `marketing_campaigns`, report included) has not succeeded or been
  skipped for D; the error names each missing stage and its state (`failed`, `not run`).
- **freshness** – fails when a published table's newest date (`ops_table_freshness`) is older
  than D, e.g. recommendations kept from an earlier night because the model was refused.

A failed check alerts through the same notifiers as every task (the log always; a webhook and
e-mail when `alerts.*` is set) and is not retried. Both read the warehouse's `ops_*` tables
only; `marketing status` shows the same at a glance.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from jobs.platform.config import load_config
from jobs.platform.monitoring import check_deadline, check_freshness
from jobs.platform.orchestration import business_date, business_date_param, dag_defaults, run_check

CONFIG = load_config()
TZ = CONFIG.shop.timezone
FINISH_BY = CONFIG.alerts.finish_by_time
DEFAULTS = dag_defaults(CONFIG)


@dag(
    dag_id="marketing_watchdog",
    schedule=CronDataIntervalTimetable(f"{FINISH_BY.minute} {FINISH_BY.hour} * * *", timezone=TZ),
    tags=["marketing", "monitoring"],
    doc_md=__doc__,
    params=business_date_param("Check this shop-local night instead of the one that just became due."),
    **{**DEFAULTS, "default_args": {**DEFAULTS["default_args"], "retries": 0}},
)
def marketing_watchdog():
    @task
    def deadline() -> dict:
        return run_check(check_deadline, CONFIG, business_date(get_current_context(), TZ))

    @task
    def freshness() -> dict:
        return run_check(check_freshness, CONFIG, business_date(get_current_context(), TZ))

    deadline()
    freshness()


marketing_watchdog()
