"""Per-customer daily aggregates: features, interests and recommender signals read from them
equal the same computed over the events themselves, also when a day's events arrive in two
batches; the lake reader takes published batches only and aggregates on the fly for a batch
cleaned before the aggregates existed."""

from datetime import timedelta

import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.customers.tags import event_features, interest_scores
from jobs.customers.tags_config import load_tags
from jobs.platform.daily import USER_DAYS, USER_ITEM_DAYS, published_daily, user_days, user_item_days, write_daily
from jobs.platform.lake import clean_events_prefix, daily_prefix, has_parquet, lake_storage, spark_uri
from jobs.recommender.interactions import event_signals
from jobs.simulator import SimulationSpec, generate

SPEC = SimulationSpec(users=400, days=45, seed=5, dirt_rate=0.0)
AS_OF = SPEC.start_date + timedelta(days=SPEC.days - 1)
WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "wishlist_add": 2.0}


@pytest.fixture(scope="module")
def events(spark):
    """The simulated shop's identified non-bot events as clean events, each in one of two
    batches (so that many customer-days are split between them, as late data splits them)."""
    ev = generate(SPEC).events
    ev = ev[ev["user_id"].notna() & ~ev["is_bot"]]
    frame = pd.DataFrame(
        {
            "event_type": ev["event_type"].astype(str),
            "event_at": ev["event_ts"].dt.tz_localize(None),
            "event_date": ev["local_date"].dt.date,
            "user_id": ev["user_id"].astype("int64"),
            "session_id": ev["session_id"].astype(str),
            "product_id": ev["product_id"].astype("float").astype("Int64"),
            "channel": ev["channel"].astype(str),
            "device": ev["device"].astype(str),
            "is_bot": False,
            "batch": ev["event_id"].str[-1].map(lambda digit: int(digit, 16) % 2),
        }
    )
    return spark.createDataFrame(frame).persist()


def both_batches(events, build):
    return build(events.where("batch = 0")).unionByName(build(events.where("batch = 1")))


def rows(frame, key):
    return frame.toPandas().sort_values(key).reset_index(drop=True)


def test_features_from_daily_aggregates_equal_the_features_over_the_events(events):
    recent = events.where(F.col("event_date") > F.date_sub(F.lit(AS_OF), 30))
    expected = recent.groupBy("user_id").agg(
        F.countDistinct("event_date").alias("active_days"),
        F.countDistinct("session_id").alias("sessions"),
        F.count(F.when(F.col("event_type") == "product_view", 1)).alias("product_views"),
        F.count(F.when(F.col("event_type") == "add_to_cart", 1)).alias("cart_adds"),
        F.max("event_date").alias("events_evidence_date"),
        F.mode("channel", True).alias("preferred_channel"),
        F.mode("device", True).alias("preferred_device"),
    )
    got = event_features(both_batches(events, user_days), AS_OF, 30)
    columns = ["user_id", "sessions", "product_views", "cart_adds", "events_evidence_date"]
    columns += ["active_days", "preferred_channel", "preferred_device"]
    want, have = rows(expected.select(*columns), "user_id"), rows(got.select(*columns), "user_id")
    assert len(want) > 300
    pd.testing.assert_frame_equal(have, want, check_dtype=False)


def test_interests_and_signals_from_daily_aggregates_equal_those_over_the_events(spark, events):
    # recommender signals: one per user, product, UTC day and type, capped per day
    weight = F.lit(None).cast("double")
    for event_type, value in WEIGHTS.items():
        weight = F.when(F.col("event_type") == event_type, F.lit(value)).otherwise(weight)
    expected = (
        events.where(F.col("product_id").isNotNull())
        .withColumn("w", weight)
        .where(F.col("w") > 0)
        .groupBy("user_id", "product_id", F.to_date("event_at"), "event_type", "w")
        .agg(F.count("*").alias("n"), F.max("event_at").alias("ts"))
        .select("user_id", F.col("product_id").alias("item_id"), "ts", (F.col("w") * F.least("n", F.lit(4))).alias("weight"))
    )  # fmt: skip
    got = event_signals(both_batches(events, user_item_days), WEIGHTS, max_per_day=4)
    key = ["user_id", "item_id", "ts", "weight"]
    pd.testing.assert_frame_equal(rows(got.select(*key), key), rows(expected.select(*key), key))

    tags = load_tags()
    products = spark.createDataFrame(pd.DataFrame(generate(SPEC).products[["product_id", "category_l1", "brand"]]))
    no_items = spark.createDataFrame([], "user_id long, product_id long, order_date date")
    settings = tags.interest.model_copy(
        update={"weights": {k: v for k, v in tags.interest.weights.items() if k != "purchase"}}
    )
    one_pass = interest_scores(user_item_days(events), no_items, products, AS_OF, settings, 3)
    split = interest_scores(both_batches(events, user_item_days), no_items, products, AS_OF, settings, 3)
    key = ["user_id", "dimension", "rank"]
    want, have = rows(one_pass, key), rows(split, key)
    assert len(want) > 500
    pd.testing.assert_frame_equal(have, want)


def test_the_lake_reader_takes_published_batches_and_covers_batches_without_aggregates(spark, events, make_config):
    config = make_config()
    lake = lake_storage(config)
    day = AS_OF
    batches = {day - timedelta(days=2): "batch = 0", day - timedelta(days=1): "batch = 1", day: "false"}
    for batch, rows_of in batches.items():
        clean = events.where(rows_of).drop("batch")
        clean.write.mode("overwrite").partitionBy("event_date").parquet(spark_uri(lake, clean_events_prefix(batch)))
        if batch != day - timedelta(days=1):  # cleaned "before the aggregates existed"
            write_daily(lake, batch, clean)
    assert has_parquet(lake, daily_prefix(USER_DAYS, day))  # an empty batch still leaves its schema
    if not has_parquet(lake, clean_events_prefix(day)):
        spark.createDataFrame([], events.drop("batch", "event_date").schema).write.parquet(
            spark_uri(lake, clean_events_prefix(day) + f"event_date={day}/")
        )

    got = published_daily(config, USER_DAYS, set(batches), AS_OF, 20)
    want = user_days(events.where(F.col("event_date") > F.lit(AS_OF - timedelta(days=20))))
    assert event_features(got, AS_OF, 20).orderBy("user_id").collect() == (
        event_features(want, AS_OF, 20).orderBy("user_id").collect()
    )
    # an unpublished batch is not read
    only_first = published_daily(config, USER_ITEM_DAYS, {day - timedelta(days=2)}, AS_OF, 20)
    assert (
        only_first.count()
        == user_item_days(
            events.where((F.col("batch") == 0) & (F.col("event_date") > F.lit(AS_OF - timedelta(days=20))))
        ).count()
    )


def test_aggregates_written_short_of_the_clean_events_fail_the_batch(spark, events, make_config):
    from jobs.platform.daily import check_daily, daily_expectations
    from jobs.platform.errors import PublishMismatchError

    lake = lake_storage(make_config())
    clean = events.where("batch = 0").drop("batch")
    expected = clean.agg(*daily_expectations()).first().asDict()
    write_daily(lake, AS_OF, clean)
    check_daily(lake, AS_OF, expected)  # what was written counts every event

    one_user = clean.where("user_id is not null").first()["user_id"]
    write_daily(lake, AS_OF, clean.where(F.col("user_id") != one_user))  # a write that lost a customer's rows
    with pytest.raises(PublishMismatchError, match=rf"^user_days {AS_OF}: the clean events hold [\d,]+ events"):
        check_daily(lake, AS_OF, expected)
