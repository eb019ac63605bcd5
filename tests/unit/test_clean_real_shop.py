"""What real shops' exports have and the simulator does not, through one ``clean_sources`` run
on hand-made raw extracts that use the interface's optional columns: guest orders, credit notes
(linked, and quantities below 0), non-merchandise products (from the source's product_type and
from configured SKU patterns), wholesale lines and large orders (flagged, not quarantined),
zero and negative prices, point-of-sale and phone channels."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from jobs.ingest.clean_sources import normalise_orders, normalise_products
from tests.real_data import write_raw_extracts

DAY = date(2026, 10, 10)
T = datetime(2026, 10, 10, 2, 0)
TS = pa.timestamp("us")
SCHEMAS = {
    "users": pa.schema([("user_id", pa.int64()), ("signup_at", TS), ("gender", pa.string()), ("birth_year", pa.int64()),
                        ("region", pa.string()), ("city", pa.string()), ("email", pa.string()), ("phone", pa.string()),
                        ("consent_email", pa.bool_()), ("consent_sms", pa.bool_()), ("consent_push", pa.bool_()),
                        ("updated_at", TS)]),
    "products": pa.schema([("product_id", pa.int64()), ("sku", pa.string()), ("name", pa.string()),
                           ("category_l1", pa.string()), ("category_l2", pa.string()), ("brand", pa.string()),
                           ("price", pa.decimal128(12, 2)), ("is_active", pa.bool_()), ("product_type", pa.string()),
                           ("updated_at", TS)]),
    "orders": pa.schema([("order_id", pa.int64()), ("user_id", pa.int64()), ("status", pa.string()),
                         ("created_at", TS), ("paid_at", TS), ("total_amount", pa.decimal128(12, 2)),
                         ("discount_amount", pa.decimal128(12, 2)), ("coupon_code", pa.string()),
                         ("channel", pa.string()), ("order_type", pa.string()), ("original_order_id", pa.int64()),
                         ("updated_at", TS)]),
    "order_items": pa.schema([("order_id", pa.int64()), ("line_no", pa.int64()), ("product_id", pa.int64()),
                              ("quantity", pa.int64()), ("unit_price", pa.decimal128(12, 2)), ("updated_at", TS)]),
    "suppressions": pa.schema([("user_id", pa.int64()), ("channel", pa.string()), ("reason", pa.string()),
                               ("suppressed_at", TS), ("updated_at", TS)]),
}  # fmt: skip


def _product(product_id, sku, name, price="2.55", product_type=None):
    return {"product_id": product_id, "sku": sku, "name": name, "category_l1": "Home", "category_l2": None,
            "brand": None, "price": Decimal(price), "is_active": True, "product_type": product_type, "updated_at": T}  # fmt: skip


def _order(order_id, user_id=1, total="10.20", channel="web", order_type=None, original=None, status="completed"):
    return {"order_id": order_id, "user_id": user_id, "status": status, "created_at": T, "paid_at": T,
            "total_amount": Decimal(total), "discount_amount": Decimal("0"), "coupon_code": None, "channel": channel,
            "order_type": order_type, "original_order_id": original, "updated_at": T}  # fmt: skip


def _item(order_id, line_no, product_id, quantity=1, price="2.55"):
    return {"order_id": order_id, "line_no": line_no, "product_id": product_id, "quantity": quantity,
            "unit_price": Decimal(price), "updated_at": T}  # fmt: skip


RAW = {
    "users": [
        {
            "user_id": 1,
            "signup_at": datetime(2026, 9, 1),
            "gender": None,
            "birth_year": None,
            "region": None,
            "city": None,
            "email": None,
            "phone": None,
            "consent_email": None,
            "consent_sms": None,
            "consent_push": None,
            "updated_at": T,
        },
    ],  # fmt: skip
    "products": [
        _product(10, "85123A", "White hanging heart T-light holder"),
        _product(12, "POST", "POSTAGE", price="18.00"),  # shipping by the configured SKU pattern
        _product(13, "B", "Adjust bad debt", price="-11062.06", product_type="Adjustment"),  # from the source
        _product(14, "M", "Manual", product_type="gadget"),  # invalid_enum
        _product(15, "22423", "Regency cakestand", price="-1.00"),  # goods below 0: invalid_amount
    ],
    "orders": [
        _order(100, total="5.10"),
        _order(104, user_id=None, channel=" POS ", total="20.55"),  # a guest at the till
        _order(105, total="-2.55", order_type="return", original=100),  # credit note linked to 100
        _order(106, total="-2.55", order_type="return"),  # standalone credit note (no link)
        _order(107, total="5.10", original=100),  # a sale naming an original: invalid_value
        _order(108, total="3.00", order_type="return"),  # a credit note above 0: invalid_amount
        _order(109, total="127500.00", channel="Telephone"),  # wholesale: large, legal
        _order(110, user_id=None, total="-11062.06", channel="web"),  # write-off: a sale below 0 is invalid
        _order(111, total="0.00"),  # a free order: legal, counted
    ],
    "order_items": [
        _item(100, 1, 10, quantity=2),
        _item(104, 1, 10),
        _item(104, 2, 12, price="18.00"),  # postage line: kept, in the order total
        _item(105, 1, 10, quantity=-1),
        _item(106, 1, 10, quantity=-1),
        _item(109, 1, 10, quantity=50000),  # wholesale line: flagged is_bulk_line
        _item(111, 1, 10, price="0.00"),  # zero price
        _item(111, 2, 13, price="-1.00"),  # below 0 on an adjustment: legal
        _item(100, 2, 10, quantity=-2),  # below 0 on a sale: invalid_value
        _item(105, 2, 10, quantity=1),  # above 0 on a credit note: invalid_value
        _item(100, 3, 10, price="-1.00"),  # below 0 on goods: invalid_amount
        _item(100, 4, 10, quantity=0),  # 0 units: invalid_value
    ],
    "suppressions": [],
}


@pytest.fixture(scope="module")
def cleaned(spark, tmp_path_factory):
    import os

    from jobs.ingest.clean_sources import clean_sources
    from jobs.platform.config import load_config

    root = tmp_path_factory.mktemp("clean_real_shop")
    stores = {"landing_root": "landing", "lake_root": "lake", "reports_root": "reports", "state_root": "state"}
    config = load_config(
        environ={},
        overrides={
            "storage": {key: str(root / name) for key, name in stores.items()},
            "source": {"url": f"sqlite:///{root / 'source.db'}"},
            "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
            "clean": {"non_merchandise": [{"type": "shipping", "sku": "post|dot"}], "large_order_amount": 10000},
        },
    )
    write_raw_extracts(config, DAY, RAW, SCHEMAS)
    os.environ.setdefault(config.pii.hash_key_env, "unit-test-pii-key-0123456789abcdef")
    return config, clean_sources(config, DAY)


def lake_rows(spark, config, prefix: str) -> list[dict]:
    from jobs.platform.lake import lake_storage, spark_uri

    return [r.asDict() for r in spark.read.parquet(spark_uri(lake_storage(config), prefix)).collect()]


def quarantined(spark, config, table: str, keys: tuple[str, ...]) -> dict:
    rows = lake_rows(spark, config, f"quarantine/{table}/batch_date={DAY}/")
    return {tuple(json.loads(r["payload"]).get(k) for k in keys): (r["reason"], r["detail"]) for r in rows}


def test_product_type_comes_from_the_source_or_else_from_the_configured_sku_patterns(spark, cleaned):
    config, result = cleaned
    clean = {r["product_id"]: r for r in lake_rows(spark, config, f"clean/products/extract_date={DAY}/")}
    assert {p: (r["product_type"], r["is_merchandise"], r["sku"]) for p, r in clean.items()} == {
        10: ("merchandise", True, "85123A"),
        12: ("shipping", False, "POST"),
        13: ("adjustment", False, "B"),  # the source's type, lower-cased; its price below 0 is legal
    }
    assert quarantined(spark, config, "products", ("product_id",)) == {
        (14,): ("invalid_enum", "product_type=gadget"),
        (15,): ("invalid_amount", "-1.00"),
    }
    assert result["tables"]["products"]["flagged"] == {"non_merchandise": 2}


def test_guests_credit_notes_and_offline_channels_are_orders(spark, cleaned):
    config, result = cleaned
    clean = {r["order_id"]: r for r in lake_rows(spark, config, f"clean/orders/extract_date={DAY}/")}
    assert sorted(clean) == [100, 104, 105, 106, 109, 111]
    assert (clean[104]["user_id"], clean[104]["is_guest"], clean[104]["channel"]) == (None, True, "store")
    assert (clean[105]["order_type"], clean[105]["original_order_id"], clean[105]["total_amount"]) == (
        "return", 100, Decimal("-2.55"))  # fmt: skip
    assert (clean[106]["order_type"], clean[106]["original_order_id"]) == ("return", None)
    assert (clean[109]["channel"], clean[109]["is_large_order"]) == ("phone", True)
    assert clean[100]["order_type"] == "sale" and not clean[100]["is_large_order"]
    got = quarantined(spark, config, "orders", ("order_id",))
    assert got == {
        (107,): ("invalid_value", "original_order_id=100 on a sale"),
        (108,): ("invalid_amount", "return total_amount=3.00"),
        (110,): ("invalid_amount", "sale total_amount=-11062.06"),
    }
    assert result["tables"]["orders"]["flagged"] == {
        "guest_orders": 1, "returns": 2, "large_orders": 1, "zero_total_orders": 1}  # fmt: skip


def test_line_quantities_follow_the_order_type_and_prices_below_0_only_on_non_merchandise(spark, cleaned):
    config, result = cleaned
    clean = {
        (r["order_id"], r["line_no"]): r for r in lake_rows(spark, config, f"clean/order_items/extract_date={DAY}/")
    }
    assert sorted(clean) == [(100, 1), (104, 1), (104, 2), (105, 1), (106, 1), (109, 1), (111, 1), (111, 2)]
    assert clean[(104, 2)]["user_id"] is None  # the guest's lines carry no customer
    assert (clean[(105, 1)]["quantity"], clean[(105, 1)]["line_amount"]) == (-1, Decimal("-2.55"))
    assert (clean[(109, 1)]["quantity"], clean[(109, 1)]["is_bulk_line"]) == (50000, True)
    got = quarantined(spark, config, "order_items", ("order_id", "line_no"))
    assert got == {
        (100, 2): ("invalid_value", "quantity=-2 on a sale"),
        (105, 2): ("invalid_value", "quantity=1 on a return"),
        (100, 3): ("invalid_amount", "unit_price=-1.00 on merchandise"),
        (100, 4): ("invalid_value", "quantity=0 on a sale"),
    }
    assert result["tables"]["order_items"]["flagged"] == {
        "bulk_lines": 1, "zero_price_lines": 1, "negative_price_lines": 1, "return_lines": 2}  # fmt: skip
    counts = result["tables"]["order_items"]["counts"]
    assert counts == {"input": 12, "clean": 8, "quarantined": 4, "duplicates": 0}


def test_a_source_without_the_optional_columns_gets_their_defaults(spark):
    products = spark.createDataFrame(
        [(10, "Tea", "food", None, None, "1.00", "true", "2026-10-10 01:00:00")],
        "product_id long, name string, category_l1 string, category_l2 string, brand string, price string, "
        "is_active string, updated_at string",
    )
    row = normalise_products(products).first()
    assert (row["product_type"], row["is_merchandise"], row["sku"]) == ("merchandise", True, None)
    orders = spark.createDataFrame(
        [(1, None, "paid", "2026-10-10 01:00:00", None, "5", "0", None, "pos", "2026-10-10 01:00:00")],
        "order_id long, user_id long, status string, created_at string, paid_at string, total_amount string, "
        "discount_amount string, coupon_code string, channel string, updated_at string",
    )
    row = normalise_orders(orders, "Europe/London").first()
    assert (row["order_type"], row["original_order_id"], row["is_guest"], row["channel"]) == (
        "sale", None, True, "store")  # fmt: skip
