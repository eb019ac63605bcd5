"""The shop's daily KPIs (jobs/activation/kpis.py, sql/marts/mart_kpi_daily.sql, v_kpi_daily).

* On a hand-made warehouse (DuckDB and PostgreSQL): every KPI of a date equals the value
  computed by hand from a few orders, events and traffic rows, and the view's day-over-day
  change compares with the previous date (null against 0 or a missing date).
* On the shared small shop: the row for its last date equals independent recomputations in
  pandas from the warehouse tables and the lake's clean events, the KPI row's sessions are the
  sum of the traffic rows, every rate is a share, the view's changes match the earlier rows,
  re-building a date replaces its rows, a date before the shop's history is a row of zeros with
  null rates, and a date no published batch covers is refused.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from jobs.activation.kpis import TRAFFIC_COLUMNS, build_kpis, publish_kpis
from jobs.platform.errors import UpstreamNotReadyError
from jobs.platform.interface import PAID_STATUSES, PURCHASE_STATUSES
from jobs.platform.ops import warehouse_engine
from jobs.platform.warehouse import insert_rows
from tests.integration.conftest import SMALL_SHOP

pytestmark = pytest.mark.integration

D = date(2026, 3, 31)
T0 = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)
RATES = (
    "coupon_use_rate", "repeat_purchase_rate", "retention_rate_30d", "churn_rate_30d", "refund_rate_30d",
    "cart_abandonment_rate", "session_conversion_rate", "return_rate_30d",
)  # fmt: skip
FUNNEL = ("session_count", "product_view_session_count", "cart_session_count", "checkout_session_count")


# --------------------------------------------------------------------------------------------
# Hand-made warehouse
# --------------------------------------------------------------------------------------------


def order(order_id: int, user_id: int, day: date, status: str, amount: str, coupon: str | None = None) -> dict:
    created = datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC)
    total = Decimal(amount)
    return {
        "order_id": order_id, "user_id": user_id, "order_date": day, "created_at": created,
        "paid_at": created if status in PAID_STATUSES else None, "status": status,
        "is_paid": status in PAID_STATUSES, "is_cancelled": status == "cancelled",
        "is_refunded": status == "refunded", "is_completed": status == "completed",
        "total_amount": total, "discount_amount": Decimal("0.00"), "gross_amount": total,
        "has_coupon": coupon is not None, "coupon_code": coupon, "channel": "web",
        "updated_at": created, "loaded_at": T0,
    }  # fmt: skip


def event(day: date, user_id: int, event_type: str) -> dict:
    at = datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC)
    return {
        "event_date": day, "user_id": user_id, "event_type": event_type, "event_count": 1, "session_count": 1,
        "product_count": 0, "first_event_at": at, "last_event_at": at, "loaded_at": T0,
    }  # fmt: skip


def traffic(day: date, *rows: tuple) -> pa.Table:
    """Traffic rows from (utm_source, sessions, product view, cart, checkout, abandoned cart sessions)."""
    columns = ("session_count", "product_view_session_count", "cart_session_count", "checkout_session_count")
    data = {
        "kpi_date": pa.array([day] * len(rows), pa.date32()),
        "utm_source": pa.array([r[0] for r in rows], pa.string()),
        **{name: pa.array([r[i + 1] for r in rows], pa.int64()) for i, name in enumerate(columns)},
        "visitor_count": pa.array([r[1] for r in rows], pa.int64()),
        "event_count": pa.array([10 * r[1] for r in rows], pa.int64()),
        "abandoned_cart_session_count": pa.array([r[5] for r in rows], pa.int64()),
        "loaded_at": pa.array([T0] * len(rows), pa.timestamp("us", tz="UTC")),
    }
    return pa.table({name: data[name] for name in TRAFFIC_COLUMNS})


# D = 2026-03-31. The previous 30 days are (D-60, D-30], the current 30 days (D-30, D].
ORDERS = [
    order(1, 1, D - timedelta(days=45), "completed", "100.00"),  # user 1: previous period, and again on D
    order(2, 1, D, "paid", "50.00", coupon="SAVE10"),
    order(3, 2, D, "completed", "30.00"),  # user 2: first purchase ever on D
    order(4, 2, D, "cancelled", "20.00"),  # placed on D, not a purchase
    order(5, 3, D - timedelta(days=40), "shipped", "80.00"),  # user 3: previous period only (churned)
    order(6, 4, D - timedelta(days=3), "refunded", "60.00"),  # user 4: a refund in the current period
    order(7, 4, D - timedelta(days=10), "shipped", "40.00"),
    order(8, 5, D - timedelta(days=70), "completed", "10.00"),  # user 5: bought long ago, and on D
    order(9, 5, D, "paid", "20.00"),
    order(10, 6, D + timedelta(days=1), "paid", "999.00"),  # after D: ignored
]
EVENTS = [
    event(D, 1, "page_view"),
    event(D, 1, "add_to_cart"),
    event(D, 6, "page_view"),
    event(D - timedelta(days=1), 7, "page_view"),
]
EXPECTED = {
    "net_sales_amount": Decimal("100.00"),  # 50 + 30 + 20
    "order_count": 3,
    "paying_customer_count": 3,
    "avg_order_amount": Decimal("33.33"),
    "coupon_order_count": 1,
    "coupon_use_rate": 1 / 3,
    "new_customer_count": 1,
    "returning_customer_count": 2,
    "repeat_purchase_rate": 2 / 3,
    "active_customer_count": 4,  # events on D: users 1 and 6; purchases on D: users 1, 2 and 5
    "retention_base_customer_count": 2,  # users 1 and 3
    "retained_customer_count": 1,
    "retention_rate_30d": 0.5,
    "churn_rate_30d": 0.5,
    "paid_order_count_30d": 5,  # orders 2, 3, 6, 7, 9
    "refunded_order_count_30d": 1,
    "refund_rate_30d": 0.2,
    "session_count": 10,
    "product_view_session_count": 6,
    "cart_session_count": 3,
    "checkout_session_count": 2,
    "placed_order_count": 4,
    "abandoned_cart_session_count": 1,
    "cart_abandonment_rate": 1 / 3,
    "session_conversion_rate": 0.3,
}


@pytest.fixture(params=["duckdb", "postgresql"])
def hand_made(request, make_config):
    """A config whose warehouse (DuckDB, or a fresh PostgreSQL schema) holds ORDERS and EVENTS."""
    if request.param == "duckdb":
        config = make_config()
    else:
        url, schema = request.getfixturevalue("postgres_url"), request.getfixturevalue("pg_schema")
        config = make_config(warehouse={"url": url, "schema": schema})
    schema = config.warehouse.schema_name
    with warehouse_engine(config).begin() as conn:
        insert_rows(conn, schema, "fct_orders", ORDERS)
        insert_rows(conn, schema, "fct_events_daily", EVENTS)
    return config


def kpi_rows(config) -> dict[date, dict]:
    schema = config.warehouse.schema_name
    with warehouse_engine(config).connect() as conn:
        rows = conn.execute(sa.text(f"select * from {schema}.mart_kpi_daily order by kpi_date")).mappings().all()
    return {row["kpi_date"]: dict(row) for row in rows}


def test_every_kpi_of_a_hand_made_date_equals_the_hand_computed_value(hand_made):
    day_traffic = traffic(D, ("google", 6, 4, 2, 1, 1), ("(none)", 4, 2, 1, 1, 0))
    publish_kpis(hand_made, D, day_traffic, T0)
    publish_kpis(hand_made, D, day_traffic, T0)  # again: replaces, never duplicates

    rows = kpi_rows(hand_made)
    assert list(rows) == [D]
    row = rows[D]
    for name, expected in EXPECTED.items():
        assert row[name] == pytest.approx(expected), name
    schema = hand_made.warehouse.schema_name
    with warehouse_engine(hand_made).connect() as conn:
        sources = conn.execute(sa.text(f"select utm_source from {schema}.mart_traffic_daily order by 1")).scalars()
        assert sources.all() == ["(none)", "google"]


def real_order(order_id, user_id, day, amount, order_type="sale", original=None, status="completed") -> dict:
    row = order(order_id, user_id, day, status, amount)
    return {**row, "is_guest": user_id is None, "order_type": order_type, "original_order_id": original}


# A real shop's date: guests, credit notes (one cancelled), and no behaviour data at all
REAL_ORDERS = [
    real_order(1, 1, D - timedelta(days=5), "200.00"),
    real_order(2, None, D, "25.00"),  # a guest's purchase: in sales and orders, not a paying customer
    real_order(3, 2, D, "75.00"),
    real_order(4, 1, D, "-50.00", order_type="return", original=1),  # a credit note for an earlier sale
    real_order(5, 2, D, "-75.00", order_type="return", status="cancelled"),  # cancelled: reverses nothing
    real_order(6, None, D - timedelta(days=2), "-25.00", order_type="return"),  # a guest's, unlinked
]


def test_guests_and_credit_notes_make_net_sales_and_buyers_are_active_without_events(make_config):
    config = make_config()
    with warehouse_engine(config).begin() as conn:
        insert_rows(conn, config.warehouse.schema_name, "fct_orders", REAL_ORDERS)
    publish_kpis(config, D, traffic(D), T0)
    row = kpi_rows(config)[D]
    assert row["net_sales_amount"] == Decimal("50.00")  # 25 + 75 - 50
    assert (row["order_count"], row["guest_order_count"], row["paying_customer_count"]) == (2, 1, 1)
    assert row["avg_order_amount"] == Decimal("50.00")  # sales before returns / orders
    assert (row["returned_amount"], row["return_count"]) == (Decimal("50.00"), 1)
    assert row["returned_amount_30d"] == Decimal("75.00")
    assert row["return_rate_30d"] == pytest.approx(75 / 300)
    assert row["active_customer_count"] == 1  # no events: the paying customer
    assert row["returning_customer_count"] == 0  # user 2's only earlier row is no purchase
    assert row["paid_order_count_30d"] == 3  # sales only


def test_the_view_compares_with_the_previous_date_and_the_same_weekday_a_week_earlier(hand_made):
    publish_kpis(hand_made, D - timedelta(days=1), traffic(D - timedelta(days=1), ("google", 5, 3, 1, 1, 0)), T0)
    publish_kpis(hand_made, D, traffic(D, ("google", 6, 4, 2, 1, 1), ("(none)", 4, 2, 1, 1, 0)), T0)

    schema = hand_made.warehouse.schema_name
    with warehouse_engine(hand_made).connect() as conn:
        view = conn.execute(sa.text(f"select * from {schema}.v_kpi_daily where kpi_date = :d"), {"d": D}).mappings()
        row = view.one()
    assert row["session_count_dod"] == pytest.approx(10 / 5 - 1)
    assert row["cart_abandonment_rate_dod"] is None  # D-1 had no abandoned cart: rate 0
    assert row["order_count_dod"] is None  # no purchase on D-1: 0 orders
    assert row["active_customer_count_dod"] == pytest.approx(4 / 1 - 1)  # D-1: one customer with events
    assert row["session_count_wow"] is None  # no row for D-7
    assert row["net_sales_amount"] == Decimal("100.00")


def test_a_date_without_data_is_a_row_of_zeros_with_null_rates(hand_made):
    empty = date(2025, 1, 1)
    publish_kpis(hand_made, empty, traffic(empty), T0)
    row = kpi_rows(hand_made)[empty]
    for name, value in row.items():
        if name in RATES or name == "avg_order_amount":
            assert value is None, name
        elif name not in ("kpi_date", "loaded_at"):
            assert value == 0, name


# --------------------------------------------------------------------------------------------
# The shared small shop
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(small_shop):
    """KPIs built for the last date, the day before and a week before (last built twice)."""
    last = small_shop.last
    summaries = {}
    for day in (last - timedelta(days=7), last - timedelta(days=1), last, last):
        summaries[day] = build_kpis(small_shop.config, day)
    return small_shop, summaries


@pytest.fixture(scope="module")
def warehouse(shop) -> dict[str, pd.DataFrame]:
    small_shop, _ = shop
    schema = small_shop.config.warehouse.schema_name
    with warehouse_engine(small_shop.config).connect() as conn:

        def read(sql: str) -> pd.DataFrame:
            return pd.read_sql(sa.text(sql.format(schema=schema)), conn)

        return {
            "orders": read("select * from {schema}.fct_orders"),
            "events_daily": read("select * from {schema}.fct_events_daily"),
            "kpis": read("select * from {schema}.mart_kpi_daily"),
            "traffic": read("select * from {schema}.mart_traffic_daily"),
            "view": read("select * from {schema}.v_kpi_daily"),
            "runs": read("select * from {schema}.ops_pipeline_runs where stage in ('load', 'kpis')"),
        }


def kpi_row(warehouse, day: date) -> pd.Series:
    rows = warehouse["kpis"][pd.to_datetime(warehouse["kpis"]["kpi_date"]).dt.date == day]
    assert len(rows) == 1, f"{len(rows)} rows for {day}"
    return rows.iloc[0]


def plain(row: pd.Series) -> dict:
    """A KPI row's values without its load time, nulls as None."""
    return {name: None if pd.isna(value) else value for name, value in row.drop("loaded_at").items()}


def clean_sessions(small_shop, warehouse, day: date) -> pd.DataFrame:
    """One row per session of ``day`` straight from the lake's clean events (pyarrow + pandas):
    published batches, bots left out; its first utm_source and the event types it had."""
    runs = warehouse["runs"]
    published = {
        str(pd.Timestamp(d).date())
        for d in runs[(runs["stage"] == "load") & (runs["status"] == "success")].logical_date
    }
    lake = small_shop.config.storage.lake_root
    events = ds.dataset(f"{lake}/clean/events", format="parquet", partitioning="hive").to_table().to_pandas()
    events = events[
        events["batch_date"].astype(str).isin(published)
        & (events["event_date"].astype(str) == day.isoformat())
        & ~events["is_bot"]
    ]
    first_source = (
        events.dropna(subset=["utm_source"])
        .sort_values(["event_at", "utm_source"])
        .groupby("session_id")["utm_source"]
        .first()
    )
    sessions = events.groupby("session_id")["event_type"].agg(set).to_frame("types")
    sessions["utm_source"] = first_source.reindex(sessions.index).fillna("(none)")
    for step, event_type in (("view", "product_view"), ("cart", "add_to_cart"), ("checkout", "checkout_start")):
        sessions[step] = sessions["types"].map(lambda types, t=event_type: t in types)
    return sessions


def test_the_last_dates_kpis_equal_a_recomputation_from_the_warehouse(shop, warehouse):
    small_shop, _ = shop
    day = small_shop.last
    orders = warehouse["orders"]
    order_dates = pd.to_datetime(orders["order_date"]).dt.date
    bought = orders[orders["status"].isin(PURCHASE_STATUSES)]
    bought_dates = pd.to_datetime(bought["order_date"]).dt.date
    today = bought[bought_dates == day]
    earlier_buyers = set(bought[bought_dates < day]["user_id"])
    payers = set(today["user_id"])
    active = warehouse["events_daily"][pd.to_datetime(warehouse["events_daily"]["event_date"]).dt.date == day]

    row = kpi_row(warehouse, day)
    assert len(today) > 0, "the small shop should sell on its last date"
    assert float(row["net_sales_amount"]) == pytest.approx(float(today["total_amount"].astype(float).sum()), abs=0.005)
    assert row["order_count"] == len(today)
    assert row["paying_customer_count"] == len(payers)
    assert float(row["avg_order_amount"]) == pytest.approx(today["total_amount"].astype(float).mean(), abs=0.006)
    assert row["new_customer_count"] == len(payers - earlier_buyers)
    assert row["repeat_purchase_rate"] == pytest.approx(len(payers & earlier_buyers) / len(payers))
    assert row["coupon_use_rate"] == pytest.approx(today["coupon_code"].notna().mean())
    assert row["placed_order_count"] == (order_dates == day).sum()
    assert row["active_customer_count"] == len(set(active["user_id"]) | payers)


def test_the_funnel_and_traffic_equal_a_recomputation_from_the_clean_events(shop, warehouse):
    small_shop, _ = shop
    day = small_shop.last
    sessions = clean_sessions(small_shop, warehouse, day)
    row = kpi_row(warehouse, day)

    assert row["session_count"] == len(sessions) > 0
    assert row["product_view_session_count"] == sessions["view"].sum()
    assert row["cart_session_count"] == sessions["cart"].sum()
    assert row["checkout_session_count"] == sessions["checkout"].sum()
    assert row["abandoned_cart_session_count"] == (sessions["cart"] & ~sessions["checkout"]).sum()
    assert row["session_conversion_rate"] == pytest.approx(row["order_count"] / len(sessions))

    traffic = warehouse["traffic"]
    traffic = traffic[pd.to_datetime(traffic["kpi_date"]).dt.date == day].set_index("utm_source")
    expected = sessions.groupby("utm_source").agg(
        session_count=("types", "size"), cart_session_count=("cart", "sum"), checkout_session_count=("checkout", "sum")
    )
    assert traffic[list(expected.columns)].sort_index().astype(int).to_dict() == expected.sort_index().to_dict()
    for column in (*FUNNEL, "abandoned_cart_session_count"):
        assert traffic[column].sum() == row[column], column
    assert (traffic["visitor_count"] <= traffic["session_count"]).all()


def test_every_rate_is_a_share_and_churn_is_one_minus_retention(shop, warehouse):
    kpis = warehouse["kpis"]
    assert len(kpis) >= 3
    for rate in RATES:
        values = kpis[rate].dropna()
        assert ((values >= 0) & (values <= 1)).all(), f"{rate}: {values.tolist()}"
    # The shop's 25 days have no previous 30-day period: retention and churn are null together.
    assert kpis["churn_rate_30d"].isna().equals(kpis["retention_rate_30d"].isna())
    known = kpis.dropna(subset=["retention_rate_30d"])
    assert all(
        abs(c - (1 - r)) < 1e-9 for c, r in zip(known["churn_rate_30d"], known["retention_rate_30d"], strict=True)
    )
    assert kpis["checkout_session_count"].le(kpis["session_count"]).all()


def test_day_over_day_and_week_over_week_changes_match_the_earlier_rows(shop, warehouse):
    small_shop, _ = shop
    last = small_shop.last
    view = warehouse["view"]
    changes = view[pd.to_datetime(view["kpi_date"]).dt.date == last].iloc[0]
    today, yesterday = kpi_row(warehouse, last), kpi_row(warehouse, last - timedelta(days=1))
    week_before = kpi_row(warehouse, last - timedelta(days=7))
    checked = 0
    for name in [c[: -len("_dod")] for c in view.columns if c.endswith("_dod")]:
        for suffix, earlier in (("dod", yesterday), ("wow", week_before)):
            value = changes[f"{name}_{suffix}"]
            if pd.isna(earlier[name]) or earlier[name] == 0 or pd.isna(today[name]):
                assert pd.isna(value), f"{name}_{suffix}"
            else:
                assert value == pytest.approx(float(today[name]) / float(earlier[name]) - 1), f"{name}_{suffix}"
                checked += 1
    assert checked >= 20


def test_rebuilding_a_date_replaces_its_rows(shop, warehouse):
    small_shop, summaries = shop
    last = small_shop.last
    traffic = warehouse["traffic"]
    dates = pd.to_datetime(warehouse["kpis"]["kpi_date"]).dt.date
    assert (dates == last).sum() == 1
    assert not traffic.duplicated(["kpi_date", "utm_source"]).any()
    runs = warehouse["runs"]
    kpi_runs = runs[runs["stage"] == "kpis"]
    assert (pd.to_datetime(kpi_runs["logical_date"]).dt.date == last).sum() == 1
    assert summaries[last]["kpis"]["order_count"] == kpi_row(warehouse, last)["order_count"]

    before = plain(kpi_row(warehouse, last))
    build_kpis(small_shop.config, last)
    schema = small_shop.config.warehouse.schema_name
    with warehouse_engine(small_shop.config).connect() as conn:
        again = pd.read_sql(
            sa.text(f"select * from {schema}.mart_kpi_daily where kpi_date = :d"), conn, params={"d": last}
        )
        sources = conn.execute(
            sa.text(f"select count(*) from {schema}.mart_traffic_daily where kpi_date = :d"), {"d": last}
        ).scalar()
    assert len(again) == 1
    assert plain(again.iloc[0]) == before
    assert sources == (pd.to_datetime(traffic["kpi_date"]).dt.date == last).sum()


def test_a_date_before_the_shops_history_is_a_row_of_zeros_with_null_rates(shop):
    small_shop, _ = shop
    empty = SMALL_SHOP.start_date - timedelta(days=10)
    summary = build_kpis(small_shop.config, empty)
    assert summary["rows_by_table"] == {"mart_traffic_daily": 0, "mart_kpi_daily": 1}
    schema = small_shop.config.warehouse.schema_name
    with warehouse_engine(small_shop.config).connect() as conn:
        row = (
            conn.execute(sa.text(f"select * from {schema}.mart_kpi_daily where kpi_date = :d"), {"d": empty})
            .mappings()
            .one()
        )
    for name, value in row.items():
        if name in RATES or name == "avg_order_amount":
            assert value is None, name
        elif name not in ("kpi_date", "loaded_at"):
            assert value == 0, name


def test_a_date_no_published_batch_covers_is_refused(shop):
    small_shop, _ = shop
    later = small_shop.last + timedelta(days=1)
    with pytest.raises(UpstreamNotReadyError, match=f"{later}: no published batch on or after that date"):
        build_kpis(small_shop.config, later)
