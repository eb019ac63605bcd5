"""What whoever runs the pipeline asks each morning: did last night finish in time, what failed,
which published tables are stale, how much was quarantined, which checks failed.

Everything is read from the warehouse's ``ops_*`` tables, which every stage run writes (Airflow
tasks and ``marketing run`` alike): ``ops_stage_runs`` (status, duration, peak memory),
``ops_table_freshness`` (newest date per published table), and the ``ops_task_metrics`` and
``ops_quality_trend`` views. ``marketing status`` prints :func:`status_report`; the watchdog DAG
raises :class:`DeadlineMissedError` through :func:`check_deadline`.

A night D is *due* at ``alerts.finish_by`` (shop-local) on D+1: by then every stage of the
chain (nightly, customers, recommender, campaigns, report) must have succeeded or been skipped.
A published table is *stale* when its newest date is older than the newest due night.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import DeadlineMissedError, StaleDataError
from jobs.platform.ops import warehouse_engine
from jobs.platform.stages import ALL_STAGES
from jobs.platform.warehouse import as_date, query_frame

DONE = ("success", "skipped")


def deadline_for(config: PipelineConfig, day: date) -> datetime:
    """When the chain for ``day`` must be done: ``finish_by`` local time on the next day (UTC)."""
    local = datetime.combine(day + timedelta(days=1), config.alerts.finish_by_time, tzinfo=config.tz)
    return local.astimezone(UTC)


def last_due_date(config: PipelineConfig, now: datetime) -> date:
    """The newest night whose deadline has passed at ``now``."""
    local = now.astimezone(config.tz)
    day = local.date() - timedelta(days=1)
    return day if local.time() >= config.alerts.finish_by_time else day - timedelta(days=1)


def _stage_runs(conn: sa.Connection, schema: str, first: date, last: date):
    return query_frame(
        conn,
        sa.text(
            f"select logical_date, stage, status, started_at, finished_at, duration_s, peak_rss_mb, error "
            f"from {schema}.ops_stage_runs where logical_date between :first and :last"
        ),
        first=first,
        last=last,
    )


def unfinished(config: PipelineConfig, day: date) -> dict[str, str]:
    """Stages of the chain not done for ``day``: stage -> ``failed`` / ``running`` / ``not run``."""
    with warehouse_engine(config).connect() as conn:
        runs = _stage_runs(conn, config.warehouse.schema_name, day, day)
    return _missing(dict(zip(runs["stage"], runs["status"], strict=True)))


def _missing(status: dict[str, str]) -> dict[str, str]:
    """The chain's stages not done, given each stage's status for one night."""
    return {stage: status.get(stage, "not run") for stage in ALL_STAGES if status.get(stage) not in DONE}


def check_deadline(config: PipelineConfig, day: date, now: datetime | None = None) -> dict:
    """Raise :class:`DeadlineMissedError` when the chain for ``day`` is not done and its
    deadline has passed; otherwise say where it stands."""
    now = now or datetime.now(UTC)
    deadline = deadline_for(config, day)
    missing = unfinished(config, day)
    local = deadline.astimezone(config.tz)
    if missing and now >= deadline:
        listed = ", ".join(f"{stage} {state}" for stage, state in missing.items())
        raise DeadlineMissedError(
            f"night {day} not finished by {local:%Y-%m-%d %H:%M} {config.shop.timezone}: {listed}"
        )
    return {"business_date": day.isoformat(), "deadline": local.isoformat(), "unfinished": missing}


def stale_tables(config: PipelineConfig, now: datetime | None = None, due: date | None = None) -> list[dict]:
    """Published tables whose newest date is older than ``due`` (default: the newest due night)."""
    due = due or last_due_date(config, now or datetime.now(UTC))
    schema = config.warehouse.schema_name
    with warehouse_engine(config).connect() as conn:
        frame = query_frame(
            conn,
            sa.text(
                f"select table_name, stage, logical_date, published_at from {schema}.ops_table_freshness "
                "where logical_date < :due order by logical_date, table_name"
            ),
            due=due,
        )
    return [
        {"table": row.table_name, "stage": row.stage, "newest_date": as_date(row.logical_date), "due": due}
        for row in frame.itertuples()
    ]


def check_freshness(config: PipelineConfig, day: date) -> dict:
    """Raise :class:`StaleDataError` when a published table's newest date is older than ``day``."""
    stale = stale_tables(config, due=day)
    if stale:
        listed = ", ".join(f"{t['table']} ({t['newest_date']}, {t['stage']})" for t in stale)
        raise StaleDataError(f"{len(stale)} published table(s) older than {day}: {listed}")
    return {"business_date": day.isoformat(), "stale_tables": []}


def _number(value) -> float | None:
    return None if value is None or value != value else float(value)  # NULL comes back as None or NaN


def status_report(
    config: PipelineConfig, days: int = 7, now: datetime | None = None, night: date | None = None
) -> dict:
    """Runs of the last ``days`` nights per stage, failures, a night (default: the newest due
    one) against its deadline, tables older than that night, and the clean stage's quarantine
    rates and failed checks per dataset."""
    now = now or datetime.now(UTC)
    due = night or last_due_date(config, now)
    schema = config.warehouse.schema_name
    with warehouse_engine(config).connect() as conn:
        newest = conn.execute(sa.text(f"select max(logical_date) from {schema}.ops_stage_runs")).scalar()
        last = max(due, as_date(newest)) if newest is not None else due
        first = last - timedelta(days=days - 1)
        runs = _stage_runs(conn, schema, first, last)
        quality = query_frame(
            conn,
            sa.text(
                f"select logical_date, dataset, checks, failed_errors, failed_warnings, rows_in, "
                f"rows_quarantined, quarantine_rate from {schema}.ops_quality_trend "
                "where logical_date between :first and :last order by logical_date, dataset"
            ),
            first=first,
            last=last,
        )
    dates = [first + timedelta(days=k) for k in range(days)]
    by_key = {(as_date(r.logical_date), r.stage): r for r in runs.itertuples()}
    stages = [s for s in ALL_STAGES if any((d, s) in by_key for d in dates)]
    grid = {
        stage: {d.isoformat(): by_key[(d, stage)].status if (d, stage) in by_key else None for d in dates}
        for stage in stages
    }
    latest = {}
    for stage in stages:
        ran = [by_key[(d, stage)] for d in dates if (d, stage) in by_key]
        if ran:
            row = ran[-1]
            latest[stage] = {
                "date": as_date(row.logical_date).isoformat(),
                "status": row.status,
                "duration_s": round(float(row.duration_s), 1),
                "peak_rss_mb": _number(row.peak_rss_mb),
            }
    failures = [
        {"date": as_date(r.logical_date).isoformat(), "stage": r.stage, "error": r.error}
        for r in runs.sort_values(["logical_date", "started_at"]).itertuples()
        if r.status == "failed"
    ]
    due_runs = {r.stage: r for r in runs.itertuples() if as_date(r.logical_date) == due}
    missing = _missing({stage: row.status for stage, row in due_runs.items()})
    finished = max((r.finished_at for r in due_runs.values()), default=None)
    deadline = deadline_for(config, due)
    return {
        "shop": config.shop.name,
        "timezone": config.shop.timezone,
        "now": now.astimezone(config.tz).isoformat(timespec="minutes"),
        "dates": [d.isoformat() for d in dates],
        "runs": grid,
        "latest": latest,
        "failures": failures,
        "deadline": {
            "business_date": due.isoformat(),
            "deadline": deadline.astimezone(config.tz).isoformat(timespec="minutes"),
            "passed": now >= deadline,
            "met": not missing,
            "finished_at": None if finished is None or missing else _local(finished, config).isoformat(timespec="minutes"),
            "unfinished": missing,
        },
        "stale_tables": [{**t, "newest_date": t["newest_date"].isoformat(), "due": t["due"].isoformat()} for t in stale_tables(config, due=due)],
        "quality": [
            {
                "date": as_date(r.logical_date).isoformat(),
                "dataset": r.dataset,
                "checks": int(r.checks),
                "failed_errors": int(r.failed_errors),
                "failed_warnings": int(r.failed_warnings),
                "quarantine_rate": _number(r.quarantine_rate),
            }
            for r in quality.itertuples()
        ],
    }  # fmt: skip


def _local(value, config: PipelineConfig) -> datetime:
    moment = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(config.tz)
