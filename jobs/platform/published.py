"""Readers of published data: the one way a stage downstream of ``load`` reads its inputs.

A batch (logical date) is published once ``load`` recorded it in ``ops_pipeline_runs``. Stages
built on published data read the clean lake zone restricted to published batches, and take the
latest version of every source row as of their date, so a batch that failed validation is
never seen downstream.
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import UpstreamNotReadyError
from jobs.platform.warehouse import as_date


def latest_per_key(frame: DataFrame, keys: list[str]) -> tuple[DataFrame, DataFrame]:
    """Latest ``updated_at`` per key wins; returns ``(latest, superseded duplicates)``."""
    order = Window.partitionBy(*keys).orderBy(F.col("updated_at").desc_nulls_last())
    ranked = frame.withColumn("_rank", F.row_number().over(order))
    return ranked.where("_rank = 1").drop("_rank"), ranked.where("_rank > 1").drop("_rank")


def published_batches(conn: sa.Connection, schema: str) -> set[date]:
    """Dates whose ``load`` succeeded."""
    rows = conn.execute(
        sa.text(
            f"select logical_date from {schema}.ops_pipeline_runs "
            "where stage = 'load' and dataset = 'warehouse' and status = 'success'"
        )
    ).scalars()
    return {as_date(value) for value in rows}


def check_no_gap(published: set[date], day: date) -> None:
    """Refuse to publish ``day`` on top of a missing date: the latest published date before it
    must be the day before (or nothing is published before it yet: the first night).

    A failed date is not skipped over: later dates wait (Airflow retries this error) until
    the missing date is published, e.g. re-run after a fix, or run as an empty day."""
    earlier = [d for d in published if d < day]
    if earlier and max(earlier) != day - timedelta(days=1):
        missing = max(earlier) + timedelta(days=1)
        last = day - timedelta(days=1)
        span = str(missing) if missing == last else f"{missing} to {last}"
        raise UpstreamNotReadyError(
            f"{day} is not published: {span} not published yet (failed or not run), and a date never builds "
            f"on a gap; publish {span} first (marketing run --date {missing}), then re-run {day}"
        )


def _current(
    spark, config: PipelineConfig, table: str, key: str | tuple[str, ...], as_of: date, batches: set[date]
) -> DataFrame:
    """Latest clean version of every row of a source table, from published batches up to D."""
    from jobs.platform.lake import clean_source_prefix, lake_storage, spark_uri

    # mergeSchema: batches cleaned before a column was added to the interface read it as null
    reader = spark.read.option("mergeSchema", "true")
    frame = reader.parquet(spark_uri(lake_storage(config), clean_source_prefix(table))).where(
        (F.col("extract_date") <= F.lit(as_of)) & F.col("extract_date").isin(*sorted(batches))
    )
    latest, _ = latest_per_key(frame, [key] if isinstance(key, str) else list(key))
    return latest


def published_tables(
    config: PipelineConfig, as_of: date, keys: dict[str, str | tuple[str, ...]]
) -> tuple[set[date], dict[str, DataFrame]]:
    """Published batches and the current version (as of D) of each source table in ``keys``
    (table -> key column or columns); refuses a D that is not published.

    What every stage after ``load`` wants, applied here once: ``products`` are merchandise only
    and ``order_items`` merchandise lines only (shipping, fees, adjustments... are in order
    totals, never in baskets, signals, interest or lists); ``orders`` have their returns applied
    (:func:`apply_returns`). Guest orders (``user_id`` null) are kept: customer stages drop
    them, baskets and popularity count them."""
    from jobs.platform.ops import warehouse_engine
    from jobs.platform.spark import get_spark

    spark = get_spark(config)
    engine = warehouse_engine(config)
    with engine.connect() as conn:
        batches = published_batches(conn, config.warehouse.schema_name)
    if as_of not in batches:
        raise UpstreamNotReadyError(
            f"{as_of} is not published yet (no successful load of that date): this stage reads published data only"
        )
    current = {table: _current(spark, config, table, key, as_of, batches) for table, key in keys.items()}
    if "products" in current:
        current["products"] = merchandise(current["products"])
    lines = current.get("order_items")
    if lines is None and "orders" in current:  # credit notes are matched to sales by their lines
        lines = _current(spark, config, "order_items", ("order_id", "line_no"), as_of, batches)
    if lines is not None:
        goods = current.get("products")
        if goods is None:
            goods = merchandise(_current(spark, config, "products", "product_id", as_of, batches))
        lines = lines.join(goods.select("product_id"), "product_id", "left_semi")
    if "order_items" in current:
        current["order_items"] = lines
    if "orders" in current:
        current["orders"] = apply_returns(current["orders"], lines)
    return batches, current


def with_defaults(frame: DataFrame, defaults: dict[str, object], types: dict[str, str]) -> DataFrame:
    """``frame`` with each absent column of ``defaults`` added as its default (typed)."""
    for name, value in defaults.items():
        if name not in frame.columns:
            frame = frame.withColumn(name, F.lit(value).cast(types[name]))
    return frame


ORDER_DEFAULTS = {"order_type": "sale", "original_order_id": None}
ORDER_TYPES_SQL = {"order_type": "string", "original_order_id": "bigint"}


def infer_return_links(orders: DataFrame, order_items: DataFrame) -> DataFrame:
    """``order_id, inferred_order_id``: for each credit note with a customer and no link, the
    sale it most likely reverses. That is the customer's earlier sale sharing the most of the
    credit note's products; among equals, the latest. Real shops' cancellations are often
    separate invoices with negative quantities that do not name the order they reverse."""
    returns = orders.where(
        (F.col("order_type") == "return") & F.col("original_order_id").isNull() & F.col("user_id").isNotNull()
    ).select("order_id", "user_id", F.col("created_at").alias("_returned_at"))
    sales = orders.where((F.col("order_type") == "sale") & F.col("user_id").isNotNull()).select(
        F.col("order_id").alias("sale_id"), "user_id", F.col("created_at").alias("_sold_at")
    )
    lines = order_items.select("order_id", "product_id")
    returned = lines.join(returns, "order_id")
    sold = lines.withColumnRenamed("order_id", "sale_id").join(sales, "sale_id")
    shared = (
        returned.join(sold, ["user_id", "product_id"])
        .where(F.col("_sold_at") <= F.col("_returned_at"))
        .groupBy("order_id", "sale_id", "_sold_at")
        .agg(F.countDistinct("product_id").alias("_shared"))
    )
    best = Window.partitionBy("order_id").orderBy(F.desc("_shared"), F.desc("_sold_at"), F.desc("sale_id"))
    return (
        shared.withColumn("_rank", F.row_number().over(best))
        .where("_rank = 1")
        .select("order_id", F.col("sale_id").alias("inferred_order_id"))
    )


def apply_returns(orders: DataFrame, order_items: DataFrame | None = None) -> DataFrame:
    """Orders as every stage after ``load`` sees them: returns applied to the sales they reverse.

    - a credit note (``order_type = 'return'``) gets status ``returned``: it is never a purchase;
    - it reverses the sale it names (``original_order_id``) or, without a link, the sale
      :func:`infer_return_links` finds (needs ``order_items``); ``reverses_order_id`` says which;
    - a sale keeps ``gross_total_amount`` (as placed) and gets ``returned_amount`` (its credit
      notes' total, positive) and ``total_amount`` = what is left (never below 0); a sale whose
      credit notes reach its total gets status ``returned``: not a purchase for RFM frequency,
      the recommender's signals, baskets or campaign eligibility;
    - a cancelled credit note reverses nothing.

    Sources without credit notes pass through unchanged (every ``returned_amount`` 0)."""
    from jobs.platform.interface import RETURNED

    orders = with_defaults(orders, ORDER_DEFAULTS, ORDER_TYPES_SQL)
    link = F.col("original_order_id")
    if order_items is not None:
        inferred = infer_return_links(orders, order_items)
        orders = (
            orders.join(inferred, "order_id", "left")
            .withColumn("reverses_order_id", F.coalesce(link, F.col("inferred_order_id")))
            .drop("inferred_order_id")
        )
    else:
        orders = orders.withColumn("reverses_order_id", link)
    is_return = F.col("order_type") == "return"
    reversed_amounts = (
        orders.where(is_return & (F.col("status") != "cancelled") & F.col("reverses_order_id").isNotNull())
        .groupBy(F.col("reverses_order_id").alias("order_id"))
        .agg((-F.sum("total_amount")).alias("returned_amount"))
    )
    zero = F.lit(0).cast("decimal(14,2)")
    gross = F.col("gross_total_amount")
    returned = F.coalesce(F.col("returned_amount").cast("decimal(14,2)"), zero)
    left = F.greatest(gross - returned, zero).cast("decimal(14,2)")
    fully = ~is_return & (returned > 0) & (left <= 0)
    return (
        orders.withColumnRenamed("total_amount", "gross_total_amount")
        .join(reversed_amounts, "order_id", "left")
        .withColumn("returned_amount", F.when(is_return, zero).otherwise(returned))
        .withColumn("total_amount", F.when(is_return, gross).otherwise(left))
        .withColumn("status", F.when(is_return | fully, F.lit(RETURNED)).otherwise(F.col("status")))
    )


def merchandise(products: DataFrame) -> DataFrame:
    """Products that are goods (``is_merchandise``; a batch cleaned before the flag existed
    counts as goods)."""
    if "is_merchandise" not in products.columns:
        return products
    return products.where(F.coalesce(F.col("is_merchandise"), F.lit(True)))


CUSTOMER_EVENT_SCHEMA = (
    "user_id long, event_type string, event_at timestamp, event_date date, session_id string, product_id long, "
    "channel string, device string"
)


def published_events(
    config,
    batches: set[date],
    as_of: date,
    days: int,
    *,
    anonymous: bool = False,
    schema: str = CUSTOMER_EVENT_SCHEMA,
) -> DataFrame:
    """Non-bot clean events of published batches with event_date in (D - days, D], with the
    columns of ``schema``: identified customers' only, or every visitor's with ``anonymous``."""
    from jobs.platform.lake import clean_events_prefix, has_parquet, lake_storage, spark_uri
    from jobs.platform.spark import get_spark

    spark = get_spark(config)
    lake = lake_storage(config)
    if not batches or not has_parquet(lake, clean_events_prefix()):
        return spark.createDataFrame([], schema)
    events = spark.read.parquet(spark_uri(lake, clean_events_prefix()))
    wanted = (
        F.col("batch_date").isin(*sorted(batches))
        & (F.col("event_date") > F.date_sub(F.lit(as_of), days))
        & (F.col("event_date") <= F.lit(as_of))
        & ~F.col("is_bot")
    )
    if not anonymous:
        wanted &= F.col("user_id").isNotNull()
    return events.where(wanted).select(*[field.split(" ")[0] for field in schema.split(", ")])
