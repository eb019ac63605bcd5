"""Operational records: every stage writes what it did to the warehouse's ``ops_*`` tables."""

from __future__ import annotations

from datetime import date

from jobs.platform.config import PipelineConfig
from jobs.platform.warehouse import engine_for, ensure_schema, record_quarantine, record_run

_READY: set[tuple[str, str]] = set()


def warehouse_engine(config: PipelineConfig):
    """Engine for the configured warehouse, with the schema created once per process."""
    engine = engine_for(config)
    key = (config.warehouse.url, config.warehouse.schema_name)
    if key not in _READY:
        ensure_schema(engine, config.warehouse.schema_name, config.warehouse.bi_role)
        _READY.add(key)
    return engine


def record_stage(config: PipelineConfig, record: dict, status: str = "success") -> None:
    """Write a stage's run record (counts, quarantine reasons) to ops tables."""
    engine = warehouse_engine(config)
    day = date.fromisoformat(record["logical_date"])
    schema = config.warehouse.schema_name
    details = {k: v for k, v in record.items() if k not in ("counts", "stage", "dataset", "logical_date")}
    try:
        with engine.begin() as conn:
            record_run(conn, schema, day, record["stage"], record["dataset"], status, record.get("counts"), details)
            if "quarantined_by_reason" in record:
                record_quarantine(conn, schema, day, record["dataset"], record["quarantined_by_reason"])
    finally:
        engine.dispose()


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
