"""Per-customer daily aggregates of the clean events, so that a night's cost follows the
night's volume rather than the history.

Tags and customer features look back 90 days of behaviour and the recommender 180; reading
those windows from the clean events means rescanning months of events every night. Instead
``clean_events`` writes, with each batch and from that batch's own clean events, two
aggregates of its identified, non-bot events into the clean zone:

- ``clean/user_days/batch_date=D/``: one row per customer and event date: ``sessions`` (the
  distinct session ids), ``events``, ``event_types``, ``channels`` and ``devices`` (value ->
  event count);
- ``clean/user_item_days/batch_date=D/``: one row per customer, product, event date, UTC day
  and event type: ``n`` events and the latest ``last_at``.

Readers take the rows of published batches in their window and aggregate them again (a late
event lands in a later batch, so one key can have rows in two batches). Everything the
features and signals need is a sum, a max, a distinct set or a count per key, so the results
are the same as over the events themselves. A published batch cleaned before these
aggregates existed has none: its clean events are aggregated on the fly instead (logged).
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.platform.lake import DAILY_AGGREGATES, daily_prefix
from jobs.platform.storage import Storage

log = logging.getLogger(__name__)
USER_DAYS, USER_ITEM_DAYS = DAILY_AGGREGATES
USER_DAY_SCHEMA = (
    "event_date date, user_id long, sessions array<string>, events long, event_types map<string,bigint>, "
    "channels map<string,bigint>, devices map<string,bigint>"
)
USER_ITEM_DAY_SCHEMA = (
    "event_date date, day date, user_id long, product_id long, event_type string, n long, last_at timestamp"
)


def _counts(values: Column) -> Column:
    """``value -> occurrences`` of an array (one group's collected values, nulls already out)."""
    distinct = F.array_sort(F.array_distinct(values))
    return F.map_from_entries(
        F.transform(distinct, lambda v: F.struct(v, F.size(F.filter(values, lambda x: x == v)).cast("bigint")))
    )


def user_days(events: DataFrame) -> DataFrame:
    """One row per identified customer and event date of ``events`` (clean events), in one
    aggregation: the few event types, channels and devices of a day are counted in the group."""
    identified = events.where(F.col("user_id").isNotNull())
    days = identified.groupBy("event_date", "user_id").agg(
        F.array_sort(F.collect_set("session_id")).alias("sessions"),
        F.count("*").alias("events"),
        *[F.collect_list(column).alias(column) for column in ("event_type", "channel", "device")],
    )
    return days.select(
        "event_date",
        "user_id",
        "sessions",
        "events",
        _counts(F.col("event_type")).alias("event_types"),
        _counts(F.col("channel")).alias("channels"),
        _counts(F.col("device")).alias("devices"),
    )


def user_item_days(events: DataFrame) -> DataFrame:
    """One row per identified customer, product, event date, UTC day and event type."""
    return (
        events.where(F.col("user_id").isNotNull() & F.col("product_id").isNotNull())
        .groupBy("event_date", F.to_date("event_at").alias("day"), "user_id", "product_id", "event_type")
        .agg(F.count("*").alias("n"), F.max("event_at").alias("last_at"))
    )


def write_daily(lake: Storage, day: date, clean: DataFrame) -> None:
    """Write batch D's aggregates from its clean events (replacing any earlier ones)."""
    from jobs.platform.lake import spark_uri

    kept = clean.where(~F.col("is_bot"))
    for name, build in ((USER_DAYS, user_days), (USER_ITEM_DAYS, user_item_days)):
        # one file per batch: a night's rows are few (one per customer and day, not per event)
        build(kept).coalesce(1).write.mode("overwrite").parquet(spark_uri(lake, daily_prefix(name, day)))


def daily_expectations() -> list[Column]:
    """Aggregate columns over a batch's clean events: the events each aggregate must count
    (``expected_user_days``, ``expected_user_item_days``), for :func:`check_daily`."""
    counted = ~F.col("is_bot") & F.col("user_id").isNotNull()
    return [
        F.count(F.when(counted, 1)).alias(f"expected_{USER_DAYS}"),
        F.count(F.when(counted & F.col("product_id").isNotNull(), 1)).alias(f"expected_{USER_ITEM_DAYS}"),
    ]


def check_daily(lake: Storage, day: date, expected: dict) -> None:
    """Read batch D's aggregates back and fail unless they count every event they should
    (``expected``: the columns of :func:`daily_expectations`)."""
    from pyspark.sql import SparkSession

    from jobs.platform.errors import PublishMismatchError
    from jobs.platform.lake import spark_uri

    spark = SparkSession.active()
    for name, column in ((USER_DAYS, "events"), (USER_ITEM_DAYS, "n")):
        uri = spark_uri(lake, daily_prefix(name, day))
        held = spark.read.parquet(uri).agg(F.sum(column)).first()[0] or 0
        if held != expected[f"expected_{name}"]:
            raise PublishMismatchError(
                f"{name} {day}: the clean events hold {expected[f'expected_{name}']:,} events for it but "
                f"{uri} counts {held:,}; re-run clean_events"
            )


def published_daily(config, name: str, batches: set[date], as_of: date, days: int) -> DataFrame:
    """Rows of aggregate ``name`` from published batches with event_date in (D - days, D]."""
    from jobs.platform.lake import clean_events_prefix, lake_storage, spark_uri
    from jobs.platform.spark import get_spark

    spark = get_spark(config)
    lake = lake_storage(config)
    schema = USER_DAY_SCHEMA if name == USER_DAYS else USER_ITEM_DAY_SCHEMA
    columns = [field.split(" ")[0] for field in schema.split(", ")]
    window = (F.col("event_date") > F.date_sub(F.lit(as_of), days)) & (F.col("event_date") <= F.lit(as_of))
    wanted = {day for day in batches if day <= as_of}
    built = _batches_with(lake, daily_prefix(name)) & wanted
    frames = []
    if built:
        stored = spark.read.parquet(spark_uri(lake, daily_prefix(name)))
        frames.append(stored.where(F.col("batch_date").isin(*sorted(built)) & window).select(*columns))
    missing = sorted(_batches_with(lake, clean_events_prefix()) & (wanted - built)) if wanted - built else []
    if missing:
        log.warning(
            "%d published batches (%s to %s) have no %s aggregate (cleaned before it existed): "
            "aggregating their clean events instead; re-run clean_events for them to build it",
            len(missing), missing[0], missing[-1], name,
        )  # fmt: skip
        events = spark.read.parquet(spark_uri(lake, clean_events_prefix()))
        kept = events.where(F.col("batch_date").isin(*missing) & window & ~F.col("is_bot"))
        build = user_days if name == USER_DAYS else user_item_days
        frames.append(build(kept).select(*columns))
    if not frames:
        return spark.createDataFrame([], schema)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _batches_with(lake: Storage, prefix: str) -> set[date]:
    """Batch dates with at least one Parquet file under ``prefix`` (one listing)."""
    found = set()
    for info in lake.list(prefix):
        head = info.key[len(prefix) :].split("/", 1)[0]
        if head.startswith("batch_date=") and info.key.endswith(".parquet"):
            found.add(date.fromisoformat(head.removeprefix("batch_date=")))
    return found
