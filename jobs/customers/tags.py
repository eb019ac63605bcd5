"""Customer tags (Spark + scikit-learn): features per user, tags from ``config/tags.yaml``,
published long (``mart_user_tags``) and wide (``mart_user_profile``).

Feature sources, one row per registered user (counts are 0 where a user has no data, other
features null; see :data:`jobs.customers.tags_config.FEATURES`):

- ``users``    registration attributes as of D;
- ``orders``   order behaviour over ``orders_lookback_days`` (all statuses; purchases are the
               statuses of ``segments.yaml``), plus an IsolationForest anomaly score;
- ``events``   identified, non-bot behaviour over ``events_lookback_days``;
- ``interest`` per user and category/brand, the time-decayed weighted sum of behaviour and
               purchases (``weight x 0.5 ** (age_days / half_life_days)``), as a share.

Behaviour is read from the customers' daily aggregates (``jobs.platform.daily``), not from the
events: the same features, at the cost of a row per customer and day.

Each tag becomes rows ``(user_id, tag, value, score, rank, evidence_date)``; every kind is a
Spark column expression, so all tags of a source come from one pass over its feature frame.
The profile joins the users' attributes with the same date's RFM, lifecycle and score marts
and one ``tag_<name>`` column per tag (added to the table when a new tag first appears;
multi-valued tags are comma-joined by rank). Both tables are replaced per snapshot date in one
transaction; snapshots older than ``history_days`` are dropped.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.customers.tags_config import Condition, TagDef, TagsConfig, load_tags
from jobs.platform.daily import USER_DAYS, USER_ITEM_DAYS, published_daily
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.published import published_tables
from jobs.platform.warehouse import read_sql, to_arrow
from models.anomaly import anomaly_scores

log = logging.getLogger(__name__)
COUNT_FEATURES = (
    "orders",
    "purchases",
    "active_days",
    "active_days_30",
    "sessions",
    "product_views",
    "cart_adds",
)
EVIDENCE = {
    "users": "users_evidence_date",
    "orders": "orders_evidence_date",
    "events": "events_evidence_date",
}
PROFILE_BASE = (
    "snapshot_date", "user_id", "gender", "age", "region", "city", "signup_date",
    "has_email_consent", "has_sms_consent", "has_push_consent",
)  # fmt: skip


def user_features(users: DataFrame, as_of: date, tz: str) -> DataFrame:
    signup_date = F.to_date(F.from_utc_timestamp("signup_at", tz))
    return users.where(signup_date <= F.lit(as_of)).select(
        "user_id",
        "gender",
        (F.lit(as_of.year) - F.col("birth_year")).cast("int").alias("age"),
        "region",
        "city",
        signup_date.alias("signup_date"),
        F.datediff(F.lit(as_of), signup_date).alias("signup_days"),
        F.col("consent_email").alias("has_email_consent"),
        F.col("consent_sms").alias("has_sms_consent"),
        F.col("consent_push").alias("has_push_consent"),
        F.to_date(F.from_utc_timestamp("updated_at", tz)).alias("users_evidence_date"),
    )


def order_features(orders: DataFrame, statuses: tuple[str, ...], as_of: date, lookback_days: int) -> DataFrame:
    """Per user with an order in the lookback; ``tenure_days`` counts from the first purchase ever."""
    known = orders.where((F.col("order_date") <= F.lit(as_of)) & F.col("user_id").isNotNull())  # not guests
    bought = F.col("status").isin(*statuses)
    amount = F.col("total_amount").cast("double")
    recent = known.where(F.col("order_date") > F.date_sub(F.lit(as_of), lookback_days))
    per_user = recent.groupBy("user_id").agg(
        F.count("*").alias("orders"),
        F.count(F.when(bought, 1)).alias("purchases"),
        F.round(F.coalesce(F.sum(F.when(bought, amount)), F.lit(0.0)), 2).alias("net_spend"),
        F.max(F.when(bought, amount)).alias("max_order_value"),
        F.avg(F.when(bought, (F.col("discount_amount") > 0).cast("double"))).alias("discount_share"),
        F.avg(F.when(bought, F.col("coupon_code").isNotNull().cast("double"))).alias("coupon_share"),
        F.avg(
            F.when(
                bought,
                ((F.col("discount_amount") > 0) | F.col("coupon_code").isNotNull()).cast("double"),
            )
        ).alias("promo_share"),
        F.avg((F.col("status") == "cancelled").cast("double")).alias("cancel_rate"),
        F.avg((F.col("status") == "refunded").cast("double")).alias("refund_rate"),
        F.max("order_date").alias("orders_evidence_date"),
        F.mode("channel", True).alias("preferred_order_channel"),
    )
    first = known.where(bought).groupBy("user_id").agg(F.min("order_date").alias("first_purchase_date"))
    return (
        per_user.join(first, "user_id", "left")
        .withColumn(
            "avg_order_value",
            F.when(F.col("purchases") > 0, F.round(F.col("net_spend") / F.col("purchases"), 2)),
        )
        .withColumn(
            "repeat_rate",
            F.when(F.col("purchases") > 0, (F.col("purchases") - 1) / F.col("purchases")),
        )
        .withColumn("tenure_days", F.datediff(F.lit(as_of), "first_purchase_date"))
        .withColumn("days_since_last_order", F.datediff(F.lit(as_of), "orders_evidence_date"))
        .drop("first_purchase_date")
    )


def event_features(days: DataFrame, as_of: date, lookback_days: int) -> DataFrame:
    """Per user with identified, non-bot behaviour in the lookback (``days``: the customers'
    daily aggregates, :func:`jobs.platform.daily.user_days`)."""
    recent = days.where(F.col("event_date") > F.date_sub(F.lit(as_of), lookback_days))
    last_30 = F.col("event_date") > F.date_sub(F.lit(as_of), 30)
    per_user = recent.groupBy("user_id").agg(
        F.countDistinct("event_date").alias("active_days"),
        F.countDistinct(F.when(last_30, F.col("event_date"))).alias("active_days_30"),
        F.size(F.array_distinct(F.flatten(F.collect_list("sessions")))).cast("long").alias("sessions"),
        F.coalesce(F.sum(F.col("event_types")["product_view"]), F.lit(0)).alias("product_views"),
        F.coalesce(F.sum(F.col("event_types")["add_to_cart"]), F.lit(0)).alias("cart_adds"),
        F.max("event_date").alias("events_evidence_date"),
        F.datediff(F.lit(as_of), F.max("event_date")).alias("days_since_last_visit"),
    )
    for counts, name in (("channels", "preferred_channel"), ("devices", "preferred_device")):
        per_user = per_user.join(_most_frequent(recent, counts, name), "user_id", "left")
    return per_user


def _most_frequent(days: DataFrame, counts: str, name: str) -> DataFrame:
    """``user_id, <name>``: the value with the most events in the ``counts`` maps of each
    user's days, the lowest on a tie (as ``mode(..., deterministic=True)`` over the events)."""
    summed = (
        days.select("user_id", F.explode(counts).alias("value", "n"))
        .groupBy("user_id", "value")
        .agg(F.sum("n").alias("n"))
    )
    best = F.min(F.struct((-F.col("n")).alias("rank"), F.col("value")))
    return summed.groupBy("user_id").agg(best["value"].alias(name))


def interest_scores(
    item_days: DataFrame, items: DataFrame, products: DataFrame, as_of: date, settings, max_rank: int
) -> DataFrame:
    """``user_id, dimension, value, share, rank, evidence_date`` for category and brand, top
    ``max_rank`` per user and dimension (``item_days``: the customers' daily aggregates per
    product, :func:`jobs.platform.daily.user_item_days`; ``items``: purchased order lines with
    ``order_date``)."""
    weights = settings.weights
    start = F.date_sub(F.lit(as_of), settings.lookback_days)
    event_weight = F.lit(None).cast("double")
    for event_type, weight in weights.items():
        event_weight = F.when(F.col("event_type") == event_type, F.lit(float(weight))).otherwise(event_weight)
    signals = item_days.where(F.col("event_date") > start).select(
        "user_id", "product_id", F.col("event_date").alias("day"), (event_weight * F.col("n")).alias("weight")
    )
    if "purchase" in weights:
        signals = signals.unionByName(
            items.where((F.col("order_date") > start) & (F.col("order_date") <= F.lit(as_of))).select(
                "user_id",
                "product_id",
                F.col("order_date").alias("day"),
                F.lit(float(weights["purchase"])).alias("weight"),
            )
        )
    decay = F.pow(F.lit(0.5), F.datediff(F.lit(as_of), "day") / F.lit(float(settings.half_life_days)))
    catalog = products.select("product_id", F.col("category_l1").alias("category"), F.col("brand"))
    weighted = (
        signals.where(F.col("weight").isNotNull()).join(catalog, "product_id").withColumn("w", F.col("weight") * decay)
    )
    long = weighted.select(
        "user_id", "day", "w", F.explode(F.array(
            F.struct(F.lit("category").alias("dimension"), F.col("category").alias("value")),
            F.struct(F.lit("brand").alias("dimension"), F.col("brand").alias("value")),
        )).alias("d")
    ).select("user_id", "day", "w", "d.dimension", "d.value").where(F.col("value").isNotNull())  # fmt: skip
    summed = long.groupBy("user_id", "dimension", "value").agg(F.sum("w").alias("w"), F.max("day").alias("last_day"))
    per_user = Window.partitionBy("user_id", "dimension")
    ranked = summed.select(
        "user_id",
        "dimension",
        "value",
        F.round(F.col("w") / F.sum("w").over(per_user), 4).alias("share"),
        F.row_number().over(per_user.orderBy(F.col("w").desc(), "value")).alias("rank"),
        F.max("last_day").over(per_user).alias("evidence_date"),
    )
    return ranked.where(F.col("rank") <= max_rank)


def condition(when: Condition) -> Column:
    """All conditions of a ``when`` mapping as one boolean column (null counts as false)."""
    result = F.lit(True)
    for feature, tests in when.items():
        column = F.col(feature)
        for op, value in tests.items():
            test = {
                "eq": lambda c, v: c == F.lit(v),
                "ne": lambda c, v: c != F.lit(v),
                "lt": lambda c, v: c < F.lit(v),
                "lte": lambda c, v: c <= F.lit(v),
                "gt": lambda c, v: c > F.lit(v),
                "gte": lambda c, v: c >= F.lit(v),
                "in": lambda c, v: c.isin(*v),
                "not_in": lambda c, v: ~c.isin(*v),
                "is_null": lambda c, v: c.isNull() if v else c.isNotNull(),
                "top": lambda c, v: _ranked(c, v, descending=True),
                "bottom": lambda c, v: _ranked(c, v, descending=False),
            }[op](column, value)
            result = result & F.coalesce(test, F.lit(False))
    return result


def _ranked(column: Column, share: float, descending: bool) -> Column:
    """The value ranks within the highest (lowest) ``share`` of the present values (as
    ``jobs.platform.conditions``'s ``top`` / ``bottom``: rank from 1, ties at their lowest rank)."""
    order = column.desc_nulls_last() if descending else column.asc_nulls_last()
    rank = F.rank().over(Window.orderBy(order))
    present = F.count(column).over(Window.partitionBy())
    return column.isNotNull() & (rank <= F.lit(share) * present)


def _percentile_column(tag: TagDef) -> str:
    return f"_pct_{tag.name}"


def with_percentiles(features: DataFrame, tags: tuple[TagDef, ...]) -> DataFrame:
    """For each quantile_tiers tag, the mean percent rank of its features within its population."""
    for tag in tags:
        if tag.kind != "quantile_tiers":
            continue
        member = condition(tag.where)
        for name in tag.features:
            member = member & F.col(name).isNotNull()
        ranks = [F.percent_rank().over(Window.partitionBy(member).orderBy(name)) for name in tag.features]
        mean = ranks[0]
        for rank in ranks[1:]:
            mean = mean + rank
        features = features.withColumn(_percentile_column(tag), F.when(member, F.round(mean / len(ranks), 4)))
    return features


def tag_value(tag: TagDef) -> tuple[Column, Column]:
    """``(value, score)`` columns of a non-interest tag over its source's feature frame."""
    if tag.kind == "attribute":
        return F.col(tag.feature).cast("string"), F.lit(None).cast("double")
    if tag.kind == "rules":
        value = None
        for rule in tag.rules:
            value = (
                F.when(condition(rule.when), rule.value)
                if value is None
                else value.when(condition(rule.when), rule.value)
            )
        value = value.otherwise(F.lit(tag.default)) if tag.default is not None else value
        score = F.col(tag.score).cast("double") if tag.score else F.lit(None).cast("double")
        return value, score
    percentile = F.col(_percentile_column(tag))
    value = None
    for tier in tag.tiers[:-1]:
        value = (
            F.when(percentile < tier.below, tier.value)
            if value is None
            else value.when(percentile < tier.below, tier.value)
        )
    last = F.when(percentile.isNotNull(), tag.tiers[-1].value)
    value = last if value is None else value.otherwise(last)
    return value, percentile.cast("double")


def _fresh(evidence: Column, tag: TagDef, as_of: date) -> Column:
    if tag.freshness_days is None:
        return F.lit(True)
    return F.coalesce(F.datediff(F.lit(as_of), evidence) <= tag.freshness_days, F.lit(False))


def compute_tags(features: DataFrame, interest: DataFrame | None, config: TagsConfig, as_of: date) -> DataFrame:
    """Long tag rows ``user_id, tag, value, score, rank, source, evidence_date`` for every tag."""
    plain = [t for t in config.tags if t.kind != "top_n"]
    frames = []
    if plain:
        ranked = with_percentiles(features, tuple(plain))
        structs = []
        for tag in plain:
            value, score = tag_value(tag)
            evidence = F.col(EVIDENCE[tag.source])
            keep = condition(tag.where) & _fresh(evidence, tag, as_of)
            structs.append(
                F.struct(
                    F.lit(tag.name).alias("tag"),
                    F.when(keep, value).alias("value"),
                    score.alias("score"),
                    F.lit(1).alias("rank"),
                    F.lit(tag.source).alias("source"),
                    evidence.alias("evidence_date"),
                )
            )
        frames.append(
            ranked.select("user_id", F.explode(F.array(*structs)).alias("t"))
            .select("user_id", "t.*")
            .where(F.col("value").isNotNull())
        )
    for tag in config.tags:
        if tag.kind != "top_n" or interest is None:
            continue
        chosen = interest.where(
            (F.col("dimension") == tag.dimension) & (F.col("rank") <= tag.top) & (F.col("share") >= tag.min_share)
            & _fresh(F.col("evidence_date"), tag, as_of)
        )  # fmt: skip
        frames.append(
            chosen.select(
                "user_id",
                F.lit(tag.name).alias("tag"),
                "value",
                F.col("share").cast("double").alias("score"),
                F.col("rank").cast("int").alias("rank"),
                F.lit("interest").alias("source"),
                "evidence_date",
            )
        )
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def user_feature_frame(
    users: DataFrame,
    orders: DataFrame,
    days: DataFrame,
    config: TagsConfig,
    statuses: tuple[str, ...],
    as_of: date,
    tz: str,
) -> DataFrame:
    """All features of every registered user as of D: users + orders (+ anomaly) + events
    (``days``: the customers' daily aggregates)."""
    spark = users.sparkSession
    base = user_features(users, as_of, tz)
    ordered = order_features(orders, statuses, as_of, config.orders_lookback_days).persist()
    order_columns = ["user_id", *dict.fromkeys(config.anomaly.features)]
    anomalies = anomaly_scores(ordered.select(*order_columns).toPandas(), config.anomaly)
    schema = "user_id long, anomaly_score double, is_anomaly boolean"
    anomaly_frame = spark.createDataFrame(anomalies, schema) if len(anomalies) else spark.createDataFrame([], schema)
    behaved = event_features(days, as_of, config.events_lookback_days)
    frame = base.join(ordered.join(anomaly_frame, "user_id", "left"), "user_id", "left").join(
        behaved, "user_id", "left"
    )
    return frame.fillna(0, subset=list(COUNT_FEATURES))


def build_tags(config, as_of: date, tags: TagsConfig | None = None) -> dict:
    """Compute and publish ``mart_user_tags`` and ``mart_user_profile`` for D (one transaction)."""
    from jobs.platform.errors import UpstreamNotReadyError
    from jobs.platform.ops import warehouse_engine
    from jobs.platform.publish import Output, publish, snapshot
    from jobs.platform.warehouse import add_profile_tag_columns, delete_where

    tags = tags or load_tags(config.customers.tags_file)
    if not config.source.events:  # an orders-only shop: a tag on behaviour would say "dormant" of everyone
        skipped = [t.name for t in tags.tags if t.source == "events"]
        tags = tags.model_copy(update={"tags": tuple(t for t in tags.tags if t.source != "events")})
        if skipped:
            log.info("%s tags: no behaviour data (source.events is false), not published: %s", as_of, skipped)
    statuses = PURCHASE_STATUSES
    schema = config.warehouse.schema_name
    engine = warehouse_engine(config)
    with engine.connect() as conn:
        done = (
            conn.execute(
                sa.text(f"select stage from {schema}.ops_pipeline_runs where logical_date = :d and status = 'success'"),
                {"d": as_of},
            )
            .scalars()
            .all()
        )
    missing = [stage for stage in ("segments", "scores") if stage not in done]
    if missing:
        raise UpstreamNotReadyError(f"{as_of}: the profile needs {' and '.join(missing)} for that date; run them first")

    batches, current = published_tables(
        config,
        as_of,
        {
            "users": "user_id",
            "orders": "order_id",
            "order_items": ("order_id", "line_no"),
            "products": "product_id",
        },
    )
    days = published_daily(config, USER_DAYS, batches, as_of, tags.events_lookback_days)
    features = user_feature_frame(
        current["users"], current["orders"], days, tags, statuses, as_of, config.shop.timezone
    ).persist()
    interest = None
    if any(t.kind == "top_n" for t in tags.tags):
        bought = F.col("status").isin(*statuses) & F.col("user_id").isNotNull()  # a guest has no interest tags
        bought_ids = current["orders"].where(bought).select("order_id")
        items = current["order_items"].join(bought_ids, "order_id")
        max_rank = max(t.top for t in tags.tags if t.kind == "top_n")
        item_days = published_daily(config, USER_ITEM_DAYS, batches, as_of, tags.interest.lookback_days)
        interest = interest_scores(item_days, items, current["products"], as_of, tags.interest, max_rank)
    loaded_at = datetime.now(timezone.utc)
    long = compute_tags(features, interest, tags, as_of).select(
        F.lit(as_of).alias("snapshot_date"), "*", F.lit(loaded_at).alias("loaded_at")
    )
    tag_rows = to_arrow(long)
    profile = to_arrow(features.select(F.lit(as_of).alias("snapshot_date"), *PROFILE_BASE[1:]))
    features.unpersist()

    coverage = {
        row["tag"]: row["user_id_count_distinct"]
        for row in tag_rows.group_by("tag").aggregate([("user_id", "count_distinct")]).to_pylist()
    }
    cutoff = as_of - timedelta(days=tags.history_days)

    # A column per configured tag, added (never dropped) before the publish: a table cannot be
    # altered in the transaction that has already deleted from it (DuckDB)
    with engine.begin() as conn:
        tag_columns = add_profile_tag_columns(conn, schema, tags.tags)

    def insert_profile(conn, staged: str) -> None:  # the staged attributes joined to the date's marts
        _insert_profile(conn, schema, staged, profile.column_names, tag_columns, as_of, loaded_at)

    def retention(conn) -> None:
        for table in ("mart_user_tags", "mart_user_profile"):
            delete_where(conn, schema, table, "snapshot_date < :cutoff", {"cutoff": cutoff})

    counts = publish(
        config,
        as_of,
        "tags",
        "customers",
        [
            snapshot("mart_user_tags", tag_rows),  # first: the profile reads the date's tags
            Output("mart_user_profile", profile, insert=insert_profile),
        ],
        rows_in=profile.num_rows,
        details={"users_by_tag": coverage},
        then=retention,
    )
    return {"snapshot_date": as_of.isoformat(), "rows_by_table": counts, "users_by_tag": coverage}


def _insert_profile(
    conn, schema: str, staged: str, columns: list[str], tag_columns: dict[str, str], as_of: date, loaded_at: datetime
) -> None:
    """Profile rows for D (``sql/marts/mart_user_profile.sql``): the staged attributes joined
    to the date's RFM, lifecycle, scores and tags."""
    params = {"d": as_of, "loaded_at": loaded_at}
    pivots = []
    for i, (tag, column) in enumerate(tag_columns.items()):
        params[f"tag_{i}"] = tag
        pivots.append(f", string_agg(case when tag = :tag_{i} then value end, ',' order by rank) as {column}")
    statements = read_sql(
        "mart_user_profile.sql",
        schema,
        staged=staged,
        attribute_columns=", ".join(columns),
        tag_columns="".join(f", {column}" for column in tag_columns.values()),
        tag_pivots="".join(pivots),
    )
    for statement in statements:
        conn.execute(sa.text(statement), params)
