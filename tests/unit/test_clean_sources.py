"""Source-table cleaning rules, each pinned down on a tiny hand-made frame, plus one small
``clean_sources`` run on hand-made raw extracts (quarantine reasons, PII, reconciliation)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from jobs.ingest.clean_sources import (
    Check,
    apply_checks,
    normalise_order_items,
    normalise_orders,
    normalise_products,
    normalise_suppressions,
    normalise_users,
)
from jobs.platform.published import latest_per_key

DAY = date(2026, 10, 10)
TZ = "Asia/Shanghai"
HASH_KEY = "unit-test-pii-key-0123456789abcdef"
HEX64 = re.compile(r"^[0-9a-f]{64}$")

USER_COLUMNS = (
    "user_id long, signup_at string, gender string, birth_year string, region string, city string, "
    "email string, phone string, consent_email string, consent_sms string, consent_push string, updated_at string"
)


def raw_user(**overrides):
    base = {
        "user_id": 1,
        "signup_at": "2026-09-01 08:00:00",
        "gender": "F",
        "birth_year": "1990",
        "region": "East",
        "city": "Shanghai",
        "email": "a@example.com",
        "phone": "13800000000",
        "consent_email": "true",
        "consent_sms": "false",
        "consent_push": "false",
        "updated_at": "2026-10-10 01:00:00",
    }
    base.update(overrides)
    return base


def users_frame(spark, *rows):
    return spark.createDataFrame([tuple(r.values()) for r in rows], USER_COLUMNS)


# --------------------------------------------------------------------------------------------
# normalise_*
# --------------------------------------------------------------------------------------------


def test_user_gender_is_one_upper_case_letter_and_unknown_values_become_u(spark):
    frame = users_frame(
        spark,
        raw_user(user_id=1, gender=" f "),
        raw_user(user_id=2, gender="male"),
        raw_user(user_id=3, gender="x"),
        raw_user(user_id=4, gender=None),
    )
    got = {r["user_id"]: r["gender"] for r in normalise_users(frame).collect()}
    assert got == {1: "F", 2: "M", 3: "U", 4: "U"}


def test_user_email_is_trimmed_lower_case_and_blank_becomes_null(spark):
    frame = users_frame(spark, raw_user(user_id=1, email="  Alice@Example.COM "), raw_user(user_id=2, email="  "))
    got = {r["user_id"]: r["email"] for r in normalise_users(frame).collect()}
    assert got == {1: "alice@example.com", 2: None}


def test_user_phone_keeps_only_digits_and_plus_and_blank_becomes_null(spark):
    frame = users_frame(spark, raw_user(user_id=1, phone="+86 (138) 0000-0001"), raw_user(user_id=2, phone=" - "))
    got = {r["user_id"]: r["phone"] for r in normalise_users(frame).collect()}
    assert got == {1: "+8613800000001", 2: None}


def test_user_places_are_title_case_consents_default_to_false_and_types_are_cast(spark):
    row = normalise_users(
        users_frame(spark, raw_user(region=" east ", city="shanghai", consent_sms=None, consent_push="true"))
    ).first()
    assert (row["region"], row["city"]) == ("East", "Shanghai")
    assert (row["consent_email"], row["consent_sms"], row["consent_push"]) == (True, False, True)
    assert row["birth_year"] == 1990
    assert row["signup_at"] == datetime(2026, 9, 1, 8, 0)
    assert row["updated_at"] == datetime(2026, 10, 10, 1, 0)


def test_product_fields_are_trimmed_categories_lower_case_and_active_by_default(spark):
    frame = spark.createDataFrame(
        [(10, "  Green Tea ", " Food ", " TEA", " Koi ", "19.9", None, "2026-10-10 01:00:00")],
        "product_id long, name string, category_l1 string, category_l2 string, brand string, "
        "price string, is_active string, updated_at string",
    )
    row = normalise_products(frame).first()
    assert row.asDict() == {
        "product_id": 10,
        "product_name": "Green Tea",
        "category_l1": "food",
        "category_l2": "tea",
        "brand": "Koi",
        "price": Decimal("19.90"),
        "is_active": True,
        "updated_at": datetime(2026, 10, 10, 1, 0),
        "sku": None,
        "product_type": "merchandise",
        "is_merchandise": True,
    }


def order_frame(spark, *rows):
    return spark.createDataFrame(
        list(rows),
        "order_id long, user_id long, status string, created_at string, paid_at string, "
        "total_amount string, discount_amount string, coupon_code string, channel string, updated_at string",
    )


def test_order_date_is_the_shop_local_date_of_creation(spark):
    frame = order_frame(
        spark,
        (1, 7, "paid", "2026-10-09 15:59:59", None, "10", "0", None, "web", "2026-10-10 00:00:00"),
        (2, 7, "paid", "2026-10-09 16:00:00", None, "10", "0", None, "web", "2026-10-10 00:00:00"),
    )
    got = {r["order_id"]: r["order_date"] for r in normalise_orders(frame, TZ).collect()}
    assert got == {1: date(2026, 10, 9), 2: date(2026, 10, 10)}


def test_order_text_fields_are_normalised_and_missing_discount_is_zero(spark):
    frame = order_frame(
        spark,
        (
            1,
            7,
            " PAID ",
            "2026-10-10 01:00:00",
            "2026-10-10 01:05:00",
            "99.999",
            None,
            " autumn10 ",
            " App ",
            "2026-10-10 01:05:00",
        ),
        (2, 7, "created", "2026-10-10 01:00:00", None, "5", "1.5", "", "web", "2026-10-10 01:00:00"),
    )
    rows = {r["order_id"]: r for r in normalise_orders(frame, TZ).collect()}
    assert (rows[1]["status"], rows[1]["channel"], rows[1]["coupon_code"]) == ("paid", "app", "AUTUMN10")
    assert rows[1]["total_amount"] == Decimal("100.00")
    assert rows[1]["discount_amount"] == Decimal("0.00")
    assert rows[1]["paid_at"] == datetime(2026, 10, 10, 1, 5)
    assert rows[2]["coupon_code"] is None
    assert rows[2]["discount_amount"] == Decimal("1.50")
    assert rows[2]["paid_at"] is None


def test_order_item_line_amount_is_quantity_times_unit_price(spark):
    frame = spark.createDataFrame(
        [(100, "1", 10, "3", "19.90", "2026-10-10 01:00:00"), (100, "2", 11, None, "5", "2026-10-10 01:00:00")],
        "order_id long, line_no string, product_id long, quantity string, unit_price string, updated_at string",
    )
    rows = {r["line_no"]: r for r in normalise_order_items(frame).collect()}
    assert rows[1]["quantity"] == 3 and rows[1]["line_amount"] == Decimal("59.70")
    assert rows[2]["line_amount"] is None


def test_suppression_channel_and_reason_are_trimmed_lower_case_and_reason_is_renamed(spark):
    frame = spark.createDataFrame(
        [("7", " SMS ", " Unsubscribed", "2026-10-10 01:00:00", "2026-10-10 01:00:05")],
        "user_id string, channel string, reason string, suppressed_at string, updated_at string",
    )
    row = normalise_suppressions(frame).first()
    assert row.asDict() == {
        "user_id": 7,
        "channel": "sms",
        "suppression_reason": "unsubscribed",  # "reason" is the quarantine reason in this stage
        "suppressed_at": datetime(2026, 10, 10, 1, 0),
        "updated_at": datetime(2026, 10, 10, 1, 0, 5),
    }


# --------------------------------------------------------------------------------------------
# apply_checks, latest_per_key
# --------------------------------------------------------------------------------------------


def test_the_first_failing_check_gives_the_reason_and_detail(spark):
    frame = spark.createDataFrame([(1, -5), (2, 5), (3, 500), (4, None)], "id int, amount int")
    checked = apply_checks(
        frame,
        [
            Check("negative", F.col("amount") < 0, F.lit("below zero")),
            Check("odd", F.col("amount") % 2 == 1, F.concat(F.lit("amount="), F.col("amount").cast("string"))),
            Check("too_big", F.col("amount") > 100),
        ],
    )
    got = {r["id"]: (r["reason"], r["detail"]) for r in checked.collect()}
    # -5 is negative and odd: the earlier rule wins; a null comparison counts as passing
    assert got == {1: ("negative", "below zero"), 2: ("odd", "amount=5"), 3: ("too_big", None), 4: (None, None)}


def test_missing_required_field_names_every_blank_column(spark):
    from jobs.ingest.clean_sources import _missing

    frame = spark.createDataFrame([(1, "x", "y"), (2, " ", None), (None, "x", "y")], "id int, a string, b string")
    got = {
        r["a"] + str(r["id"]): (r["reason"], r["detail"])
        for r in apply_checks(frame, [_missing("id", "a", "b")]).collect()
    }
    assert got == {
        "x1": (None, None),
        " 2": ("missing_required_field", "a,b"),
        "xNone": ("missing_required_field", "id"),
    }


def test_latest_updated_at_per_key_wins_and_superseded_rows_are_duplicates(spark):
    frame = spark.createDataFrame(
        [
            (1, "old", datetime(2026, 10, 10, 1)),
            (1, "new", datetime(2026, 10, 10, 3)),
            (1, "mid", datetime(2026, 10, 10, 2)),
            (2, "only", datetime(2026, 10, 10, 1)),
            (3, "dated", datetime(2026, 10, 10, 1)),
            (3, "undated", None),
        ],
        "id int, v string, updated_at timestamp",
    )
    latest, duplicates = latest_per_key(frame, ["id"])
    assert sorted((r["id"], r["v"]) for r in latest.collect()) == [(1, "new"), (2, "only"), (3, "dated")]
    assert sorted((r["id"], r["v"]) for r in duplicates.collect()) == [(1, "mid"), (1, "old"), (3, "undated")]
    assert latest.columns == duplicates.columns == frame.columns


def test_latest_per_key_uses_compound_keys(spark):
    frame = spark.createDataFrame(
        [(1, 1, datetime(2026, 10, 10, 1)), (1, 2, datetime(2026, 10, 10, 1)), (1, 1, datetime(2026, 10, 10, 2))],
        "order_id int, line_no int, updated_at timestamp",
    )
    latest, duplicates = latest_per_key(frame, ["order_id", "line_no"])
    assert latest.count() == 2
    assert [(r["order_id"], r["line_no"], r["updated_at"].hour) for r in duplicates.collect()] == [(1, 1, 1)]


# --------------------------------------------------------------------------------------------
# clean_sources on hand-made raw extracts
# --------------------------------------------------------------------------------------------

T = datetime(2026, 10, 10, 2, 0)
TS = pa.timestamp("us")
SCHEMAS = {
    "users": pa.schema(
        [
            ("user_id", pa.int64()),
            ("signup_at", TS),
            ("gender", pa.string()),
            ("birth_year", pa.int64()),
            ("region", pa.string()),
            ("city", pa.string()),
            ("email", pa.string()),
            ("phone", pa.string()),
            ("consent_email", pa.bool_()),
            ("consent_sms", pa.bool_()),
            ("consent_push", pa.bool_()),
            ("updated_at", TS),
        ]
    ),
    "products": pa.schema(
        [
            ("product_id", pa.int64()),
            ("name", pa.string()),
            ("category_l1", pa.string()),
            ("category_l2", pa.string()),
            ("brand", pa.string()),
            ("price", pa.decimal128(12, 2)),
            ("is_active", pa.bool_()),
            ("updated_at", TS),
        ]
    ),
    "orders": pa.schema(
        [
            ("order_id", pa.int64()),
            ("user_id", pa.int64()),
            ("status", pa.string()),
            ("created_at", TS),
            ("paid_at", TS),
            ("total_amount", pa.decimal128(12, 2)),
            ("discount_amount", pa.decimal128(12, 2)),
            ("coupon_code", pa.string()),
            ("channel", pa.string()),
            ("updated_at", TS),
        ]
    ),
    "order_items": pa.schema(
        [
            ("order_id", pa.int64()),
            ("line_no", pa.int64()),
            ("product_id", pa.int64()),
            ("quantity", pa.int64()),
            ("unit_price", pa.decimal128(12, 2)),
            ("updated_at", TS),
        ]
    ),
    "suppressions": pa.schema(
        [
            ("user_id", pa.int64()),
            ("channel", pa.string()),
            ("reason", pa.string()),
            ("suppressed_at", TS),
            ("updated_at", TS),
        ]
    ),
}


def _user(user_id, email=None, phone=None, birth_year=1990, updated_at=T):
    return {
        "user_id": user_id,
        "signup_at": datetime(2026, 9, 1),
        "gender": "f",
        "birth_year": birth_year,
        "region": "east",
        "city": "hangzhou",
        "email": email,
        "phone": phone,
        "consent_email": True,
        "consent_sms": None,
        "consent_push": False,
        "updated_at": updated_at,
    }


def _order(order_id, user_id=1, status="paid", total="39.80", channel="web"):
    return {
        "order_id": order_id,
        "user_id": user_id,
        "status": status,
        "created_at": T,
        "paid_at": T,
        "total_amount": Decimal(total),
        "discount_amount": Decimal("0"),
        "coupon_code": None,
        "channel": channel,
        "updated_at": T,
    }


def _suppression(user_id, channel, reason, updated_at=T):
    return {"user_id": user_id, "channel": channel, "reason": reason, "suppressed_at": T, "updated_at": updated_at}


def _item(order_id, line_no, product_id, quantity=1, price="19.90"):
    return {
        "order_id": order_id,
        "line_no": line_no,
        "product_id": product_id,
        "quantity": quantity,
        "unit_price": Decimal(price),
        "updated_at": T,
    }


RAW = {
    "users": [
        _user(1, email="  Alice@Example.COM ", phone="+86 138-0000-0001"),
        _user(1, email="old@example.com", updated_at=datetime(2026, 10, 9, 2)),  # superseded
        _user(2, email=None, phone=""),
        _user(3, email="Old.Timer@example.com", phone="+86 139 0000 0003", birth_year=1800),  # invalid_value
        _user(None),  # missing_required_field
    ],
    "products": [
        {
            "product_id": 10,
            "name": "Tea",
            "category_l1": "Food",
            "category_l2": "Tea",
            "brand": "Koi",
            "price": Decimal("19.90"),
            "is_active": True,
            "updated_at": T,
        },
        {
            "product_id": 11,
            "name": "Pot",
            "category_l1": "Home",
            "category_l2": "Cookware",
            "brand": "Koi",
            "price": Decimal("-1.00"),
            "is_active": True,
            "updated_at": T,
        },  # invalid_amount
    ],
    "orders": [
        _order(100),
        _order(101, total="-5.00"),  # invalid_amount
        _order(102, user_id=99),  # unknown_user_id
        _order(103, status="lost"),  # invalid_enum
    ],
    "order_items": [
        _item(100, 1, 10, quantity=2),
        _item(100, 2, 999),  # unknown_product_id
        _item(101, 1, 10),  # parent_quarantined
        _item(101, 2, 999),  # parent_quarantined wins over unknown_product_id
        _item(555, 1, 10),  # unknown_order_id
        _item(100, 3, 10, quantity=0),  # invalid_value
    ],
    "suppressions": [
        _suppression(1, "email", "unsubscribed"),
        _suppression(1, " Email ", "bounced", updated_at=datetime(2026, 10, 9, 2)),  # same key, superseded
        _suppression(2, "sms", "Complained"),
        _suppression(2, "fax", "unsubscribed"),  # invalid_enum (channel)
        _suppression(1, "push", "moved away"),  # invalid_enum (reason)
        _suppression(99, "all", "unsubscribed"),  # unknown_user_id
        _suppression(3, "email", "bounced"),  # unknown_user_id: user 3 is quarantined
        _suppression(None, "email", "bounced"),  # missing_required_field
        _suppression(2, "all", None),  # missing_required_field
    ],
}


def write_raw(config, day: date) -> None:
    from tests.real_data import write_raw_extracts

    write_raw_extracts(config, day, RAW, SCHEMAS)


@pytest.fixture(scope="module")
def cleaned(spark, tmp_path_factory):
    """One clean_sources run on the hand-made raw extracts of DAY; shared by the tests below."""
    import os

    from jobs.ingest.clean_sources import clean_sources
    from jobs.platform.config import load_config

    root = tmp_path_factory.mktemp("clean_sources")
    config = load_config(
        environ={},
        overrides={
            "storage": {
                "landing_root": str(root / "landing"),
                "lake_root": str(root / "lake"),
                "reports_root": str(root / "reports"),
                "state_root": str(root / "state"),
            },
            "source": {"url": f"sqlite:///{root / 'source.db'}"},
            "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
        },
    )
    write_raw(config, DAY)
    previous = os.environ.get(config.pii.hash_key_env)
    os.environ[config.pii.hash_key_env] = HASH_KEY
    try:
        result = clean_sources(config, DAY)
    finally:
        if previous is None:
            os.environ.pop(config.pii.hash_key_env, None)
        else:
            os.environ[config.pii.hash_key_env] = previous
    return config, result


def lake_rows(spark, config, prefix: str) -> list[dict]:
    from jobs.platform.lake import lake_storage, spark_uri

    return [r.asDict() for r in spark.read.parquet(spark_uri(lake_storage(config), prefix)).collect()]


def quarantined(spark, config, table: str) -> dict:
    """{(key...): reason} of the quarantined rows of ``table``."""
    keys = {
        "users": ("user_id",),
        "products": ("product_id",),
        "orders": ("order_id",),
        "order_items": ("order_id", "line_no"),
        "suppressions": ("user_id", "channel"),
    }[table]
    rows = lake_rows(spark, config, f"quarantine/{table}/batch_date={DAY}/")
    out = {}
    for row in rows:
        payload = json.loads(row["payload"])
        assert row["stage"] == f"clean_{table}"
        out[tuple(payload.get(k) for k in keys)] = row["reason"]
    return out


def test_an_order_with_a_negative_total_is_quarantined_as_invalid_amount(spark, cleaned):
    config, _ = cleaned
    got = quarantined(spark, config, "orders")
    assert got == {(101,): "invalid_amount", (102,): "unknown_user_id", (103,): "invalid_enum"}
    clean = lake_rows(spark, config, f"clean/orders/extract_date={DAY}/")
    assert [r["order_id"] for r in clean] == [100]


def test_items_of_a_quarantined_order_are_parent_quarantined(spark, cleaned):
    config, _ = cleaned
    got = quarantined(spark, config, "order_items")
    assert got[(101, 1)] == "parent_quarantined"
    assert got[(101, 2)] == "parent_quarantined"  # also an unknown product: the parent rule comes first


def test_an_item_with_an_unknown_product_is_unknown_product_id(spark, cleaned):
    config, _ = cleaned
    got = quarantined(spark, config, "order_items")
    assert got[(100, 2)] == "unknown_product_id"
    assert got[(555, 1)] == "unknown_order_id"
    assert got[(100, 3)] == "invalid_value"
    clean = lake_rows(spark, config, f"clean/order_items/extract_date={DAY}/")
    assert [(r["order_id"], r["line_no"], r["line_amount"]) for r in clean] == [(100, 1, Decimal("39.80"))]


def test_invalid_users_and_products_are_quarantined_with_their_reason(spark, cleaned):
    config, _ = cleaned
    assert quarantined(spark, config, "users") == {(3,): "invalid_value", (None,): "missing_required_field"}
    assert quarantined(spark, config, "products") == {(11,): "invalid_amount"}


def test_clean_users_hold_only_keyed_hashes_of_email_and_phone(spark, cleaned):
    from jobs.ingest.pii import keyed_hash

    config, _ = cleaned
    rows = {r["user_id"]: r for r in lake_rows(spark, config, f"clean/users/extract_date={DAY}/")}
    assert set(rows) == {1, 2}
    for row in rows.values():
        assert "email" not in row and "phone" not in row
        text = json.dumps(row, default=str).lower()
        assert "example.com" not in text and "13800000001" not in text
    alice = rows[1]
    assert HEX64.match(alice["email_hash"]) and HEX64.match(alice["phone_hash"])
    assert alice["email_hash"] == keyed_hash(HASH_KEY.encode(), "alice@example.com")  # latest version, normalised
    assert alice["phone_hash"] == keyed_hash(HASH_KEY.encode(), "+8613800000001")
    assert (alice["has_email"], alice["has_phone"]) == (True, True)
    assert (rows[2]["email_hash"], rows[2]["phone_hash"], rows[2]["has_email"], rows[2]["has_phone"]) == (
        None,
        None,
        False,
        False,
    )


def test_quarantined_users_keep_their_values_but_email_and_phone_only_as_hashes(spark, cleaned):
    from jobs.ingest.pii import keyed_hash

    config, _ = cleaned
    rows = lake_rows(spark, config, f"quarantine/users/batch_date={DAY}/")
    assert rows
    for row in rows:
        assert "example.com" not in row["payload"].lower() and "13900000003" not in row["payload"]
    payload = next(json.loads(r["payload"]) for r in rows if r["reason"] == "invalid_value")
    assert payload["birth_year"] == 1800 and payload["user_id"] == 3
    assert "email" not in payload and "phone" not in payload
    assert payload["email_hash"] == keyed_hash(HASH_KEY.encode(), "old.timer@example.com")
    assert payload["phone_hash"] == keyed_hash(HASH_KEY.encode(), "+8613900000003")


def test_restricted_users_pii_holds_the_clear_values(spark, cleaned):
    config, _ = cleaned
    rows = {r["user_id"]: r for r in lake_rows(spark, config, f"restricted/users_pii/extract_date={DAY}/")}
    assert rows[1]["email"] == "alice@example.com"
    assert rows[1]["phone"] == "+8613800000001"
    assert (rows[2]["email"], rows[2]["phone"]) == (None, None)
    assert set(rows[1]) >= {"consent_email", "consent_sms", "consent_push"}


def test_invalid_suppressions_are_quarantined_with_their_reason(spark, cleaned):
    config, result = cleaned
    assert result["tables"]["suppressions"]["quarantined_by_reason"] == {
        "invalid_enum": 2,
        "unknown_user_id": 2,
        "missing_required_field": 2,
    }
    assert quarantined(spark, config, "suppressions") == {
        (2, "fax"): "invalid_enum",
        (1, "push"): "invalid_enum",
        (99, "all"): "unknown_user_id",
        (3, "email"): "unknown_user_id",
        (None, "email"): "missing_required_field",
        (2, "all"): "missing_required_field",
    }
    details = {row["detail"] for row in lake_rows(spark, config, f"quarantine/suppressions/batch_date={DAY}/")}
    assert {"channel=fax", "reason=moved away", "suppression_reason"} <= details


def test_the_latest_suppression_per_user_and_channel_is_clean(spark, cleaned):
    config, _ = cleaned
    clean = lake_rows(spark, config, f"clean/suppressions/extract_date={DAY}/")
    assert sorted((r["user_id"], r["channel"], r["suppression_reason"]) for r in clean) == [
        (1, "email", "unsubscribed"),  # the older "bounced" version of the key is a duplicate
        (2, "sms", "complained"),
    ]
    assert set(clean[0]) == {"user_id", "channel", "suppression_reason", "suppressed_at", "updated_at"}


def test_counts_reconcile_for_every_table(cleaned):
    _, result = cleaned
    expected = {
        "users": {"input": 5, "clean": 2, "quarantined": 2, "duplicates": 1},
        "products": {"input": 2, "clean": 1, "quarantined": 1, "duplicates": 0},
        "orders": {"input": 4, "clean": 1, "quarantined": 3, "duplicates": 0},
        "order_items": {"input": 6, "clean": 1, "quarantined": 5, "duplicates": 0},
        "suppressions": {"input": 9, "clean": 2, "quarantined": 6, "duplicates": 1},
    }
    for table, counts in expected.items():
        record = result["tables"][table]
        assert record["counts"] == counts, table
        assert sum(record["quarantined_by_reason"].values()) == counts["quarantined"]
    assert result["tables"]["order_items"]["quarantined_by_reason"] == {
        "parent_quarantined": 2,
        "unknown_product_id": 1,
        "unknown_order_id": 1,
        "invalid_value": 1,
    }


def test_clean_run_is_recorded_in_ops_tables(cleaned):
    import sqlalchemy as sa

    from jobs.platform.ops import warehouse_engine

    config, _ = cleaned
    engine = warehouse_engine(config)
    with engine.connect() as conn:
        runs = conn.execute(
            sa.text(
                "select dataset, status, rows_in, rows_out, rows_quarantined, rows_duplicate "
                "from main.ops_pipeline_runs where stage = 'clean' order by dataset"
            )
        ).all()
        reasons = dict(
            conn.execute(
                sa.text("select reason, row_count from main.ops_quarantine_daily where dataset = 'orders'")
            ).all()
        )
    engine.dispose()
    assert [tuple(r) for r in runs] == [
        ("order_items", "success", 6, 1, 5, 0),
        ("orders", "success", 4, 1, 3, 0),
        ("products", "success", 2, 1, 1, 0),
        ("suppressions", "success", 9, 2, 6, 1),
        ("users", "success", 5, 2, 2, 1),
    ]
    assert reasons == {"invalid_amount": 1, "unknown_user_id": 1, "invalid_enum": 1}
