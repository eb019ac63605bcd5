"""The warehouse on a real PostgreSQL (jobs/platform/warehouse.py, and the whole pipeline publishing to it).

* ``ensure_schema`` creates every table of ``sql/warehouse`` with a comment on every table and
  column, and is safe to run again; ``schema.yml`` documents exactly the DDL's columns (that
  check runs on DuckDB, the embedded default);
* ``stage_arrow`` + ``upsert``: a newer ``updated_at`` wins, an older one never overwrites, a
  re-run inserts nothing twice; ``replace_where`` replaces only the matching rows; publish
  mode ``insert_new`` (on PostgreSQL and DuckDB) keeps a published row as first recorded;
* atomic publish: a reader sees the old complete version while a load is in flight, and a load
  that fails half-way leaves nothing behind;
* values with quotes and SQL metacharacters round-trip unchanged (COPY and bind parameters);
* a full pipeline night on a tiny simulated shop publishes to PostgreSQL: row counts match the
  clean stage, PII is only hashed, and re-running the night changes nothing.

Needs a PostgreSQL server (see tests/postgres.py: ``MKT_TEST_POSTGRES_URL`` or a throwaway
server from the installed binaries); skipped when there is none. DuckDB needs nothing.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from jobs.platform.errors import ConfigError
from jobs.platform.warehouse import (
    SQL_DIR,
    engine_for,
    ensure_schema,
    insert_rows,
    record_run,
    replace_where,
    schema_docs,
    stage_arrow,
    upsert,
    view_docs,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TS = pa.timestamp("us", tz="UTC")
PRODUCT_COLUMNS = (
    "product_id", "product_name", "category_l1", "category_l2", "brand", "price", "is_active",
    "updated_at", "loaded_at",
)  # fmt: skip
EVENT_COLUMNS = (
    "event_date", "user_id", "event_type", "event_count", "session_count", "product_count",
    "first_event_at", "last_event_at", "loaded_at",
)  # fmt: skip
# Run metadata that legitimately differs between two runs of the same date.
RUN_TIME_COLUMNS = {
    "loaded_at",
    "recorded_at",
    "validated_at",
    "extracted_at",
    "started_at",
    "finished_at",
    "duration_s",
    "peak_rss_mb",
    "published_at",
}
NASTY = (
    "O'Brien's \"best\" shirt",
    "'); drop table dim_product; --",
    "back\\slash \\N \\t \\\\ end\\",
    "tab\there\nnew line\r\ncrlf",
    "\\N",
    "",
    "%s %(name)s %% :name :1 ? $1",
    "$$ dollar $tag$ quoting $$",
    "连衣裙 — «ünïcödé» 🎉",
    "semi;colon -- comment /* block */ ",
    "   padded   ",
    "E'\\x41' || chr(65)",
)


def ddl_tables() -> dict[str, list[str]]:
    """Tables and their columns as written in sql/warehouse/*.sql (independent of the code)."""
    tables: dict[str, list[str]] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        for match in re.finditer(r"create table if not exists \{schema\}\.(\w+)\s*\((.*?)\);", text, re.S | re.I):
            columns = []
            for line in match.group(2).splitlines():
                words = line.strip().split()
                if words and words[0].lower() not in (
                    "primary",
                    "unique",
                    "constraint",
                    "foreign",
                    "check",
                ):
                    columns.append(words[0])
            tables[match.group(1)] = columns
    assert tables, f"no create table statements found in {SQL_DIR}"
    return tables


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def engine(postgres_url: str):
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def schema(engine: sa.Engine, pg_schema: str) -> str:
    ensure_schema(engine, pg_schema)
    return pg_schema


def products(*rows: tuple, loaded_at: datetime = T0) -> pa.Table:
    """dim_product rows from (product_id, name, updated_at[, category_l2, brand])."""
    full = [(*row, *(None,) * (5 - len(row))) if len(row) < 5 else row for row in rows]
    return pa.table(
        {
            "product_id": pa.array([r[0] for r in full], pa.int64()),
            "product_name": pa.array([r[1] for r in full], pa.string()),
            "category_l1": pa.array(["apparel"] * len(full), pa.string()),
            "category_l2": pa.array([r[3] for r in full], pa.string()),
            "brand": pa.array([r[4] for r in full], pa.string()),
            "price": pa.array([Decimal("19.90") + r[0] for r in full], pa.decimal128(12, 2)),
            "is_active": pa.array([r[0] % 2 == 1 for r in full], pa.bool_()),
            "updated_at": pa.array([r[2] for r in full], TS),
            "loaded_at": pa.array([loaded_at] * len(full), TS),
        }
    )


def events(*rows: tuple, loaded_at: datetime = T0) -> pa.Table:
    """fct_events_daily rows from (event_date, user_id, event_type, event_count)."""
    return pa.table(
        {
            "event_date": pa.array([r[0] for r in rows], pa.date32()),
            "user_id": pa.array([r[1] for r in rows], pa.int64()),
            "event_type": pa.array([r[2] for r in rows], pa.string()),
            "event_count": pa.array([r[3] for r in rows], pa.int64()),
            "session_count": pa.array([1] * len(rows), pa.int64()),
            "product_count": pa.array([0] * len(rows), pa.int64()),
            "first_event_at": pa.array([T0] * len(rows), TS),
            "last_event_at": pa.array([T0 + HOUR] * len(rows), TS),
            "loaded_at": pa.array([loaded_at] * len(rows), TS),
        }
    )


def load_products(conn: sa.Connection, schema: str, data: pa.Table) -> None:
    staged = stage_arrow(conn, "stage_dim_product", data, f"{schema}.dim_product")
    upsert(conn, schema, "dim_product", staged, ["product_id"], data.column_names)


def replace_event_dates(conn: sa.Connection, schema: str, data: pa.Table, days: list[date]) -> None:
    staged = stage_arrow(conn, "stage_fct_events_daily", data, f"{schema}.fct_events_daily")
    marks = ", ".join(f":d{i}" for i in range(len(days)))
    replace_where(
        conn, schema, "fct_events_daily", staged, data.column_names, f"event_date in ({marks})",
        {f"d{i}": day for i, day in enumerate(days)},
    )  # fmt: skip


def product_state(conn: sa.Connection, schema: str) -> dict[int, tuple]:
    rows = conn.execute(
        sa.text(f"select product_id, product_name, updated_at, category_l2, brand from {schema}.dim_product")
    )
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def event_state(conn: sa.Connection, schema: str) -> dict[tuple, int]:
    rows = conn.execute(sa.text(f"select event_date, user_id, event_type, event_count from {schema}.fct_events_daily"))
    return {(row[0], row[1], row[2]): row[3] for row in rows}


def snapshot(conn: sa.Connection, schema: str, tables=None, skip=frozenset()) -> dict[str, list[tuple]]:
    """Every row of every warehouse table (sorted), without the ``skip`` columns."""
    result = {}
    for table in tables or schema_docs():
        columns = [
            c
            for c in conn.execute(
                sa.text(
                    "select column_name from information_schema.columns "
                    "where table_schema = :s and table_name = :t order by ordinal_position"
                ),
                {"s": schema, "t": table},
            ).scalars()
            if c not in skip
        ]
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        result[table] = [
            tuple(row)
            for row in conn.exec_driver_sql(f"select {', '.join(columns)} from {schema}.{table} order by {order}")
        ]
    return result


# --------------------------------------------------------------------------------------------
# Schema and documentation
# --------------------------------------------------------------------------------------------


def test_ensure_schema_creates_every_table_with_comments_and_is_idempotent(engine, pg_schema):
    docs, ddl = schema_docs(), ddl_tables()
    ensure_schema(engine, pg_schema)
    with engine.begin() as conn:
        record_run(
            conn,
            pg_schema,
            date(2026, 9, 1),
            "collect",
            "events",
            "success",
            {"input": 3, "output": 3},
        )
    ensure_schema(engine, pg_schema)  # again: no error, nothing lost

    with engine.connect() as conn:
        tables = dict(
            conn.execute(
                sa.text(
                    "select c.relname, obj_description(c.oid, 'pg_class') from pg_class c "
                    "join pg_namespace n on n.oid = c.relnamespace where n.nspname = :s and c.relkind = 'r'"
                ),
                {"s": pg_schema},
            ).all()
        )
        columns = conn.execute(
            sa.text(
                "select c.relname, a.attname, col_description(c.oid, a.attnum) from pg_attribute a "
                "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = :s and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped "
                "order by c.relname, a.attnum"
            ),
            {"s": pg_schema},
        ).all()
        runs = conn.execute(sa.text(f"select rows_in from {pg_schema}.ops_pipeline_runs")).scalars().all()

    assert set(tables) == set(ddl) == set(docs)
    for table, comment in tables.items():
        assert comment == docs[table]["description"], f"table {table}: comment {comment!r}"
    by_table: dict[str, list[str]] = {}
    for table, column, comment in columns:
        by_table.setdefault(table, []).append(column)
        assert comment, f"column {table}.{column} has no comment"
        assert comment == docs[table]["columns"][column], f"column {table}.{column}: comment {comment!r}"
    assert by_table == ddl  # same columns, in DDL order
    assert runs == [3], "running ensure_schema again must keep the data"


def test_ensure_schema_from_parallel_tasks_on_a_fresh_warehouse(postgres_url, pg_schema):
    """The DAG runs collect_events and collect_sources in parallel; both create the schema."""
    engines = [sa.create_engine(postgres_url, poolclass=sa.pool.NullPool) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[str] = []

    def create(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            ensure_schema(engine, pg_schema)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    threads = [threading.Thread(target=create, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        with engines[0].connect() as conn:
            tables = conn.execute(
                sa.text(
                    "select table_name from information_schema.tables "
                    "where table_schema = :s and table_type = 'BASE TABLE'"
                ),
                {"s": pg_schema},
            ).scalars()
            assert set(tables) == set(schema_docs())
    finally:
        for engine in engines:
            engine.dispose()


def test_schema_yml_documents_exactly_the_ddl_columns_on_duckdb(make_config):
    config = make_config()
    schema = config.warehouse.schema_name
    engine = engine_for(config)
    try:
        ensure_schema(engine, schema)
        ensure_schema(engine, schema)
        with engine.connect() as conn:
            columns = conn.execute(
                sa.text(
                    "select table_name, column_name, comment from duckdb_columns() "
                    "where schema_name = :s and database_name = current_database() order by table_name, column_index"
                ),
                {"s": schema},
            ).all()
            tables = dict(
                conn.execute(
                    sa.text(
                        "select table_name, comment from duckdb_tables() "
                        "where schema_name = :s and database_name = current_database()"
                    ),
                    {"s": schema},
                ).all()
            )
            views = dict(
                conn.execute(
                    sa.text("select view_name, comment from duckdb_views() where schema_name = :s and not internal"),
                    {"s": schema},
                ).all()
            )
    finally:
        engine.dispose()

    assert views == view_docs()  # every view exists and carries its documented comment
    docs = schema_docs()
    columns = [(t, c, comment) for t, c, comment in columns if t not in view_docs()]
    created = {(t, c) for t, c, _ in columns}
    documented = {(t, c) for t, cols in docs.items() for c in cols["columns"]}
    assert sorted(created - documented) == [], "columns in the DDL without documentation in schema.yml"
    assert sorted(documented - created) == [], "columns documented in schema.yml but not in the DDL"
    assert {(t, c) for t, cols in ddl_tables().items() for c in cols} == created
    assert [(t, c) for t, c, comment in columns if not comment] == [], "columns without a comment"
    for table, column, comment in columns:
        assert comment == docs[table]["columns"][column]
    assert set(tables) == set(docs)
    assert {t: c for t, c in tables.items()} == {t: d["description"] for t, d in docs.items()}


# --------------------------------------------------------------------------------------------
# Loads: upsert, replace_where, atomicity
# --------------------------------------------------------------------------------------------


def test_upsert_newer_wins_older_never_overwrites_and_reruns_insert_once(engine, schema):
    day1 = products((1, "one v1", T0), (2, "two v1", T0))
    day2 = products((1, "one v2", T0 + HOUR), (2, "two OLDER", T0 - HOUR), (3, "three v1", T0))
    with engine.begin() as conn:
        load_products(conn, schema, day1)
    with engine.begin() as conn:
        load_products(conn, schema, day2)
    expected = {
        1: ("one v2", T0 + HOUR, None, None),  # newer updated_at wins
        2: ("two v1", T0, None, None),  # an older version never overwrites
        3: ("three v1", T0, None, None),  # new key inserted
    }
    with engine.connect() as conn:
        assert product_state(conn, schema) == expected

    # Re-running day 2, then the old day 1: nothing duplicated, nothing regresses.
    for batch in (day2, day1, day2):
        with engine.begin() as conn:
            load_products(conn, schema, batch)
        with engine.connect() as conn:
            assert product_state(conn, schema) == expected
            assert conn.execute(sa.text(f"select count(*) from {schema}.dim_product")).scalar_one() == 3

    # Same updated_at (a re-run of the same version) refreshes the row, e.g. its loaded_at.
    with engine.begin() as conn:
        load_products(conn, schema, products((3, "three v1", T0), loaded_at=T0 + 5 * HOUR))
    with engine.connect() as conn:
        loaded = conn.execute(sa.text(f"select loaded_at from {schema}.dim_product where product_id = 3")).scalar_one()
    assert loaded == T0 + 5 * HOUR


def test_upsert_with_composite_key(engine, schema):
    def items(*rows):
        return pa.table(
            {
                "order_id": pa.array([r[0] for r in rows], pa.int64()),
                "line_no": pa.array([r[1] for r in rows], pa.int32()),
                "user_id": pa.array([3] * len(rows), pa.int64()),
                "order_date": pa.array([T0.date()] * len(rows), pa.date32()),
                "product_id": pa.array([7] * len(rows), pa.int64()),
                "quantity": pa.array([r[2] for r in rows], pa.int32()),
                "unit_price": pa.array([Decimal("2.50")] * len(rows), pa.decimal128(12, 2)),
                "line_amount": pa.array([Decimal("2.50") * r[2] for r in rows], pa.decimal128(14, 2)),
                "updated_at": pa.array([r[3] for r in rows], TS),
                "loaded_at": pa.array([T0] * len(rows), TS),
            }
        )

    def load(data):
        with engine.begin() as conn:
            staged = stage_arrow(conn, "stage_fct_order_items", data, f"{schema}.fct_order_items")
            upsert(conn, schema, "fct_order_items", staged, ["order_id", "line_no"], data.column_names)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"select order_id, line_no, quantity, line_amount from {schema}.fct_order_items")
            )
            return sorted(tuple(r) for r in rows)

    assert load(items((10, 1, 1, T0), (10, 2, 2, T0), (11, 1, 3, T0))) == [
        (10, 1, 1, Decimal("2.50")), (10, 2, 2, Decimal("5.00")), (11, 1, 3, Decimal("7.50")),
    ]  # fmt: skip
    assert load(items((10, 2, 4, T0 + HOUR), (11, 1, 9, T0 - HOUR), (11, 2, 1, T0))) == [
        (10, 1, 1, Decimal("2.50")), (10, 2, 4, Decimal("10.00")), (11, 1, 3, Decimal("7.50")),
        (11, 2, 1, Decimal("2.50")),
    ]  # fmt: skip


def test_replace_where_replaces_only_matching_rows(engine, schema):
    d1, d2, d3 = date(2026, 9, 1), date(2026, 9, 2), date(2026, 9, 3)
    with engine.begin() as conn:
        replace_event_dates(
            conn, schema,
            events((d1, 1, "page_view", 5), (d2, 1, "page_view", 6), (d2, 2, "search", 7), (d3, 3, "favorite", 8)),
            [d1, d2, d3],
        )  # fmt: skip
    with engine.begin() as conn:
        # d2 recomputed: one row changed, one gone, one new; d1 and d3 untouched.
        replace_event_dates(conn, schema, events((d2, 1, "page_view", 60), (d2, 4, "add_to_cart", 1)), [d2])
    expected = {
        (d1, 1, "page_view"): 5,
        (d2, 1, "page_view"): 60,
        (d2, 4, "add_to_cart"): 1,
        (d3, 3, "favorite"): 8,
    }
    with engine.connect() as conn:
        assert event_state(conn, schema) == expected
    with engine.begin() as conn:  # re-run: same result, no duplicates
        replace_event_dates(conn, schema, events((d2, 1, "page_view", 60), (d2, 4, "add_to_cart", 1)), [d2])
    with engine.connect() as conn:
        assert event_state(conn, schema) == expected


def suppressions(*rows: tuple, loaded_at: datetime) -> pa.Table:
    """dim_suppression rows from (user_id, channel, reason, suppressed_at)."""
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "channel": pa.array([r[1] for r in rows], pa.string()),
            "reason": pa.array([r[2] for r in rows], pa.string()),
            "suppressed_at": pa.array([r[3] for r in rows], TS),
            "first_loaded_at": pa.array([loaded_at] * len(rows), TS),
        }
    )


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_insert_new_keeps_every_published_row_as_first_recorded(dialect, make_config, request, monkeypatch):
    """A suppression published on D stays as it is when D+1 brings the same key with another
    reason, and stays when D+1 does not bring it at all; re-running a date changes nothing."""
    import jobs.platform.ops
    from jobs.platform.publish import Output, publish

    warehouse = {}
    if dialect == "postgresql":
        warehouse = {"url": request.getfixturevalue("postgres_url"), "schema": request.getfixturevalue("pg_schema")}
    monkeypatch.setattr(jobs.platform.ops, "_ENGINES", {})  # a fresh engine for this warehouse
    config = make_config(warehouse=warehouse)
    schema, d1, d2 = config.warehouse.schema_name, date(2026, 9, 1), date(2026, 9, 2)

    def night(day: date, data: pa.Table) -> list[tuple]:
        publish(
            config, day, "load", "warehouse", [Output("dim_suppression", data, "insert_new", ["user_id", "channel"])]
        )
        with jobs.platform.ops.warehouse_engine(config).connect() as conn:
            rows = conn.execute(sa.text(f"select * from {schema}.dim_suppression order by user_id, channel"))
            return [(r[0], r[1], r[2], r[3].astimezone(UTC), r[4].astimezone(UTC)) for r in rows]

    first = night(d1, suppressions((1, "email", "unsubscribed", T0), (2, "sms", "bounced", T0), loaded_at=T0))
    expected = [
        (1, "email", "unsubscribed", T0, T0),  # stays as first recorded
        (2, "sms", "bounced", T0, T0),  # missing from D+1: stays
        (3, "all", "complained", T0 + HOUR, T0 + 24 * HOUR),  # new key: inserted
    ]
    later = suppressions(
        (1, "email", "complained", T0 + HOUR), (3, "all", "complained", T0 + HOUR), loaded_at=T0 + 24 * HOUR
    )
    assert first == expected[:2]
    assert night(d2, later) == expected
    assert night(d2, later) == expected  # a re-run of D+1
    assert night(d1, suppressions((2, "sms", "unsubscribed", T0), loaded_at=T0 + 48 * HOUR)) == expected  # of D
    assert night(d2, suppressions(loaded_at=T0)) == expected  # an empty day deletes nothing


def _publish_v1(engine: sa.Engine, schema: str) -> None:
    with engine.begin() as conn:
        load_products(conn, schema, products((1, "one v1", T0), (2, "two v1", T0)))
        replace_event_dates(conn, schema, events((date(2026, 9, 1), 1, "search", 1), (date(2026, 9, 2), 1, "search", 2)), [date(2026, 9, 1), date(2026, 9, 2)])  # fmt: skip


def _load_v2(conn: sa.Connection, schema: str) -> None:
    load_products(conn, schema, products((1, "one v2", T0 + HOUR), (3, "three v2", T0 + HOUR)))
    replace_event_dates(conn, schema, events((date(2026, 9, 2), 9, "favorite", 9)), [date(2026, 9, 2)])
    record_run(conn, schema, date(2026, 9, 2), "load", "warehouse", "success", {"input": 3, "output": 3})


def test_readers_see_the_old_complete_version_until_the_load_commits(engine, schema, postgres_url):
    _publish_v1(engine, schema)
    reader_engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with reader_engine.connect() as reader:
            reader.exec_driver_sql("set statement_timeout = '10s'")  # a blocked read fails, not hangs
            old = snapshot(reader, schema, ["dim_product", "fct_events_daily", "ops_pipeline_runs"])
            reader.rollback()
            assert len(old["dim_product"]) == 2 and len(old["fct_events_daily"]) == 2

            writer = engine.connect()
            tx = writer.begin()
            try:
                _load_v2(writer, schema)
                # The loading transaction sees its own new version ...
                assert set(product_state(writer, schema)) == {1, 2, 3}
                # ... while another connection still sees the old complete one, without waiting.
                during = snapshot(reader, schema, ["dim_product", "fct_events_daily", "ops_pipeline_runs"])
                reader.rollback()
                assert during == old
                tx.commit()
            finally:
                if tx.is_active:
                    tx.rollback()
                writer.close()

            new = snapshot(reader, schema, ["dim_product", "fct_events_daily", "ops_pipeline_runs"])
            reader.rollback()
    finally:
        reader_engine.dispose()
    assert [r[:2] for r in new["dim_product"]] == [(1, "one v2"), (2, "two v1"), (3, "three v2")]
    assert [(r[0], r[2], r[3]) for r in new["fct_events_daily"]] == [
        (date(2026, 9, 1), "search", 1), (date(2026, 9, 2), "favorite", 9),
    ]  # fmt: skip
    assert len(new["ops_pipeline_runs"]) == 1


def test_a_load_failing_half_way_changes_nothing(engine, schema):
    _publish_v1(engine, schema)
    with engine.connect() as conn:
        before = snapshot(conn, schema)

    # 1. The job dies after staging and merging, before the commit.
    with pytest.raises(RuntimeError, match="died after staging"):
        with engine.begin() as conn:
            _load_v2(conn, schema)
            raise RuntimeError("died after staging")
    with engine.connect() as conn:
        assert snapshot(conn, schema) == before

    # 2. The database rejects a later table of the same load (NOT NULL): earlier ones roll back.
    bad_orders = pa.table(
        {
            "order_id": pa.array([1], pa.int64()),
            "user_id": pa.array([1], pa.int64()),
            "order_date": pa.array([date(2026, 9, 2)], pa.date32()),
            "created_at": pa.array([T0], TS),
            "status": pa.array([None], pa.string()),
            "updated_at": pa.array([T0], TS),
        }
    )
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            _load_v2(conn, schema)
            staged = stage_arrow(conn, "stage_fct_orders", bad_orders, f"{schema}.fct_orders")
            upsert(conn, schema, "fct_orders", staged, ["order_id"], bad_orders.column_names)
    with engine.connect() as conn:
        assert snapshot(conn, schema) == before

    # The pool's connection is clean afterwards: the same load now goes through.
    with engine.begin() as conn:
        _load_v2(conn, schema)
    with engine.connect() as conn:
        assert set(product_state(conn, schema)) == {1, 2, 3}


def test_a_concurrent_load_waits_and_neither_duplicates_nor_regresses(engine, schema):
    """Two loads of overlapping keys at once: the second waits for the first's row locks."""
    _publish_v1(engine, schema)
    first = engine.connect()
    tx = first.begin()
    load_products(first, schema, products((1, "one v3", T0 + 3 * HOUR), (4, "four", T0)))
    errors: list[BaseException] = []

    def second_load():
        try:
            with engine.begin() as conn:
                load_products(conn, schema, products((1, "one v2", T0 + HOUR), (4, "four", T0)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=second_load)
    thread.start()
    thread.join(timeout=1)
    assert thread.is_alive(), "the second load should wait for the first one's row locks"
    tx.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    with engine.connect() as conn:
        state = product_state(conn, schema)
    assert {k: v[0] for k, v in state.items()} == {1: "one v3", 2: "two v1", 4: "four"}


# --------------------------------------------------------------------------------------------
# Values travel as data, never as SQL
# --------------------------------------------------------------------------------------------


def test_values_with_quotes_and_sql_metacharacters_round_trip(engine, schema):
    rows = [(i + 1, text, T0, text, None if i % 3 == 0 else text) for i, text in enumerate(NASTY)]
    with engine.begin() as conn:
        load_products(conn, schema, products(*rows))
    with engine.connect() as conn:
        stored = product_state(conn, schema)
        assert conn.execute(sa.text(f"select count(*) from {schema}.dim_product")).scalar_one() == len(NASTY)
    assert stored == {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
    assert stored[6][0] == "" and stored[1][3] is None, "empty string and NULL stay distinct through COPY"

    # Bind parameters: replace_where's predicate, ops records, insert_rows.
    day = date(2026, 9, 1)
    with engine.begin() as conn:
        replace_event_dates(conn, schema, events(*[(day, 1, text, i) for i, text in enumerate(NASTY)]), [day])
    with engine.begin() as conn:
        staged = stage_arrow(
            conn,
            "stage_fct_events_daily",
            events((day, 1, NASTY[1], 100)),
            f"{schema}.fct_events_daily",
        )
        replace_where(
            conn, schema, "fct_events_daily", staged, list(EVENT_COLUMNS),
            "event_type = :t and event_date = :d", {"t": NASTY[1], "d": day},
        )  # fmt: skip
        record_run(conn, schema, day, "clean", NASTY[0], "success", {"input": 1}, {"note": list(NASTY)})
        insert_rows(
            conn, schema, "ops_quarantine_daily",
            [{"logical_date": day, "dataset": text, "reason": text + "!", "row_count": 1, "recorded_at": T0} for text in NASTY],
        )  # fmt: skip
    with engine.connect() as conn:
        counts = event_state(conn, schema)
        run = conn.execute(sa.text(f"select dataset, details_json from {schema}.ops_pipeline_runs")).one()
        quarantine = conn.execute(sa.text(f"select dataset, reason from {schema}.ops_quarantine_daily")).all()
    assert counts == {(day, 1, text): (100 if text == NASTY[1] else i) for i, text in enumerate(NASTY)}
    assert run[0] == NASTY[0] and list(NASTY) == json.loads(run[1])["note"]
    assert sorted(quarantine) == sorted((text, text + "!") for text in NASTY)

    # Identifiers are never taken from data: anything that is not a plain name is refused.
    with engine.begin() as conn, pytest.raises(ValueError, match="not a safe SQL identifier"):
        stage_arrow(conn, "stage; drop table x", products((1, "x", T0)), f"{schema}.dim_product")
    with engine.begin() as conn, pytest.raises(ValueError, match="not a safe SQL identifier"):
        upsert(
            conn,
            schema,
            "dim_product",
            "stage_dim_product",
            ["product_id"],
            ["product_id", "name) --"],
        )
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"select count(*) from {schema}.dim_product")).scalar_one() == len(NASTY)


# --------------------------------------------------------------------------------------------
# A whole night of the pipeline publishing to PostgreSQL
# --------------------------------------------------------------------------------------------


def _drop_role(engine: sa.Engine, role: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"drop owned by {role}")
        conn.exec_driver_sql(f"drop role {role}")
    engine.dispose()


def test_pipeline_publishes_a_simulated_shop_to_postgres_idempotently(
    spark, make_config, postgres_url, pg_schema, monkeypatch, request
):
    """The nightly stages, then the customer marts (segments, scores, tags and profile)."""
    import jobs.platform.ops
    from jobs.ingest.pii import hash_key, keyed_hash, normalise_email, normalise_phone
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import run_pipeline
    from jobs.simulator import SimulationSpec, generate, materialize

    # The process's engines (schema ensured on first use) are cached; start from a clean slate.
    monkeypatch.setattr(jobs.platform.ops, "_ENGINES", {})
    role = f"bi_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"create role {role} login")
    request.addfinalizer(lambda: _drop_role(admin, role))
    config = make_config(
        warehouse={"url": postgres_url, "schema": pg_schema, "bi_role": role},
        clean={"late_window_days": 30},
        validation={"build_data_docs": False},  # HTML Data Docs cost ~15 s and are not under test here
    )
    spec = SimulationSpec(days=6, users=150, products=60, timezone=config.shop.timezone)
    last_day = spec.start_date + timedelta(days=spec.days - 1)
    materialize(
        generate(spec),
        landing_storage(config),
        config.source.url,
        last_day,
        Path(config.storage.state_root) / "truth",
    )

    stages = ["nightly", "customers"]
    run_pipeline(config, last_day, stages)

    engine = sa.create_engine(postgres_url)
    source = sa.create_engine(config.source.url)
    try:
        with engine.connect() as conn:
            clean = dict(
                conn.execute(
                    sa.text(
                        f"select dataset, rows_out from {pg_schema}.ops_pipeline_runs "
                        "where stage = 'clean' and status = 'success' and logical_date = :d"
                    ),
                    {"d": last_day},
                ).all()
            )
            published = {
                table: conn.execute(sa.text(f"select count(*) from {pg_schema}.{table}")).scalar_one()
                for table in schema_docs()
            }
            load_status = conn.execute(
                sa.text(f"select status from {pg_schema}.ops_pipeline_runs where stage = 'load' and logical_date = :d"),
                {"d": last_day},
            ).scalar_one()
            users = conn.execute(
                sa.text(f"select user_id, email_hash, phone_hash, has_email, has_phone from {pg_schema}.dim_user")
            ).all()
            text_columns = conn.execute(
                sa.text(
                    "select table_name, column_name from information_schema.columns where table_schema = :s "
                    "and data_type in ('character varying', 'text', 'character') order by 1, 2"
                ),
                {"s": pg_schema},
            ).all()
            text_values = {
                (table, column): conn.exec_driver_sql(
                    f"select {column} from {pg_schema}.{table} where {column} is not null"
                )
                .scalars()
                .all()
                for table, column in text_columns
            }
            first = snapshot(conn, pg_schema, skip=RUN_TIME_COLUMNS)
        with source.connect() as conn:
            source_users = conn.execute(sa.text("select user_id, email, phone from users")).all()
    finally:
        source.dispose()

    # Everything the clean stage passed is published, once.
    assert load_status == "success"
    assert {"users", "products", "orders", "order_items", "suppressions"} <= set(clean)
    assert published["dim_user"] == clean["users"] > 0
    assert published["dim_product"] == clean["products"] > 0
    assert published["fct_orders"] == clean["orders"] > 0
    assert published["fct_order_items"] == clean["order_items"] > 0
    assert published["fct_events_daily"] > 0
    assert published["dim_suppression"] == clean["suppressions"] > 0

    # PII: keyed hashes of the normalised values; no clear email or phone anywhere.
    key = hash_key(config)
    by_id = {row.user_id: row for row in source_users}
    hex64 = re.compile(r"^[0-9a-f]{64}$")
    assert sum(1 for u in users if u.email_hash) > 0
    for user in users:
        assert user.has_email == (user.email_hash is not None)
        assert user.has_phone == (user.phone_hash is not None)
        for value in (user.email_hash, user.phone_hash):
            assert value is None or hex64.match(value), f"user {user.user_id}: {value!r} is not a 64-hex hash"
        assert user.email_hash == keyed_hash(key, normalise_email(by_id[user.user_id].email))
        assert user.phone_hash == keyed_hash(key, normalise_phone(by_id[user.user_id].phone))
    clear = {
        v
        for _, email, phone in source_users
        for v in (email, normalise_email(email), phone, normalise_phone(phone))
        if v
    }
    assert any("@" in v for v in clear), "the simulated source should have emails"
    assert ("dim_user", "email_hash") in text_values
    leaks = sorted(
        f"{table}.{column}: {needle}"
        for (table, column), values in text_values.items()
        for needle in clear
        if needle.lower() in "\n".join(values).lower()
    )
    assert leaks == [], f"clear PII in the warehouse: {leaks[:5]}"

    # Customer marts: every registered user profiled, tags in both shapes, BI reads them.
    assert published["mart_user_profile"] == published["dim_user"] == published["mart_user_lifecycle"]
    assert published["mart_user_rfm"] > 0 and published["mart_customer_scores"] == published["mart_user_rfm"]
    assert published["mart_user_tags"] > published["dim_user"]
    bi = sa.create_engine(sa.engine.make_url(postgres_url).set(username=role, password=None))
    try:
        with bi.connect() as conn:
            wide = conn.execute(
                sa.text(f"select count(tag_gender), count(tag_spending_power) from {pg_schema}.v_user_profile_latest")
            ).one()
            long = conn.execute(
                sa.text(f"select count(distinct user_id) from {pg_schema}.v_user_tags_latest where tag = 'gender'")
            ).scalar_one()
        assert wide[0] == long == published["dim_user"] and wide[1] == published["mart_user_rfm"]
    finally:
        bi.dispose()

    # Re-running the same night leaves the warehouse exactly as it was (dim_suppression with
    # its first_loaded_at: an insert-only row is never rewritten).
    run_pipeline(config, last_day, stages)
    try:
        with engine.connect() as conn:
            second = snapshot(conn, pg_schema, skip=RUN_TIME_COLUMNS)
    finally:
        engine.dispose()
    assert {t: len(rows) for t, rows in second.items()} == {t: len(rows) for t, rows in first.items()}
    for table in first:
        assert second[table] == first[table], f"{table} changed on re-running {last_day}"


def test_the_bi_role_reads_published_tables_but_no_pii_and_no_ops(engine, pg_schema, postgres_url):
    role = f"bi_test_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"create role {role} login")
    try:
        ensure_schema(engine, pg_schema, bi_role=role)
        with engine.begin() as conn:
            load_products(conn, pg_schema, products((1, "Shirt", T0)))
        bi = sa.create_engine(sa.engine.make_url(postgres_url).set(username=role, password=None))
        try:
            with bi.connect() as conn:
                assert conn.execute(sa.text(f"select count(*) from {pg_schema}.dim_product")).scalar() == 1
                assert conn.execute(sa.text(f"select count(user_id) from {pg_schema}.dim_user")).scalar() == 0
                assert conn.execute(sa.text(f"select count(*) from {pg_schema}.v_user_rfm_latest")).scalar() == 0
            for forbidden in (
                f"select email_hash from {pg_schema}.dim_user",
                f"select * from {pg_schema}.dim_user",
                f"select * from {pg_schema}.ops_pipeline_runs",
                f"select * from {pg_schema}.ops_task_metrics",
                f"select * from {pg_schema}.ops_quality_trend",
                f"select * from {pg_schema}.ops_table_freshness",
                f"delete from {pg_schema}.dim_product",
            ):
                with bi.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(forbidden))
        finally:
            bi.dispose()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"drop owned by {role}")
            conn.exec_driver_sql(f"drop role {role}")


def test_a_missing_bi_role_is_a_one_line_config_error(engine, pg_schema):
    with pytest.raises(ConfigError, match="warehouse.bi_role: role 'nobody_here' does not exist"):
        ensure_schema(engine, pg_schema, bi_role="nobody_here")
