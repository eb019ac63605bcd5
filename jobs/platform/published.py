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

    frame = spark.read.parquet(spark_uri(lake_storage(config), clean_source_prefix(table))).where(
        (F.col("extract_date") <= F.lit(as_of)) & F.col("extract_date").isin(*sorted(batches))
    )
    latest, _ = latest_per_key(frame, [key] if isinstance(key, str) else list(key))
    return latest


def published_tables(
    config: PipelineConfig, as_of: date, keys: dict[str, str | tuple[str, ...]]
) -> tuple[set[date], dict[str, DataFrame]]:
    """Published batches and the current version (as of D) of each source table in ``keys``
    (table -> key column or columns); refuses a D that is not published."""
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
    return batches, {table: _current(spark, config, table, key, as_of, batches) for table, key in keys.items()}


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
