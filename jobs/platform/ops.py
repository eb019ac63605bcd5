"""Operational records: every stage writes what it did to the warehouse's ``ops_*`` tables."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.warehouse import engine_for, ensure_schema, record_quarantine, record_run

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
