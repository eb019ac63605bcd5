"""Credit notes applied to the sales they reverse (``published.apply_returns``), on tiny frames:
a linked return, an unlinked one matched to the customer's sale, a partial return, a guest's
credit note, a cancelled credit note, and merchandise-only products."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from jobs.platform.published import apply_returns, infer_return_links, merchandise

ORDERS = "order_id long, user_id long, status string, created_at timestamp, total_amount decimal(14,2), " \
    "order_type string, original_order_id long"  # fmt: skip
ITEMS = "order_id long, product_id long"


def _t(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour)


def frames(spark):
    orders = spark.createDataFrame(
        [
            (1, 7, "completed", _t(1), Decimal("77183.60"), "sale", None),  # reversed whole, unlinked
            (2, 7, "completed", _t(1, 10), Decimal("-77183.60"), "return", None),
            (3, 8, "completed", _t(2), Decimal("30.00"), "sale", None),  # partly returned, linked
            (4, 8, "completed", _t(3), Decimal("-10.00"), "return", 3),
            (5, 8, "completed", _t(4), Decimal("20.00"), "sale", None),  # untouched
            (6, None, "completed", _t(4), Decimal("15.00"), "sale", None),  # a guest's sale ...
            (7, None, "completed", _t(5), Decimal("-15.00"), "return", None),  # ... and credit note: no link
            (8, 8, "cancelled", _t(5), Decimal("-20.00"), "return", 5),  # a cancelled credit note reverses nothing
            (9, 9, "completed", _t(6), Decimal("-4.00"), "return", None),  # nothing earlier to match
        ],
        ORDERS,
    )
    items = spark.createDataFrame(
        [(1, 23166), (2, 23166), (3, 10), (3, 11), (4, 10), (5, 12), (6, 13), (7, 13), (8, 12), (9, 99)], ITEMS
    )
    return orders, items


def test_an_unlinked_credit_note_is_matched_to_the_customers_latest_sale_sharing_its_products(spark):
    orders, items = frames(spark)
    links = {r["order_id"]: r["inferred_order_id"] for r in infer_return_links(orders, items).collect()}
    assert links == {2: 1}  # 7 is a guest's (no customer to match on), 9 has no earlier sale of 99


def test_returns_reduce_the_sale_and_a_whole_reversal_is_no_purchase(spark):
    orders, items = frames(spark)
    rows = {r["order_id"]: r for r in apply_returns(orders, items).collect()}
    assert (rows[1]["status"], rows[1]["total_amount"], rows[1]["returned_amount"]) == (
        "returned", Decimal("0.00"), Decimal("77183.60"))  # fmt: skip
    assert rows[1]["gross_total_amount"] == Decimal("77183.60")
    assert (rows[3]["status"], rows[3]["total_amount"], rows[3]["returned_amount"]) == (
        "completed", Decimal("20.00"), Decimal("10.00"))  # fmt: skip
    assert (rows[5]["status"], rows[5]["total_amount"], rows[5]["returned_amount"]) == (
        "completed", Decimal("20.00"), Decimal("0.00"))  # fmt: skip
    assert (rows[6]["status"], rows[6]["total_amount"]) == ("completed", Decimal("15.00"))
    for credit_note in (2, 4, 7, 8, 9):  # never a purchase, whatever the source's status
        assert rows[credit_note]["status"] == "returned"
    assert rows[2]["reverses_order_id"] == 1 and rows[4]["reverses_order_id"] == 3
    assert rows[9]["reverses_order_id"] is None


def test_without_order_lines_only_linked_credit_notes_apply(spark):
    orders, _ = frames(spark)
    rows = {r["order_id"]: r for r in apply_returns(orders).collect()}
    assert rows[1]["status"] == "completed" and rows[3]["total_amount"] == Decimal("20.00")


def test_a_source_without_credit_notes_passes_through(spark):
    orders = spark.createDataFrame(
        [(1, 7, "paid", _t(1), Decimal("5.00"))],
        "order_id long, user_id long, status string, created_at timestamp, total_amount decimal(14,2)",
    )
    row = apply_returns(orders).first()
    assert (row["status"], row["total_amount"], row["returned_amount"], row["order_type"]) == (
        "paid", Decimal("5.00"), Decimal("0.00"), "sale")  # fmt: skip


def test_merchandise_keeps_goods_and_products_cleaned_before_the_flag(spark):
    products = spark.createDataFrame([(1, True), (2, False), (3, None)], "product_id long, is_merchandise boolean")
    assert sorted(r["product_id"] for r in merchandise(products).collect()) == [1, 3]
