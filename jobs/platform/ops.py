"""Operational records: every stage writes what it did to the warehouse's ``ops_*`` tables."""

from __future__ import annotations

import logging
import os
import threading
from datetime import date, datetime

import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.warehouse import engine_for, ensure_schema, record_quarantine, record_run

log = logging.getLogger(__name__)
_ENGINES: dict[tuple[str, str], sa.Engine] = {}


def warehouse_engine(config: PipelineConfig) -> sa.Engine:
    """The process's one engine for the configured warehouse, its schema ensured on first use.

    Connections go back to the engine when a ``with`` block ends, also on error. DuckDB gets
    no pool: a DuckDB file admits one writing process, so a connection is closed as soon as
    it is released and other processes (Airflow tasks, the BI tool) can open the file.
    """
    key = (config.warehouse.url, config.warehouse.schema_name)
    if key not in _ENGINES:
        engine = engine_for(config)
        ensure_schema(engine, config.warehouse.schema_name, config.warehouse.bi_role)
        _ENGINES[key] = engine
    return _ENGINES[key]


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Linux ``/proc``; 0 elsewhere)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * page
            with open(f"/proc/{current}/task/{current}/children") as handle:
                stack.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


class PeakMemory:
    """Samples this process tree's resident memory (the Python driver, the Spark JVM and its
    Python workers) in a background thread; ``peak`` is the highest sample since ``reset``.
    Use as a context manager to stop the thread at the end."""

    def __init__(self, interval: float = 0.2):
        self.interval, self._stop = interval, threading.Event()
        self.peak = tree_rss(os.getpid())
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-memory")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss(os.getpid()))

    def reset(self) -> None:
        self.peak = tree_rss(os.getpid())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=2)
        self.peak = max(self.peak, tree_rss(os.getpid()))
        return self.peak

    def __enter__(self) -> PeakMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def record_stage_run(
    config: PipelineConfig,
    day: date,
    stage: str,
    status: str,
    started_at: datetime,
    finished_at: datetime,
    error: str | None = None,
    peak_rss_bytes: int | None = None,
) -> None:
    """Upsert the ``ops_stage_runs`` row of a stage's latest run for a date (how long it took
    and how it ended); never raises: a failure to record must not hide the stage's own."""
    schema = config.warehouse.schema_name
    try:
        with warehouse_engine(config).begin() as conn:
            conn.execute(
                sa.text(f"delete from {schema}.ops_stage_runs where logical_date = :d and stage = :s"),
                {"d": day, "s": stage},
            )
            conn.execute(
                sa.text(
                    f"insert into {schema}.ops_stage_runs (logical_date, stage, status, started_at, finished_at, "
                    "duration_s, error, peak_rss_mb) values (:d, :s, :status, :started, :finished, :seconds, :error, "
                    ":rss)"
                ),
                {
                    "d": day,
                    "s": stage,
                    "status": status,
                    "started": started_at,
                    "finished": finished_at,
                    "seconds": (finished_at - started_at).total_seconds(),
                    "error": error[:1000] if error else None,
                    "rss": round(peak_rss_bytes / 2**20, 1) if peak_rss_bytes else None,
                },
            )
    except Exception as exc:  # noqa: BLE001 - the stage's outcome matters more than its timing
        log.warning("could not record the %s run of %s in ops_stage_runs: %s", stage, day, exc)


def record_stage(config: PipelineConfig, record: dict, status: str = "success") -> None:
    """Write a stage's run record (counts, quarantine reasons) to ops tables."""
    engine = warehouse_engine(config)
    day = date.fromisoformat(record["logical_date"])
    schema = config.warehouse.schema_name
    details = {k: v for k, v in record.items() if k not in ("counts", "stage", "dataset", "logical_date")}
    with engine.begin() as conn:
        record_run(conn, schema, day, record["stage"], record["dataset"], status, record.get("counts"), details)
        if "quarantined_by_reason" in record:
            record_quarantine(conn, schema, day, record["dataset"], record["quarantined_by_reason"])


def record_and_reconcile(config: PipelineConfig, record: dict) -> None:
    """Record a clean stage's counts, then fail the run if they do not reconcile."""
    from jobs.platform.errors import ReconciliationError
    from jobs.platform.reconcile import reconcile

    counts = record["counts"]
    try:
        reconcile(
            record["dataset"],
            date.fromisoformat(record["logical_date"]),
            counts["input"],
            counts["clean"],
            counts["quarantined"],
            counts["duplicates"],
        )
    except ReconciliationError as exc:
        record_stage(config, {**record, "error": str(exc)}, status="failed")
        raise
    record_stage(config, record)


def record_quality(config: PipelineConfig, day: date, rows: list[dict], contract_ids: list[str]) -> None:
    """Replace the ``ops_data_quality`` rows of ``day`` that come from ``contract_ids`` with
    ``rows`` (one per check). Validate writes its contracts' checks; collect writes its own
    (``contract_id`` :data:`COLLECT_CHECKS`); neither erases the other's rows."""
    from jobs.platform.warehouse import insert_rows

    if not contract_ids:
        return
    schema = config.warehouse.schema_name
    placeholders = ", ".join(f":c{i}" for i in range(len(contract_ids)))
    params = {"d": day, **{f"c{i}": cid for i, cid in enumerate(contract_ids)}}
    with warehouse_engine(config).begin() as conn:
        conn.execute(
            sa.text(
                f"delete from {schema}.ops_data_quality where logical_date = :d and contract_id in ({placeholders})"
            ),
            params,
        )
        insert_rows(conn, schema, "ops_data_quality", rows)


# ``ops_data_quality.contract_id`` of the checks collect makes itself (no data contract).
COLLECT_CHECKS = "pipeline.collect_events"
