"""Load (publish): write logical date D's validated clean data to the warehouse atomically.

One transaction per run: dimensions and order facts are upserted (a newer ``updated_at``
wins, so re-running an old date never regresses a later status), and ``fct_events_daily`` is
recomputed for every event date that D's batch touched, from all published batches plus D.
Re-running D therefore replaces D's contribution and never duplicates it.

``dim_suppression`` is insert-only (publish mode ``insert_new``): a (user_id, channel)
suppression stays exactly as first published. A later extract with the same key (another
reason, a new time) changes nothing, and a suppression missing from later extracts is kept:
a customer who asked not to be contacted is never contacted again because of an import.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import NotValidatedError
from jobs.platform.interface import PAID_STATUSES
from jobs.platform.lake import (
    clean_events_prefix,
    clean_fingerprint,
    clean_source_prefix,
    has_parquet,
    lake_storage,
    read_json,
    run_record_key,
    spark_uri,
)
from jobs.platform.ops import warehouse_engine
from jobs.platform.publish import Output, publish
from jobs.platform.published import check_no_gap, published_batches
from jobs.platform.warehouse import to_arrow

log = logging.getLogger(__name__)


def dim_user_rows(users: DataFrame, tz: str, loaded_at: datetime) -> DataFrame:
    return users.select(
        "user_id",
        "signup_at",
        F.to_date(F.from_utc_timestamp("signup_at", tz)).alias("signup_date"),
        "gender",
        "birth_year",
        "region",
        "city",
        "email_hash",
        "phone_hash",
        "has_email",
        "has_phone",
        F.col("consent_email").alias("has_email_consent"),
        F.col("consent_sms").alias("has_sms_consent"),
        F.col("consent_push").alias("has_push_consent"),
        "updated_at",
        F.lit(loaded_at).alias("loaded_at"),
        "customer_code",
    )


def dim_product_rows(products: DataFrame, loaded_at: datetime) -> DataFrame:
    return products.select(
        "product_id",
        "product_name",
        "category_l1",
        "category_l2",
        "brand",
        "price",
        "is_active",
        "updated_at",
        F.lit(loaded_at).alias("loaded_at"),
        "sku",
        "product_type",
        "is_merchandise",
    )


def fct_order_rows(orders: DataFrame, loaded_at: datetime) -> DataFrame:
    return orders.select(
        "order_id",
        "user_id",
        "order_date",
        "created_at",
        "paid_at",
        "status",
        (F.col("paid_at").isNotNull() | F.col("status").isin(*PAID_STATUSES)).alias("is_paid"),
        (F.col("status") == "cancelled").alias("is_cancelled"),
        (F.col("status") == "refunded").alias("is_refunded"),
        (F.col("status") == "completed").alias("is_completed"),
        "total_amount",
        "discount_amount",
        (F.col("total_amount") + F.col("discount_amount")).cast("decimal(14,2)").alias("gross_amount"),
        F.col("coupon_code").isNotNull().alias("has_coupon"),
        "coupon_code",
        "channel",
        "updated_at",
        F.lit(loaded_at).alias("loaded_at"),
        "is_guest",
        "order_type",
        "original_order_id",
        "is_large_order",
        "order_number",
    )


def fct_order_item_rows(items: DataFrame, loaded_at: datetime) -> DataFrame:
    return items.select(
        "order_id",
        "line_no",
        "user_id",
        "order_date",
        "product_id",
        "quantity",
        "unit_price",
        "line_amount",
        "updated_at",
        F.lit(loaded_at).alias("loaded_at"),
        "is_bulk_line",
    )


def dim_suppression_rows(suppressions: DataFrame, loaded_at: datetime) -> DataFrame:
    return suppressions.select(
        "user_id",
        "channel",
        F.col("suppression_reason").alias("reason"),
        "suppressed_at",
        F.lit(loaded_at).alias("first_loaded_at"),
    )


def events_daily_rows(events: DataFrame, loaded_at: datetime) -> DataFrame:
    """Identified, non-bot behaviour aggregated per local date, user and event type."""
    return (
        events.where(~F.col("is_bot") & F.col("user_id").isNotNull())
        .groupBy("event_date", "user_id", "event_type")
        .agg(
            F.count("*").alias("event_count"),
            F.countDistinct("session_id").alias("session_count"),
            F.countDistinct("product_id").alias("product_count"),
            F.min("event_at").alias("first_event_at"),
            F.max("event_at").alias("last_event_at"),
        )
        .withColumn("loaded_at", F.lit(loaded_at))
    )


def load_warehouse(config: PipelineConfig, logical_date: date, require_validation: bool = True) -> dict:
    """Publish D's clean data to the warehouse in one transaction."""
    from jobs.platform.spark import get_spark

    spark = get_spark(config)
    lake = lake_storage(config)
    schema = config.warehouse.schema_name
    engine = warehouse_engine(config)
    validation_key = run_record_key("validate", "all", logical_date)
    if require_validation:
        record = read_json(lake, validation_key) if lake.exists(validation_key) else {}
        if not record.get("passed"):
            raise NotValidatedError(
                f"{logical_date} has no passing validation ({lake.uri(validation_key)}); "
                "run the validate stage first — nothing was published"
            )
        if record.get("clean_fingerprint") != clean_fingerprint(lake, logical_date):
            raise NotValidatedError(
                f"{logical_date}: the clean data changed after it was validated (fingerprint of "
                f"{lake.uri(clean_events_prefix(logical_date))} and the clean source tables differs from the one "
                "validate recorded); re-run validate — nothing was published"
            )
    loaded_at = datetime.now(timezone.utc)
    tz = config.shop.timezone

    def clean(table: str) -> DataFrame:
        return spark.read.parquet(spark_uri(lake, clean_source_prefix(table, logical_date)))

    frames = {
        "dim_user": (dim_user_rows(clean("users"), tz, loaded_at), ["user_id"]),
        "dim_product": (dim_product_rows(clean("products"), loaded_at), ["product_id"]),
        "fct_orders": (fct_order_rows(clean("orders"), loaded_at), ["order_id"]),
        "fct_order_items": (fct_order_item_rows(clean("order_items"), loaded_at), ["order_id", "line_no"]),
    }
    event_record = read_json(lake, run_record_key("clean", "events", logical_date))
    event_dates = [date.fromisoformat(d) for d in event_record["event_dates"]]

    with engine.connect() as conn:
        published = published_batches(conn, schema) | {logical_date}
    daily = None
    if event_dates and has_parquet(lake, clean_events_prefix()):
        events = spark.read.parquet(spark_uri(lake, clean_events_prefix())).where(
            F.col("event_date").isin(*event_dates) & F.col("batch_date").isin(*sorted(published))
        )
        daily = to_arrow(events_daily_rows(events, loaded_at))

    check_no_gap(published, logical_date)
    outputs = [Output(name, to_arrow(frame), "upsert", keys) for name, (frame, keys) in frames.items()]
    suppressions = to_arrow(dim_suppression_rows(clean("suppressions"), loaded_at))
    outputs.append(Output("dim_suppression", suppressions, "insert_new", ["user_id", "channel"]))
    if daily is not None:  # recomputed whole for every event date the batch touched
        placeholders = ", ".join(f":d{i}" for i in range(len(event_dates)))
        params = {f"d{i}": d for i, d in enumerate(event_dates)}
        outputs.append(Output("fct_events_daily", daily, where=f"event_date in ({placeholders})", params=params))
    counts = publish(
        config,
        logical_date,
        "load",
        "warehouse",
        outputs,
        details={"event_dates": [d.isoformat() for d in event_dates]},
    )
    log.info("published %s: %s", logical_date, counts)
    return {
        "logical_date": logical_date.isoformat(),
        "rows_by_table": counts,
        "event_dates": event_record["event_dates"],
    }
