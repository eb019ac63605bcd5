"""The one publish path: every stage hands its warehouse tables to :func:`publish`.

One call is one transaction. Each output is bulk-copied into a staging table and merged into
its published table (``upsert`` by key, newer ``updated_at`` wins; ``insert_new`` by key, only
keys not published yet are inserted and an existing row is never changed, so a record stays as
first published; or ``replace`` the rows a ``where`` clause selects, e.g. the date's snapshot),
optional follow-up SQL runs in the same transaction, each table's ``ops_table_freshness`` row
moves to the date (on success, never backwards), and the stage's ``ops_pipeline_runs`` row is
written last. Readers (BI, portal) see the previous complete version or the new one, never a
half-written table; re-running a date replaces that date's rows (``insert_new`` tables keep
theirs). The connection is always released, also on error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import pyarrow as pa
import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.ops import warehouse_engine
from jobs.platform.warehouse import (
    delete_where,
    insert_new,
    record_freshness,
    record_run,
    replace_where,
    stage_arrow,
    upsert,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """One published table's new rows and how they replace the old ones."""

    table: str
    data: pa.Table
    mode: Literal["upsert", "insert_new", "replace"] = "replace"
    keys: Sequence[str] = ()  # upsert, insert_new: the table's key
    where: str = "snapshot_date = :d"  # replace: which published rows these rows replace
    params: dict = field(default_factory=dict)  # replace: bound values of ``where`` (``d``: the date)

    @property
    def rows(self) -> int:
        return self.data.num_rows


def snapshot(table: str, data: pa.Table) -> Output:
    """The usual mart output: the date's snapshot (``snapshot_date = D``) replaced whole."""
    return Output(table, data)


def publish(
    config: PipelineConfig,
    day: date,
    stage: str,
    dataset: str,
    outputs: Sequence[Output],
    *,
    counts: dict | None = None,
    details: dict | None = None,
    then: Callable[[sa.Connection], None] | None = None,
    status: str = "success",
) -> dict[str, int]:
    """Publish ``outputs`` for ``day`` and record the run, all in one transaction.

    ``counts`` are the run's input/output counts for ``ops_pipeline_runs`` (default: rows
    published); ``details`` go to its JSON column, with the rows per table added; ``then``
    runs after the tables are written, inside the transaction (derived tables, updates).
    Returns the rows published per table.
    """
    schema = config.warehouse.schema_name
    rows = {output.table: output.rows for output in outputs}
    total = sum(rows.values())
    with warehouse_engine(config).begin() as conn:
        for output in outputs:
            if output.mode in ("upsert", "insert_new"):
                if output.rows:
                    staged = stage_arrow(conn, f"stage_{output.table}", output.data, f"{schema}.{output.table}")
                    merge = upsert if output.mode == "upsert" else insert_new
                    merge(conn, schema, output.table, staged, output.keys, output.data.column_names)
            elif output.rows:
                staged = stage_arrow(conn, f"stage_{output.table}", output.data, f"{schema}.{output.table}")
                params = {"d": day, **output.params}
                replace_where(conn, schema, output.table, staged, output.data.column_names, output.where, params)
            else:  # nothing new (an empty day, no model learned): the replaced rows just go
                delete_where(conn, schema, output.table, output.where, {"d": day, **output.params})
        if then is not None:
            then(conn)
        if status == "success":
            record_freshness(conn, schema, day, stage, rows)
        record_run(
            conn,
            schema,
            day,
            stage,
            dataset,
            status,
            counts or {"input": total, "output": total},
            {"rows_by_table": rows, **(details or {})},
        )
    log.info("%s %s: published %s", day, stage, rows)
    return rows
