"""Customer segments (Spark): RFM scores and groups, lifecycle stages, published as marts.

Pure transforms (:func:`purchases`, :func:`rfm_metrics`, :func:`score_rfm`,
:func:`lifecycle_stages`) work on small DataFrames in tests; :func:`build_segments` reads the
published orders and customers from the lake for a snapshot date and writes
``mart_user_rfm``, ``mart_user_lifecycle`` and ``mart_lifecycle_transitions`` to the warehouse
in one transaction (re-running a date replaces that date's snapshot; history is kept).

Scoring (``config/segments.yaml``): among customers with a purchase in the lookback, a score
is ``1 + floor(5 * worse / n)`` (capped at 5), where ``worse`` counts customers strictly worse
on that measure: ties share a score, and a measure most customers share (one order) scores 1
for all of them instead of being spread over empty bins. Below
``min_population_for_quantiles`` customers, the fixed thresholds are used instead.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import sqlalchemy as sa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.customers.segments_config import LifecycleConfig, RfmConfig, SegmentsConfig, load_segments
from jobs.platform.config import PipelineConfig
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.publish import publish, snapshot
from jobs.platform.published import published_tables
from jobs.platform.warehouse import read_sql, to_arrow

log = logging.getLogger(__name__)


def purchases(orders: DataFrame, statuses: tuple[str, ...], as_of: date) -> DataFrame:
    """Customers' orders that count as purchases by the snapshot date: ``user_id, order_id,
    order_date, amount`` (guest orders have no customer; returns are applied by the reader)."""
    counted = F.col("status").isin(*statuses) & (F.col("order_date") <= F.lit(as_of)) & F.col("user_id").isNotNull()
    return orders.where(counted).select(
        "user_id", "order_id", "order_date", F.col("total_amount").cast("double").alias("amount")
    )


def rfm_metrics(bought: DataFrame, as_of: date, lookback_days: int) -> DataFrame:
    """Per customer with any purchase: recency (all time), frequency and monetary (lookback)."""
    in_window = F.col("order_date") > F.date_sub(F.lit(as_of), lookback_days)
    return (
        bought.groupBy("user_id")
        .agg(
            F.max("order_date").alias("last_order_date"),
            F.min("order_date").alias("first_order_date"),
            F.datediff(F.lit(as_of), F.max("order_date")).alias("recency_days"),
            F.count(F.when(in_window, F.col("order_id"))).alias("frequency"),
            F.round(F.coalesce(F.sum(F.when(in_window, F.col("amount"))), F.lit(0.0)), 2).alias("monetary"),
        )
        .withColumn(
            "avg_order_value",
            F.when(F.col("frequency") > 0, F.round(F.col("monetary") / F.col("frequency"), 2)),
        )
    )


def _quantile_score(value: str, higher_is_better: bool, n: Column) -> Column:
    order = F.col(value).asc() if higher_is_better else F.col(value).desc()
    worse = F.rank().over(Window.orderBy(order)) - 1
    return F.least(F.lit(5), 1 + F.floor(5 * worse / n)).cast("int")


def _fixed_score(value: str, bounds: list[float], lower_is_better: bool = False) -> Column:
    passed = [F.when(F.col(value) <= b if lower_is_better else F.col(value) >= b, 1).otherwise(0) for b in bounds]
    total = passed[0]
    for term in passed[1:]:
        total = total + term
    return (1 + total).cast("int")


def _group(rfm: RfmConfig) -> Column:
    expression = None
    for rule in rfm.groups:
        matches = F.col("r_score").between(*rule.r) & F.col("fm_score").between(*rule.fm)
        expression = F.when(matches, rule.name) if expression is None else expression.when(matches, rule.name)
    return expression


def score_rfm(metrics: DataFrame, rfm: RfmConfig) -> DataFrame:
    """Add r/f/m/fm scores, the named group and the method used. Customers without a purchase
    in the lookback are not scored (null scores) and are grouped as ``Lost``."""
    active = metrics.where(F.col("frequency") > 0)
    population = active.count()
    method = rfm.scoring.method
    if method == "quantile" and population < rfm.scoring.min_population_for_quantiles:
        method = "fixed"
    if method == "quantile":
        n = F.lit(population)
        scored = active.select(
            "*",
            _quantile_score("recency_days", False, n).alias("r_score"),
            _quantile_score("frequency", True, n).alias("f_score"),
            _quantile_score("monetary", True, n).alias("m_score"),
        )
    else:
        fixed = rfm.scoring.fixed
        scored = active.select(
            "*",
            _fixed_score("recency_days", fixed.recency_days, lower_is_better=True).alias("r_score"),
            _fixed_score("frequency", fixed.frequency).alias("f_score"),
            _fixed_score("monetary", fixed.monetary).alias("m_score"),
        )
    scored = scored.withColumn("fm_score", F.floor((F.col("f_score") + F.col("m_score")) / 2 + 0.5).cast("int"))
    scored = scored.withColumn("rfm_group", _group(rfm)).withColumn("scoring_method", F.lit(method))
    inactive = metrics.where(F.col("frequency") == 0).select(
        "*",
        *[F.lit(None).cast("int").alias(c) for c in ("r_score", "f_score", "m_score", "fm_score")],
        F.lit("Lost").alias("rfm_group"),
        F.lit("inactive").alias("scoring_method"),
    )
    return scored.unionByName(inactive)


def purchase_gaps(bought: DataFrame) -> DataFrame:
    """Per customer: first and last purchase date, the median gap in days between purchase
    dates (``typical_gap_days``) and the gap before the latest one (``last_gap_days``)."""
    days = bought.select("user_id", "order_date").distinct()
    gaps = days.withColumn(
        "gap_days",
        F.datediff("order_date", F.lag("order_date").over(Window.partitionBy("user_id").orderBy("order_date"))),
    )
    return gaps.groupBy("user_id").agg(
        F.min("order_date").alias("first_order_date"),
        F.max("order_date").alias("last_order_date"),
        F.percentile_approx("gap_days", 0.5).alias("typical_gap_days"),
        F.max_by("gap_days", "order_date").alias("last_gap_days"),
    )


def lifecycle_stages(
    users: DataFrame, bought: DataFrame, as_of: date, rules: LifecycleConfig, lookback_days: int
) -> DataFrame:
    """Stage of every registered user (``user_id``) as of the snapshot date; see segments.yaml."""
    per_user = purchase_gaps(bought)
    counts = bought.groupBy("user_id").agg(
        F.count("*").alias("order_count"),
        F.count(F.when(F.col("order_date") > F.date_sub(F.lit(as_of), lookback_days), 1)).alias("recent_order_count"),
    )
    joined = users.select("user_id").join(per_user, "user_id", "left").join(counts, "user_id", "left")
    since_last = F.datediff(F.lit(as_of), "last_order_date")
    since_first = F.datediff(F.lit(as_of), "first_order_date")
    expected_gap = F.coalesce(F.col("typical_gap_days"), F.lit(rules.default_gap_days))
    stage = (
        F.when(F.col("last_order_date").isNull(), "prospect")
        .when(since_last > rules.churn_days, "churned")
        .when((since_last <= rules.reactivated_days) & (F.col("last_gap_days") > rules.churn_days), "reactivated")
        .when(since_first <= rules.new_days, "new")
        .when(since_last > rules.at_risk_factor * expected_gap, "at_risk")
        .when(F.col("recent_order_count") >= rules.loyal_min_orders, "loyal")
        .otherwise("growing")
    )
    return joined.select(
        "user_id",
        stage.alias("lifecycle_stage"),
        since_last.alias("days_since_last_order"),
        F.coalesce("order_count", F.lit(0)).cast("int").alias("order_count"),
        F.col("typical_gap_days").cast("int").alias("typical_gap_days"),
        "first_order_date",
        "last_order_date",
    )


def published_customers(config: PipelineConfig, as_of: date, statuses: tuple[str, ...]) -> tuple[DataFrame, DataFrame]:
    """``(users, purchases)`` known by D, from published batches only; refuses an unpublished D."""
    _, tables = published_tables(config, as_of, {"users": "user_id", "orders": "order_id"})
    return tables["users"], purchases(tables["orders"], statuses, as_of)


def _lifecycle_transitions(conn: sa.Connection, schema: str, as_of: date) -> None:
    """Fill ``previous_stage`` from the latest earlier snapshot and count the date's moves."""
    for statement in read_sql("mart_lifecycle_transitions.sql", schema):
        conn.execute(sa.text(statement), {"d": as_of})


def build_segments(config: PipelineConfig, as_of: date, segments: SegmentsConfig | None = None) -> dict:
    """Compute and publish RFM and lifecycle snapshots for D (one transaction)."""
    segments = segments or load_segments(config.customers.segments_file)
    schema = config.warehouse.schema_name
    users, bought = published_customers(config, as_of, PURCHASE_STATUSES)
    bought = bought.persist()
    loaded_at = datetime.now(timezone.utc)

    rfm = score_rfm(rfm_metrics(bought, as_of, segments.rfm.lookback_days), segments.rfm).select(
        F.lit(as_of).alias("snapshot_date"),
        "user_id",
        "recency_days",
        "frequency",
        "monetary",
        "avg_order_value",
        "r_score",
        "f_score",
        "m_score",
        "fm_score",
        "rfm_group",
        "scoring_method",
        "first_order_date",
        "last_order_date",
        F.lit(loaded_at).alias("loaded_at"),
    )
    lifecycle = lifecycle_stages(users, bought, as_of, segments.lifecycle, segments.rfm.lookback_days).select(
        F.lit(as_of).alias("snapshot_date"),
        "*",
        F.lit(None).cast("string").alias("previous_stage"),
        F.lit(loaded_at).alias("loaded_at"),
    )
    outputs = [snapshot("mart_user_rfm", to_arrow(rfm)), snapshot("mart_user_lifecycle", to_arrow(lifecycle))]
    bought.unpersist()
    population = outputs[1].rows
    counts = publish(
        config,
        as_of,
        "segments",
        "customers",
        outputs,
        rows_in=population,
        then=lambda conn: _lifecycle_transitions(conn, schema, as_of),
    )
    return {"snapshot_date": as_of.isoformat(), "rows_by_table": counts}
