"""Incremental extraction of the source tables, pinned down on a tiny hand-made SQLite shop.

The shop is in Asia/Shanghai, so the logical date D ends at 16:00 UTC on D. Timestamps below
are UTC, the way the shop's database stores them.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from jobs.platform.errors import ConfigError, EndpointUnavailableError, SchemaDriftError, TransientError
from jobs.platform.lake import lake_storage, raw_source_prefix, read_json

D1 = date(2026, 10, 1)
D2 = date(2026, 10, 2)
D3 = date(2026, 10, 3)
END_D1 = datetime(2026, 10, 1, 16, 0)  # 2026-10-02 00:00 +08:00
END_D2 = datetime(2026, 10, 2, 16, 0)

# user_id -> updated_at (UTC). Overlap is 60 minutes, so D2 reads (15:00 on Oct 1, END_D2].
USERS = {
    1: datetime(2026, 9, 30, 10, 0),  # long before: D1 only
    2: datetime(2026, 10, 1, 14, 30),  # before the overlap: D1 only
    3: datetime(2026, 10, 1, 15, 0),  # exactly watermark - overlap: excluded from D2
    4: datetime(2026, 10, 1, 15, 30),  # inside the overlap: D1 and D2
    5: END_D1,  # exactly the end of D1: D1 (<=) and D2
    6: datetime(2026, 10, 2, 3, 0),  # D2 only
    7: END_D2,  # exactly the end of D2: D2
    8: datetime(2026, 10, 2, 17, 0),  # after D2: not yet
}


def user(user_id: int, updated_at: datetime) -> dict:
    return {
        "user_id": user_id,
        "signup_at": datetime(2026, 9, 1, 8, 0),
        "gender": "F",
        "birth_year": 1990,
        "region": "East",
        "city": "Shanghai",
        "email": f"u{user_id}@example.com",
        "phone": "+86 138 0000 0000",
        "consent_email": True,
        "consent_sms": False,
        "consent_push": None,
        "updated_at": updated_at,
    }


@pytest.fixture
def shop(make_config):
    """A source DB with the simulator's table layout; users as above, one row elsewhere."""
    from jobs.simulator.source_db import SOURCE_TABLES

    config = make_config(collect={"source_overlap_minutes": 60})
    engine = sa.create_engine(config.source.url)
    with engine.begin() as conn:
        for table, _ in SOURCE_TABLES.values():
            table.create(conn)
        tables = {name: table for name, (table, _) in SOURCE_TABLES.items()}
        conn.execute(tables["users"].insert(), [user(k, v) for k, v in USERS.items()])
        conn.execute(
            tables["products"].insert(),
            [
                {
                    "product_id": 10,
                    "name": "Tea",
                    "category_l1": "Food",
                    "category_l2": "Tea",
                    "brand": "Koi",
                    "price": 19.9,
                    "is_active": True,
                    "updated_at": datetime(2026, 10, 1, 2, 0),
                }
            ],
        )
        conn.execute(
            tables["orders"].insert(),
            [
                {
                    "order_id": 100,
                    "user_id": 6,
                    "status": "paid",
                    "created_at": datetime(2026, 10, 2, 3, 0),
                    "paid_at": datetime(2026, 10, 2, 3, 5),
                    "total_amount": 39.8,
                    "discount_amount": 0,
                    "coupon_code": None,
                    "channel": "web",
                    "updated_at": datetime(2026, 10, 2, 3, 5),
                }
            ],
        )
        conn.execute(
            tables["order_items"].insert(),
            [
                {
                    "order_id": 100,
                    "line_no": 1,
                    "product_id": 10,
                    "quantity": 2,
                    "unit_price": 19.9,
                    "updated_at": datetime(2026, 10, 2, 3, 0),
                }
            ],
        )
    engine.dispose()
    return config


def extracted(config, table: str, day: date) -> pa.Table:
    lake = lake_storage(config)
    parts = [i.key for i in lake.list(raw_source_prefix(table, day)) if i.key.endswith(".parquet")]
    assert parts, f"no parquet part for {table} {day}"
    return pa.concat_tables(pq.read_table(io.BytesIO(lake.read_bytes(key))) for key in parts)


def user_ids(config, day: date) -> list[int]:
    return sorted(extracted(config, "users", day).column("user_id").to_pylist())


def watermarks(config) -> list[tuple]:
    from jobs.platform.ops import warehouse_engine

    engine = warehouse_engine(config)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select table_name, logical_date, lower_bound_at, upper_bound_at, row_count, is_full_reload "
                f"from {config.warehouse.schema_name}.ops_source_watermarks order by table_name, logical_date"
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def test_first_date_extracts_everything_up_to_its_end(shop):
    from jobs.ingest.collect import collect_sources

    summary = collect_sources(shop, D1)
    assert user_ids(shop, D1) == [1, 2, 3, 4, 5]
    assert summary["tables"]["users"] == {"rows": 5, "lower_bound": None}
    manifest = read_json(lake_storage(shop), raw_source_prefix("users", D1) + "_manifest.json")
    assert manifest["full_reload"] is True
    assert manifest["row_count"] == 5
    assert datetime.fromisoformat(manifest["upper_bound"]) == END_D1.replace(tzinfo=UTC)


def test_next_date_extracts_only_rows_changed_since_watermark_minus_overlap(shop):
    from jobs.ingest.collect import collect_sources

    collect_sources(shop, D1)
    summary = collect_sources(shop, D2)
    assert user_ids(shop, D2) == [4, 5, 6, 7]
    assert datetime.fromisoformat(summary["tables"]["users"]["lower_bound"]) == datetime(2026, 10, 1, 15, 0, tzinfo=UTC)
    assert extracted(shop, "orders", D2).column("order_id").to_pylist() == [100]
    # product 10 changed before the overlap, but D2's order line points at it: it comes along
    assert extracted(shop, "products", D2).column("product_id").to_pylist() == [10]


def test_rows_that_changed_rows_point_at_come_along_at_their_current_version(shop):
    """A backfill runs after parents changed again: an order line of D arrives with its order,
    the order with its customer, even when those were updated after D."""
    from jobs.ingest.collect import collect_sources

    with sa.create_engine(shop.source.url).begin() as conn:  # order 100's customer changed after D2
        conn.exec_driver_sql("update orders set user_id = 8 where order_id = 100")
    collect_sources(shop, D1)
    collect_sources(shop, D2)
    assert user_ids(shop, D2) == [4, 5, 6, 7, 8]  # 8 was updated after D2: here for its order


def test_a_suppression_is_extracted_in_its_window_and_brings_its_customer(shop):
    from jobs.ingest.collect import collect_sources

    at = datetime(2026, 10, 2, 5, 0)
    with sa.create_engine(shop.source.url).begin() as conn:
        conn.exec_driver_sql(
            "insert into suppressions (user_id, channel, reason, suppressed_at, updated_at) "
            "values (2, 'email', 'unsubscribed', :at, :at)",
            {"at": at},
        )
    summary = collect_sources(shop, D1)
    assert summary["tables"]["suppressions"]["rows"] == 0
    collect_sources(shop, D2)
    rows = extracted(shop, "suppressions", D2).to_pylist()
    assert [(r["user_id"], r["channel"], r["reason"], r["suppressed_at"]) for r in rows] == [
        (2, "email", "unsubscribed", at)
    ]
    assert user_ids(shop, D2) == [2, 4, 5, 6, 7]  # 2 changed before D2's window: here for its suppression


def test_watermark_rows_are_recorded_in_the_warehouse(shop):
    from jobs.ingest.collect import collect_sources

    collect_sources(shop, D1)
    collect_sources(shop, D2)
    rows = {(r[0], r[1]): r for r in watermarks(shop)}
    tables = ("users", "products", "orders", "order_items", "suppressions")
    assert set(rows) == {(t, d) for t in tables for d in (D1, D2)}
    _, _, lower, upper, count, full = rows[("users", D1)]
    assert (lower, utc(upper), count, full) == (None, END_D1.replace(tzinfo=UTC), 5, True)
    _, _, lower, upper, count, full = rows[("users", D2)]
    assert utc(lower) == datetime(2026, 10, 1, 15, 0, tzinfo=UTC)
    assert (utc(upper), count, full) == (END_D2.replace(tzinfo=UTC), 4, False)


def test_rerunning_a_date_extracts_the_same_rows_and_keeps_one_watermark(shop):
    from jobs.ingest.collect import collect_sources

    collect_sources(shop, D1)
    collect_sources(shop, D2)
    first = extracted(shop, "users", D2)
    collect_sources(shop, D2)
    assert extracted(shop, "users", D2).equals(first)
    # D1 re-run after D2 still sees no earlier watermark: a full extract again
    collect_sources(shop, D1)
    assert user_ids(shop, D1) == [1, 2, 3, 4, 5]
    keys = [(r[0], r[1]) for r in watermarks(shop)]
    assert len(keys) == len(set(keys)) == 10  # 5 tables x 2 dates


def test_full_reload_extracts_everything_up_to_the_date(shop):
    from jobs.ingest.collect import collect_sources

    collect_sources(shop, D1)
    summary = collect_sources(shop, D2, full_reload=True)
    assert user_ids(shop, D2) == [1, 2, 3, 4, 5, 6, 7]
    assert summary["tables"]["users"]["lower_bound"] is None
    assert extracted(shop, "products", D2).num_rows == 1
    rows = {(r[0], r[1]): r for r in watermarks(shop)}
    assert rows[("users", D2)][5] is True


def test_full_reload_from_config_is_honoured(shop):
    from jobs.ingest.collect import collect_sources

    collect_sources(shop, D1)
    config = shop.model_copy(update={"collect": shop.collect.model_copy(update={"full_reload": True})})
    collect_sources(config, D2)
    assert user_ids(shop, D2) == [1, 2, 3, 4, 5, 6, 7]


def test_a_quiet_day_writes_an_empty_part_with_the_table_schema(shop):
    from jobs.ingest.collect import collect_sources

    collect_sources(shop, D1)
    collect_sources(shop, D2)
    collect_sources(shop, D3)
    users = extracted(shop, "users", D3)
    assert user_ids(shop, D3) == [7, 8]  # END_D2 is inside D3's overlap
    items = extracted(shop, "order_items", D3)
    assert items.num_rows == 0
    assert items.schema.field("updated_at").type == pa.timestamp("us")
    assert items.schema.field("unit_price").type == pa.decimal128(12, 2)
    assert users.schema.field("consent_push").type == pa.bool_()


def test_a_missing_table_is_a_one_line_config_error_naming_the_key(shop):
    from jobs.ingest.collect import collect_sources

    config = shop.model_copy(update={"source": shop.source.model_copy(update={"tables": ("users", "coupons")})})
    with pytest.raises(ConfigError) as caught:
        collect_sources(config, D1)
    message = str(caught.value)
    assert "source.tables" in message and "'coupons'" in message
    assert "\n" not in message


def test_an_unreachable_sqlite_source_is_a_one_line_transient_error_naming_the_key(make_config, tmp_path):
    from jobs.ingest.collect import collect_sources

    config = make_config(source={"url": f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'shop.db'}"})
    with pytest.raises(TransientError) as caught:  # Airflow retries it: the disk may come back
        collect_sources(config, D1)
    message = str(caught.value)
    assert message.startswith("source.url:")
    assert "\n" not in message


def test_an_unreachable_server_source_is_one_line_and_hides_the_password(make_config):
    pytest.importorskip("psycopg")
    from jobs.ingest.collect import collect_sources

    config = make_config(source={"url": "postgresql+psycopg://shop:s3cret-pw@127.0.0.1:9/shop?connect_timeout=2"})
    with pytest.raises(EndpointUnavailableError) as caught:  # a database outage is retried, not a config error
        collect_sources(config, D1)
    message = str(caught.value)
    assert message.startswith("source.url:")
    assert "\n" not in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    ("table", "ddl", "column"),
    [
        ("orders", "alter table orders rename column total_amount to amount_total", "total_amount"),
        ("users", "alter table users drop column updated_at", "updated_at"),
    ],
)
def test_schema_drift_in_a_source_table_is_one_line_naming_table_and_column(shop, table, ddl, column):
    from jobs.ingest.collect import collect_sources

    with sa.create_engine(shop.source.url).begin() as conn:
        conn.exec_driver_sql(ddl)
    with pytest.raises(SchemaDriftError) as caught:
        collect_sources(shop, D1)
    message = str(caught.value)
    assert message.startswith(f"source table {table}: column {column!r} is missing") and "\n" not in message


def test_a_failed_re_extract_leaves_the_previous_extract_whole(shop, monkeypatch):
    from jobs.ingest import collect
    from jobs.platform.lake import lake_storage, raw_source_prefix

    collect.collect_sources(shop, D1)
    lake = lake_storage(shop)
    prefix = raw_source_prefix("users", D1)
    before = {info.key: lake.read_bytes(info.key) for info in lake.list(prefix)}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(collect, "_extract_to_parquet", broken)
    with pytest.raises(OSError):
        collect.collect_sources(shop, D1)
    assert {info.key: lake.read_bytes(info.key) for info in lake.list(prefix)} == before
    monkeypatch.undo()
    collect.collect_sources(shop, D1)  # a successful retry leaves only its own parts
    manifest = json.loads(lake.read_bytes(prefix + "_manifest.json"))
    assert sorted(info.key[len(prefix) :] for info in lake.list(prefix)) == sorted(
        ["_manifest.json", *manifest["parts"]]
    )


def test_an_extract_whose_parts_hold_fewer_rows_than_were_read_fails_and_keeps_the_previous_one(shop, monkeypatch):
    from jobs.ingest import collect
    from jobs.platform.errors import PublishMismatchError

    collect.collect_sources(shop, D1)
    lake = lake_storage(shop)
    prefix = raw_source_prefix("users", D1)
    before = {info.key: lake.read_bytes(info.key) for info in lake.list(prefix)}
    rows = extracted(shop, "users", D1).num_rows
    write_table = collect.pq.write_table

    def lossy(table, where, **kwargs):  # a writer that drops the last row of every part
        return write_table(table.slice(0, max(table.num_rows - 1, 0)), where, **kwargs)

    monkeypatch.setattr(collect.pq, "write_table", lossy)
    with pytest.raises(PublishMismatchError) as caught:
        collect.collect_sources(shop, D1)
    assert str(caught.value) == (
        f"{lake.uri(prefix)}: extracted {rows:,} rows but its parts hold {rows - 1:,}; the earlier extract is kept"
    )
    assert {info.key: lake.read_bytes(info.key) for info in lake.list(prefix)} == before
