"""The warehouse: DDL, atomic loads and ops records, on DuckDB or PostgreSQL via SQLAlchemy.

Every load runs in one transaction: rows are bulk-copied into a temporary staging table and
merged into the published table with SQL, so readers see either the previous complete
version or the new one. Values always travel as bind parameters or bulk copies, never as SQL
text; only identifiers from our own DDL are formatted into statements.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa
import yaml

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

from jobs.platform.config import PROJECT_ROOT, PipelineConfig
from jobs.platform.errors import ConfigError, EndpointUnavailableError, one_line

SQL_DIR = PROJECT_ROOT / "sql" / "warehouse"
MARTS_SQL_DIR = PROJECT_ROOT / "sql" / "marts"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def engine_for(config: PipelineConfig) -> sa.Engine:
    url = config.warehouse.url
    if url.startswith("duckdb:///") and ":memory:" not in url:
        Path(url[len("duckdb:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("duckdb"):
        return sa.create_engine(url, poolclass=sa.pool.NullPool)
    return sa.create_engine(url, pool_pre_ping=True)


def is_duckdb(conn: sa.Connection | sa.Engine) -> bool:
    return conn.dialect.name == "duckdb"


def _docs() -> dict:
    """``schema.yml`` plus one ``schema_<area>.yml`` per area (e.g. activation), merged."""
    docs: dict = {"tables": {}, "views": {}}
    for path in [SQL_DIR / "schema.yml", *sorted(SQL_DIR.glob("schema_*.yml"))]:
        part = yaml.safe_load(path.read_text())
        for section in ("tables", "views"):
            clash = set(docs[section]) & set(part.get(section) or {})
            if clash:
                raise ConfigError(f"{path.name}: {section} {sorted(clash)} are documented twice")
            docs[section].update(part.get(section) or {})
    return docs


def schema_docs() -> dict:
    """Published tables: description, columns, BI access (from sql/warehouse/schema*.yml)."""
    return _docs()["tables"]


def view_docs() -> dict[str, str]:
    return _docs().get("views", {})


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment(conn: sa.Connection, kind: str, target: str, text: str) -> None:
    """COMMENT ON with our own documentation text (no binds: ':x' must stay literal; psycopg
    still reads '%' as a placeholder marker, so it is doubled there)."""
    sql = f"comment on {kind} {target} is {_quote_literal(text)}"
    conn.exec_driver_sql(sql.replace("%", "%%") if conn.dialect.name == "postgresql" else sql)


def ensure_schema(engine: sa.Engine, schema: str, bi_role: str | None = None) -> None:
    """Create the schema, tables, views and comments if missing (safe to run every time);
    on PostgreSQL, also grant the read-only BI role what it may read."""
    schema = _ident(schema)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Parallel tasks (collect_events, collect_sources) may both create a fresh
                # warehouse; "if not exists" is not race-free in PostgreSQL, so serialise.
                lock = sa.text("select pg_advisory_xact_lock(hashtext(:key))")
                conn.execute(lock, {"key": f"ensure_schema:{schema}"})
            conn.execute(sa.text(f"create schema if not exists {schema}"))
            for path in sorted(SQL_DIR.glob("*.sql")):
                for statement in _statements(path.read_text().replace("{schema}", schema)):
                    conn.execute(sa.text(statement))
            for table, doc in schema_docs().items():
                _comment(conn, "table", f"{schema}.{_ident(table)}", doc["description"])
                for column, text in doc["columns"].items():
                    _comment(conn, "column", f"{schema}.{_ident(table)}.{_ident(column)}", text)
            for view, text in view_docs().items():
                _comment(conn, "view", f"{schema}.{_ident(view)}", text)
            if bi_role and conn.dialect.name == "postgresql":
                grant_bi_access(conn, schema, bi_role)
    except sa.exc.OperationalError as exc:  # not answering, refusing, or locked by another process
        raise EndpointUnavailableError(f"warehouse.url: cannot use {engine.url!r}: {one_line(exc.orig)}") from exc


def grant_bi_access(conn: sa.Connection, schema: str, role: str) -> None:
    """Least privilege for BI (PostgreSQL): usage on the schema and SELECT on the published
    tables and views, never on ``restricted_columns`` (column grants) nor on ``ops_*``."""
    role = _ident(role)
    exists = conn.execute(sa.text("select 1 from pg_roles where rolname = :r"), {"r": role}).scalar()
    if not exists:
        raise ConfigError(f"warehouse.bi_role: role {role!r} does not exist in the warehouse database")
    conn.exec_driver_sql(f"revoke all on schema {schema} from public")
    conn.exec_driver_sql(f"grant usage on schema {schema} to {role}")
    for table, doc in schema_docs().items():
        target = f"{schema}.{_ident(table)}"
        conn.exec_driver_sql(f"revoke all on {target} from {role}")
        if not doc.get("bi_access", True):
            continue
        restricted = set(doc.get("restricted_columns", []))
        if restricted:
            allowed = ", ".join(_ident(c) for c in doc["columns"] if c not in restricted)
            conn.exec_driver_sql(f"grant select ({allowed}) on {target} to {role}")
        else:
            conn.exec_driver_sql(f"grant select on {target} to {role}")
    for view in view_docs():
        if not view.startswith("ops_"):  # operators' views, like the ops_* tables
            conn.exec_driver_sql(f"grant select on {schema}.{_ident(view)} to {role}")


def add_profile_tag_columns(conn: sa.Connection, schema: str, tags: Sequence) -> dict[str, str]:
    """Make sure ``mart_user_profile`` has a ``tag_<name>`` column for every configured tag
    (added, commented, never dropped) and return ``{tag name: column}``. A new column means the
    ``select *`` view over the table is re-created, so BI sees it."""
    schema = _ident(schema)
    table = f"{schema}.mart_user_profile"
    existing = set(
        conn.execute(
            sa.text(
                "select column_name from information_schema.columns "
                "where table_schema = :s and table_name = 'mart_user_profile'"
            ),
            {"s": schema},
        ).scalars()
    )
    columns = {}
    for tag in tags:
        column = _ident(f"tag_{tag.name}")
        columns[tag.name] = column
        if column not in existing:
            conn.exec_driver_sql(f"alter table {table} add column {column} varchar")
        _comment(
            conn,
            "column",
            f"{table}.{column}",
            f"Tag {tag.name} (config/tags.yaml): {tag.description}",
        )
    if set(columns.values()) - existing:
        view = f"{schema}.v_user_profile_latest"
        conn.exec_driver_sql(  # new columns come last, so PostgreSQL keeps the view (and its grants)
            f"create or replace view {view} as select * from {table} "
            f"where snapshot_date = (select max(snapshot_date) from {table})"
        )
    return columns


def _statements(sql: str) -> list[str]:
    without_comments = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [part.strip() for part in without_comments.split(";") if part.strip()]


def read_sql(name: str, schema: str, **parts: str) -> list[str]:
    """The statements of ``sql/marts/<name>`` with ``{schema}`` and the named ``parts``
    (SQL fragments built from our own identifiers) filled in; values stay bind parameters
    such as ``:d``."""
    text = (MARTS_SQL_DIR / name).read_text()
    for key, value in {"schema": _ident(schema), **parts}.items():
        text = text.replace("{" + key + "}", value)
    return _statements(text)


def frame_to_arrow(frame) -> pa.Table:
    """A pandas frame as an Arrow table for staging (its index dropped)."""
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def to_arrow(frame: DataFrame) -> pa.Table:
    """A Spark frame as an Arrow table for staging, timestamps marked as UTC."""
    table = frame.toArrow()
    # Spark hands out naive UTC timestamps; mark them as UTC for the warehouse's timestamptz.
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def query_frame(conn: sa.Connection, query: str | sa.TextClause, **params) -> pd.DataFrame:
    """The rows of a query (SQL text or a ``text()`` clause with its bind parameters) as a
    pandas frame with the result's column names."""
    import pandas as pd

    result = conn.execute(sa.text(query) if isinstance(query, str) else query, params)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def stage_arrow(conn: sa.Connection, name: str, data: pa.Table, like: str) -> str:
    """Bulk-copy an Arrow table into a temporary table shaped like ``like``; return its name."""
    name, columns = _ident(name), [_ident(c) for c in data.column_names]
    col_list = ", ".join(columns)
    if is_duckdb(conn):
        duck = conn.connection.driver_connection
        view = f"{name}_arrow"
        duck.register(view, data)
        try:
            conn.exec_driver_sql(f"drop table if exists {name}")
            conn.exec_driver_sql(f"create temp table {name} as select {col_list} from {like} limit 0")
            conn.exec_driver_sql(f"insert into {name} ({col_list}) select {col_list} from {view}")
        finally:
            duck.unregister(view)
        return name
    conn.exec_driver_sql(f"drop table if exists {name}")
    conn.exec_driver_sql(f"create temp table {name} as select {col_list} from {like} limit 0")
    # COPY in CSV written by Arrow (no per-row Python): an unquoted empty field is NULL and a
    # quoted "" is the empty string, so both survive the trip.
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(f"copy {name} ({col_list}) from stdin with (format csv)") as copy:
        for batch in data.to_batches(max_chunksize=100_000):
            buffer = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), buffer, options)
            copy.write(buffer.getvalue())
    conn.exec_driver_sql(f"analyze {name}")  # a temp table has no statistics: plan the merge on real counts
    return name


def upsert(
    conn: sa.Connection,
    schema: str,
    table: str,
    staged: str,
    keys: Sequence[str],
    columns: Sequence[str],
    newer_only: bool = True,
) -> None:
    """Insert staged rows; existing keys are updated when the staged row is not older."""
    target = f"{_ident(schema)}.{_ident(table)}"
    col_list = ", ".join(_ident(c) for c in columns)
    key_list = ", ".join(_ident(k) for k in keys)
    updates = ", ".join(f"{_ident(c)} = excluded.{_ident(c)}" for c in columns if c not in keys)
    guard = f" where {target}.updated_at <= excluded.updated_at" if newer_only else ""
    conn.exec_driver_sql(
        f"insert into {target} ({col_list}) select {col_list} from {_ident(staged)} "
        f"on conflict ({key_list}) do update set {updates}{guard}"
    )


def insert_new(
    conn: sa.Connection, schema: str, table: str, staged: str, keys: Sequence[str], columns: Sequence[str]
) -> None:
    """Insert the staged rows whose key the table does not hold yet; existing rows stay as they
    are (records that must never be overwritten, e.g. a suppression as first recorded)."""
    target = f"{_ident(schema)}.{_ident(table)}"
    col_list = ", ".join(_ident(c) for c in columns)
    key_list = ", ".join(_ident(k) for k in keys)
    conn.exec_driver_sql(
        f"insert into {target} ({col_list}) select {col_list} from {_ident(staged)} on conflict ({key_list}) do nothing"
    )


def insert_staged(conn: sa.Connection, schema: str, table: str, staged: str, columns: Sequence[str]) -> None:
    """Append the staged rows to the table as they are."""
    col_list = ", ".join(_ident(c) for c in columns)
    conn.exec_driver_sql(
        f"insert into {_ident(schema)}.{_ident(table)} ({col_list}) select {col_list} from {_ident(staged)}"
    )


def replace_where(
    conn: sa.Connection, schema: str, table: str, staged: str, columns: Sequence[str], where: str, params: dict
) -> None:
    """Delete rows matching ``where`` (bound ``params``) and insert the staged rows."""
    delete_where(conn, schema, table, where, params)
    insert_staged(conn, schema, table, staged, columns)


# Read-backs: what a table holds after a write, counted on the writing connection (inside its
# transaction), for the publish path to compare with what it staged.


def count_rows(conn: sa.Connection, table: str) -> int:
    """Rows of a table (a staging table's bare name, or ``schema.table``)."""
    name = ".".join(_ident(part) for part in table.split("."))
    return conn.exec_driver_sql(f"select count(*) from {name}").scalar_one()


def count_where(conn: sa.Connection, schema: str, table: str, where: str, params: dict) -> int:
    """Rows of the table that ``where`` (our own SQL, values bound ``params``) selects."""
    target = f"{_ident(schema)}.{_ident(table)}"
    return conn.execute(sa.text(f"select count(*) from {target} where {where}"), params).scalar_one()


def distinct_keys(conn: sa.Connection, staged: str, keys: Sequence[str]) -> int:
    """Distinct key values among the staged rows."""
    key_list = ", ".join(_ident(k) for k in keys)
    return conn.exec_driver_sql(
        f"select count(*) from (select distinct {key_list} from {_ident(staged)}) k"
    ).scalar_one()


def count_keys_held(conn: sa.Connection, schema: str, table: str, staged: str, keys: Sequence[str]) -> int:
    """Rows of the table whose key is one of the staged keys (one per key: keys are unique)."""
    target = f"{_ident(schema)}.{_ident(table)}"
    match = " and ".join(f"s.{_ident(k)} = t.{_ident(k)}" for k in keys)
    return conn.exec_driver_sql(
        f"select count(*) from {target} t where exists (select 1 from {_ident(staged)} s where {match})"
    ).scalar_one()


def delete_where(conn: sa.Connection, schema: str, table: str, where: str, params: dict) -> None:
    """Delete the rows ``where`` selects; ``where`` is our own SQL, its values bound ``params``."""
    conn.execute(sa.text(f"delete from {_ident(schema)}.{_ident(table)} where {where}"), params)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def record_run(
    conn: sa.Connection,
    schema: str,
    logical_date: date,
    stage: str,
    dataset: str,
    status: str,
    counts: dict | None = None,
    details: dict | None = None,
) -> None:
    """Upsert one ``ops_pipeline_runs`` row (idempotent per date, stage and dataset)."""
    counts = counts or {}
    table = f"{_ident(schema)}.ops_pipeline_runs"
    conn.execute(
        sa.text(f"delete from {table} where logical_date = :d and stage = :s and dataset = :ds"),
        {"d": logical_date, "s": stage, "ds": dataset},
    )
    conn.execute(
        sa.text(
            f"insert into {table} (logical_date, stage, dataset, status, rows_in, rows_out, "
            "rows_quarantined, rows_duplicate, details_json, recorded_at) values "
            "(:d, :s, :ds, :status, :rin, :rout, :rq, :rdup, :details, :at)"
        ),
        {
            "d": logical_date,
            "s": stage,
            "ds": dataset,
            "status": status,
            "rin": counts.get("input"),
            "rout": counts.get("clean", counts.get("output")),
            "rq": counts.get("quarantined"),
            "rdup": counts.get("duplicates"),
            "details": json.dumps(details or {}, sort_keys=True, default=str),
            "at": _now(),
        },
    )


def record_freshness(conn: sa.Connection, schema: str, day: date, stage: str, rows: dict[str, int]) -> None:
    """Move each published table's ``ops_table_freshness`` row to ``day`` (a re-run of an
    older date leaves a newer one in place)."""
    table = f"{_ident(schema)}.ops_table_freshness"
    for name, count in rows.items():
        newest = conn.execute(sa.text(f"select logical_date from {table} where table_name = :t"), {"t": name}).scalar()
        if newest is not None and as_date(newest) > day:
            continue
        conn.execute(sa.text(f"delete from {table} where table_name = :t"), {"t": name})
        conn.execute(
            sa.text(
                f"insert into {table} (table_name, stage, logical_date, published_at, rows_published) "
                "values (:t, :s, :d, :at, :n)"
            ),
            {"t": name, "s": stage, "d": day, "at": _now(), "n": count},
        )


def as_date(value) -> date | None:
    """A date column's value as a ``date`` (SQLite and some drivers hand back text, pandas a
    timestamp)."""
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def record_quarantine(
    conn: sa.Connection, schema: str, logical_date: date, dataset: str, by_reason: dict[str, int]
) -> None:
    table = f"{_ident(schema)}.ops_quarantine_daily"
    conn.execute(
        sa.text(f"delete from {table} where logical_date = :d and dataset = :ds"),
        {"d": logical_date, "ds": dataset},
    )
    rows = [
        {"d": logical_date, "ds": dataset, "r": reason, "n": int(n), "at": _now()}
        for reason, n in sorted(by_reason.items())
        if n
    ]
    if rows:
        conn.execute(
            sa.text(
                f"insert into {table} (logical_date, dataset, reason, row_count, recorded_at) "
                "values (:d, :ds, :r, :n, :at)"
            ),
            rows,
        )


def insert_rows(conn: sa.Connection, schema: str, table: str, rows: Iterable[dict]) -> int:
    """Plain parameterised multi-row insert for small ops tables."""
    rows = list(rows)
    if not rows:
        return 0
    columns = list(rows[0])
    target = f"{_ident(schema)}.{_ident(table)}"
    conn.execute(
        sa.text(
            f"insert into {target} ({', '.join(_ident(c) for c in columns)}) "
            f"values ({', '.join(':' + c for c in columns)})"
        ),
        rows,
    )
    return len(rows)


def table_counts(engine: sa.Engine, schema: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"select count(*) from {_ident(schema)}.{_ident(table)}")).scalar_one()
            for table in schema_docs()
        }
