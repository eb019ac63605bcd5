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

Nothing is trusted until it is read back (a warehouse driver once dropped whole batches of
122,880 rows or more without an error). Before commit, inside the same transaction:

- the staging table must hold every row handed over;
- ``replace``: the rows the ``where`` clause selects must be exactly the staged rows in number;
- ``upsert`` / ``insert_new``: every staged key must be in the table (one row per key).

A mismatch raises :class:`PublishMismatchError` naming the table and both counts, and the
whole publish rolls back. ``ops_pipeline_runs.rows_out`` and ``ops_table_freshness`` record
the rows read back, not the rows the stage meant to write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import pyarrow as pa
import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import PublishMismatchError
from jobs.platform.ops import warehouse_engine
from jobs.platform.warehouse import (
    count_keys_held,
    count_rows,
    count_where,
    delete_where,
    distinct_keys,
    insert_new,
    insert_staged,
    record_freshness,
    record_run,
    stage_arrow,
    upsert,
)

log = logging.getLogger(__name__)

# A custom insert for ``replace``: (connection, staging table's name) -> None. It must insert
# one row per staged row (e.g. the staged rows joined to other marts).
Inserter = Callable[[sa.Connection, str], None]


@dataclass(frozen=True)
class Output:
    """One published table's new rows and how they replace the old ones."""

    table: str
    data: pa.Table
    mode: Literal["upsert", "insert_new", "replace"] = "replace"
    keys: Sequence[str] = ()  # upsert, insert_new: the table's key
    where: str = "snapshot_date = :d"  # replace: which published rows these rows replace
    params: dict = field(default_factory=dict)  # replace: bound values of ``where`` (``d``: the date)
    insert: Inserter | None = None  # replace: instead of copying the staged rows as they are

    @property
    def rows(self) -> int:
        return self.data.num_rows


def snapshot(table: str, data: pa.Table) -> Output:
    """The usual mart output: the date's snapshot (``snapshot_date = D``) replaced whole."""
    return Output(table, data)


def check_held(table: str, expected: int, held: int, what: str = "rows") -> None:
    """Fail (and so roll back the transaction) unless the warehouse holds what was staged."""
    if held != expected:
        raise PublishMismatchError(
            f"{table}: staged {expected:,} {what} but the warehouse holds {held:,} after the write; "
            "the publish was rolled back and nothing was published"
        )


def write_output(conn: sa.Connection, schema: str, day: date, output: Output) -> int:
    """Write one output on ``conn`` (inside the caller's transaction), read it back and return
    the rows the table holds for it; raise :class:`PublishMismatchError` on any difference."""
    table = output.table
    staged = None
    if output.rows:
        staged = stage_arrow(conn, f"stage_{table}", output.data, f"{schema}.{table}")
        check_held(f"{table} (staging)", output.rows, count_rows(conn, staged))
    if output.mode == "replace":
        params = {"d": day, **output.params}
        delete_where(conn, schema, table, output.where, params)
        if staged is not None:
            if output.insert is not None:
                output.insert(conn, staged)
            else:
                insert_staged(conn, schema, table, staged, output.data.column_names)
        held = count_where(conn, schema, table, output.where, params)
        check_held(table, output.rows, held)
        return held
    if staged is None:
        return 0
    keys = list(output.keys)
    unique = distinct_keys(conn, staged, keys)
    if unique != output.rows:  # an upsert of two rows with one key would keep either
        raise PublishMismatchError(
            f"{table}: {output.rows - unique:,} of the {output.rows:,} staged rows repeat a key "
            f"({', '.join(keys)}); the publish was rolled back and nothing was published"
        )
    merge = upsert if output.mode == "upsert" else insert_new
    merge(conn, schema, table, staged, keys, output.data.column_names)
    held = count_keys_held(conn, schema, table, staged, keys)
    check_held(table, output.rows, held, "keys")
    return held


def publish(
    config: PipelineConfig,
    day: date,
    stage: str,
    dataset: str,
    outputs: Sequence[Output],
    *,
    rows_in: int | None = None,
    details: dict | None = None,
    then: Callable[[sa.Connection], Mapping[str, int] | None] | None = None,
    status: str = "success",
) -> dict[str, int]:
    """Publish ``outputs`` for ``day`` and record the run, all in one transaction.

    ``rows_in`` is the run's input count for ``ops_pipeline_runs`` (default: the rows staged);
    its ``rows_out`` is what the tables hold after the write, read back. ``details`` go to its
    JSON column, with the rows per table added; ``then`` runs after the tables are written,
    inside the transaction (derived tables, updates) and may return the rows it wrote per table,
    read back (see :func:`check_held`). Returns the rows published per table, read back.
    """
    schema = config.warehouse.schema_name
    staged_total = sum(output.rows for output in outputs)
    with warehouse_engine(config).begin() as conn:
        held = {output.table: write_output(conn, schema, day, output) for output in outputs}
        if then is not None:
            held.update(then(conn) or {})
        if status == "success":
            record_freshness(conn, schema, day, stage, held)
        record_run(
            conn,
            schema,
            day,
            stage,
            dataset,
            status,
            {"input": staged_total if rows_in is None else rows_in, "output": sum(held.values())},
            {"rows_by_table": held, **(details or {})},
        )
    log.info("%s %s: published %s", day, stage, held)
    return held
