"""What the Airflow DAG files need from the project, kept out of the DAG files themselves:
the business date of a run, the published assets, failure alerts and the watchdog's checks."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from jobs.platform.config import PipelineConfig

# Each published warehouse table is an Airflow Asset; later DAGs can be scheduled on them.
PUBLISHED_TABLES = ("dim_user", "dim_product", "fct_orders", "fct_order_items", "fct_events_daily", "dim_suppression")


def asset_uri(config: PipelineConfig, table: str) -> str:
    """A stable URI naming a published table (not a connection string: no credentials)."""
    dialect = config.warehouse.url.split(":", 1)[0].split("+", 1)[0]
    return f"{dialect}://marketing-warehouse/{config.warehouse.schema_name}/{table}"


def _business_date_param(context: dict) -> date | None:
    value = (context.get("params") or {}).get("business_date")
    return date.fromisoformat(str(value)) if value else None


def business_date(context: dict, tz: str) -> date:
    """The shop-local date a run processes: the start of its data interval, in the shop's zone.

    With the daily ``CronDataIntervalTimetable`` the run for date D starts after D has ended
    (at the configured local time on D+1) and its interval starts on D. Manual runs without
    an interval fall back to the day before the logical date. A ``business_date`` param
    (``--conf '{"business_date": "2026-10-30"}'``) overrides both, for reruns and backfills.
    """
    override = _business_date_param(context)
    if override:
        return override
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return start.astimezone(ZoneInfo(tz)).date()
    logical = context.get("logical_date") or datetime.now(ZoneInfo(tz))
    return logical.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)


def business_dates_from_assets(context: dict, tz: str) -> list[date]:
    """The dates an asset-triggered run works on, oldest first: the ``business_date`` param,
    else every date the triggering events published (carried in each asset event's extra;
    during a backfill several queue up for one run), else yesterday."""
    override = _business_date_param(context)
    if override:
        return [override]
    events = context.get("triggering_asset_events") or {}
    dates = {
        event.extra.get("business_date")
        for asset_events in events.values()
        for event in asset_events
        if getattr(event, "extra", None) and event.extra.get("business_date")
    }
    if dates:
        return sorted(date.fromisoformat(value) for value in dates)
    return [datetime.now(ZoneInfo(tz)).date() - timedelta(days=1)]


def business_date_from_assets(context: dict, tz: str) -> date:
    """The latest of :func:`business_dates_from_assets` (stages that only need the newest)."""
    return business_dates_from_assets(context, tz)[-1]


def dag_defaults(config: PipelineConfig) -> dict:
    """DAG arguments every marketing DAG shares: start, no catchup, one run at a time,
    serial tasks on DuckDB (one writing process at a time), retries with back-off, alerts
    (:mod:`jobs.platform.alerts`)."""
    from jobs.platform.alerts import failure_notifiers

    return {
        "start_date": datetime.fromisoformat(config.airflow.start_date).replace(tzinfo=config.tz),
        "catchup": False,
        "max_active_runs": 1,
        "max_active_tasks": 1 if config.warehouse.url.startswith("duckdb") else 16,
        "default_args": {
            "owner": "data-engineering",
            "retries": config.airflow.retries,
            "retry_delay": timedelta(minutes=config.airflow.retry_delay_minutes),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(hours=1),
            "on_failure_callback": failure_notifiers(config),
        },
    }


def business_date_param(description: str):
    """The optional ``business_date`` run parameter (reruns, backfills, manual runs)."""
    from airflow.sdk import Param

    return {"business_date": Param(None, type=["null", "string"], format="date", description=description)}


def run_stage(config: PipelineConfig, name: str, day: date) -> dict:
    """Run stage ``name`` (see :mod:`jobs.platform.stages`) for a date inside a task. A
    deterministic failure fails the task at once; a transient one is retried with back-off."""
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.platform.errors import DeterministicError
    from jobs.platform.stages import run_stage as run_one

    try:
        summary = run_one(config, name, day)
    except DeterministicError as exc:  # TransientError propagates: Airflow retries it
        raise AirflowFailException(f"{name} {day}: {exc}") from exc
    return json_safe({"business_date": day.isoformat(), **summary})


def json_safe(value):
    """``value`` as strict JSON can carry it (a task's return value goes to XCom through the
    execution API as JSON): NaN and infinities become null, numpy scalars Python ones."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_check(check, config: PipelineConfig, day: date) -> dict:
    """Run a watchdog check (:mod:`jobs.platform.monitoring`) in a task: a finding fails the
    task at once (no retry), and its failure callbacks send the alert."""
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.platform.errors import DeterministicError

    try:
        return json_safe(check(config, day))
    except DeterministicError as exc:
        raise AirflowFailException(str(exc)) from exc


def run_stage_for_dates(config: PipelineConfig, name: str, days: list[date]) -> dict:
    """Run stage ``name`` for each date in order (an asset-triggered run may carry several
    dates, e.g. during a backfill); the summary is the last date's, listing all dates."""
    summaries = [run_stage(config, name, day) for day in days]
    return {**summaries[-1], "business_dates": [s["business_date"] for s in summaries]}


def announce(assets, summary: dict) -> dict:
    """Tell asset-scheduled DAGs which date this task published (the asset events' extra,
    read by :func:`business_date_from_assets`); returns ``summary``."""
    from airflow.sdk import get_current_context

    events = get_current_context()["outlet_events"]
    for asset in assets:
        events[asset].extra = {"business_date": summary["business_date"]}
    return summary
