"""Cross-sell rules: frequent itemsets and association rules mined from purchase baskets with
Spark ML's FP-growth, published nightly as ``mart_product_associations``.

A basket is one purchase (an order whose status counts as a purchase) placed in the
``lookback_days`` up to D, as the set of distinct products on its lines; baskets with fewer than
``min_basket_items`` products are left out, so every share below is a share of multi-item
baskets. A rule ``A -> b`` (A: one or a few products, b: one active product) says "baskets with A
also hold b":

* support = baskets holding A and b / baskets;
* confidence = baskets holding A and b / baskets holding A (an estimate of P(b | A));
* lift = confidence / share of baskets holding b (above 1: A makes b more likely than usual).

Rules are kept when support >= ``min_support``, confidence >= ``min_confidence`` and
lift > ``min_lift``, and at most ``max_rules`` of them: the strongest by lift, then confidence.
Reference: Agrawal, Imielinski & Swami (1993), Mining association rules between sets of items
in large databases; FP-growth: Han, Pei & Yin (2000), as implemented by ``pyspark.ml.fpm``.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

from pyspark.ml.fpm import FPGrowth, FPGrowthModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.activation.campaigns_config import AssociationSettings, load_campaigns
from jobs.platform.config import PipelineConfig
from jobs.platform.publish import publish, snapshot
from jobs.platform.published import published_tables
from jobs.platform.warehouse import to_arrow

log = logging.getLogger(__name__)
STAGE = "associations"
TABLE = "mart_product_associations"
RULES_SCHEMA = (
    "antecedent array<bigint>, consequent bigint, support double, confidence double, lift double, "
    "antecedent_support double, basket_count bigint, antecedent_basket_count bigint"
)


def load_association_settings(values: dict | None) -> AssociationSettings:
    """The ``associations:`` section's values as settings (defaults when absent); a bad value
    raises pydantic's ``ValidationError`` naming the key."""
    return AssociationSettings.model_validate(values or {})


def baskets(order_items: DataFrame, orders: DataFrame, as_of: date, settings: AssociationSettings) -> DataFrame:
    """``order_id, items``: one row per purchase placed in the lookback up to ``as_of``, ``items``
    the sorted distinct products of its lines (FP-growth refuses a basket with a repeated item),
    baskets with fewer than ``min_basket_items`` products dropped."""
    start = as_of - timedelta(days=settings.lookback_days)
    purchases = orders.where(
        F.col("status").isin(*settings.statuses)
        & (F.col("order_date") > F.lit(start))
        & (F.col("order_date") <= F.lit(as_of))
    ).select("order_id")
    return (
        order_items.where(F.col("product_id").isNotNull())
        .join(purchases, "order_id")
        .groupBy("order_id")
        .agg(F.array_sort(F.collect_set(F.col("product_id").cast("bigint"))).alias("items"))
        .where(F.size("items") >= settings.min_basket_items)
    )


def fit_itemsets(baskets: DataFrame, basket_count: int, settings: AssociationSettings) -> FPGrowthModel:
    """FP-growth over ``baskets`` (``basket_count`` of them, at least one): the frequent itemsets
    (support >= ``min_support`` and in >= ``min_rule_baskets`` baskets) and the rules between them."""
    # Spark keeps itemsets in >= ceil(minSupport * n) baskets; half a basket below the floor
    # makes that exactly min_rule_baskets whatever the rounding of the division.
    floor = (settings.min_rule_baskets - 0.5) / basket_count
    growth = FPGrowth(
        itemsCol="items",
        minSupport=min(max(settings.min_support, floor), 1.0),
        minConfidence=settings.min_confidence,
    )
    return growth.fit(baskets)


def rules_from_itemsets(
    model: FPGrowthModel,
    basket_count: int,
    settings: AssociationSettings,
    active_products: DataFrame | None = None,
) -> DataFrame:
    """The kept rules of a fitted FP-growth ``model`` (see :func:`association_rules`)."""
    max_size = settings.max_antecedent_items
    counts = model.freqItemsets.where(F.size("items") <= max_size + 1).select(
        F.array_sort("items").alias("_key"), F.col("freq").alias("_freq")
    )
    rules = (
        model.associationRules.where((F.size("antecedent") <= max_size) & (F.col("lift") > settings.min_lift))
        .select(
            F.array_sort("antecedent").alias("antecedent"),
            F.element_at("consequent", 1).alias("consequent"),
            "support",
            "confidence",
            "lift",
        )
        .withColumn("_union", F.array_sort(F.concat("antecedent", F.array("consequent"))))
    )
    if active_products is not None:
        active = active_products.select(F.col("product_id").cast("bigint").alias("consequent"))
        rules = rules.join(active, "consequent", "left_semi")
    # Counts are looked up, not derived from the ratios, so they are exact.
    rules = (
        rules.join(counts.withColumnsRenamed({"_key": "antecedent", "_freq": "antecedent_basket_count"}), "antecedent")
        .join(counts.withColumnsRenamed({"_key": "_union", "_freq": "basket_count"}), "_union")
        .withColumn("antecedent_support", F.col("antecedent_basket_count") / F.lit(basket_count))
        .where(F.col("basket_count") >= settings.min_rule_baskets)  # also when there are fewer baskets than that
    )
    strongest = [F.desc("lift"), F.desc("confidence"), F.desc("support"), F.asc("antecedent"), F.asc("consequent")]
    # (antecedent, consequent) is unique, so the order (and the cap) is deterministic.
    return (
        rules.orderBy(*strongest)
        .limit(settings.max_rules)
        .select(*[field.split(" ")[0] for field in RULES_SCHEMA.split(", ")])
    )


def association_rules(
    baskets: DataFrame, settings: AssociationSettings, active_products: DataFrame | None = None
) -> DataFrame:
    """Rules mined from ``baskets`` (``items``: distinct product ids):

    ``antecedent`` (sorted product ids, at most ``max_antecedent_items``), ``consequent`` (one
    product id, an active one when ``active_products`` (``product_id``) is given), ``support``,
    ``confidence``, ``lift``, ``antecedent_support``, ``basket_count`` (baskets holding antecedent
    and consequent), ``antecedent_basket_count``; filtered by the settings' thresholds and capped
    at ``max_rules``, strongest (lift, then confidence) first."""
    basket_count = baskets.count()
    if basket_count == 0:
        return baskets.sparkSession.createDataFrame([], RULES_SCHEMA)
    return rules_from_itemsets(fit_itemsets(baskets, basket_count, settings), basket_count, settings, active_products)


def publishable(rules: DataFrame, as_of: date, loaded_at: datetime) -> DataFrame:
    """Rules in the layout of ``mart_product_associations`` for snapshot ``as_of``."""
    return rules.select(
        F.lit(as_of).alias("snapshot_date"),
        F.array_join(F.col("antecedent").cast("array<string>"), ",").alias("antecedent_product_ids"),
        F.size("antecedent").alias("antecedent_size"),
        F.col("consequent").alias("consequent_product_id"),
        "support",
        "confidence",
        "lift",
        "basket_count",
        "antecedent_basket_count",
        F.lit(loaded_at).alias("loaded_at"),
    )


def build_associations(config: PipelineConfig, as_of: date, settings: AssociationSettings | None = None) -> dict:
    """Mine D's cross-sell rules from published orders and publish them as D's snapshot of
    ``mart_product_associations`` (empty when there are no baskets); returns a small summary."""
    settings = (
        settings
        or load_campaigns(
            config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
        ).associations
    )
    _, current = published_tables(
        config, as_of, {"orders": "order_id", "order_items": ("order_id", "line_no"), "products": "product_id"}
    )
    purchases = baskets(current["order_items"], current["orders"], as_of, settings).persist()
    basket_count = purchases.count()
    itemset_count = 0
    if basket_count:
        model = fit_itemsets(purchases, basket_count, settings)
        model.freqItemsets.persist()  # read three times: counted, rules, rule counts
        itemset_count = model.freqItemsets.count()
        active = current["products"].where(F.col("is_active")).select("product_id")
        rules = rules_from_itemsets(model, basket_count, settings, active)
    else:
        rules = purchases.sparkSession.createDataFrame([], RULES_SCHEMA)
    data = to_arrow(publishable(rules, as_of, datetime.now(timezone.utc)))
    if basket_count:
        model.freqItemsets.unpersist()
    purchases.unpersist()
    rule_count = data.num_rows
    summary = {"baskets": basket_count, "itemsets": itemset_count, "rules": rule_count}
    publish(
        config,
        as_of,
        STAGE,
        TABLE,
        [snapshot(TABLE, data)],
        rows_in=basket_count,
        details={**summary, "settings": settings.model_dump()},
    )
    log.info("%s associations: %s baskets, %s frequent itemsets, %s rules", as_of, *summary.values())
    return {"snapshot_date": as_of.isoformat(), **summary, "settings": settings.model_dump()}
