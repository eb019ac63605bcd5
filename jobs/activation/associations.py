"""Cross-sell rules: products bought together in purchase baskets, counted in Spark, tested
for significance, and published nightly as ``mart_product_associations``.

A basket is one purchase (an order whose status counts as a purchase) placed in the
``lookback_days`` up to D, as the set of distinct products on its lines. Baskets with fewer than
``min_basket_items`` products are left out, and so are baskets with more than
``max_basket_items`` (wholesale and stock orders of hundreds of lines say little about what
goes together, and one basket of n items holds 2^n itemsets); both are counted in the run's
details. A rule ``A -> b`` (A: one product, or two with ``max_antecedent_items: 2``; b: one
active product) says "baskets with A also hold b":

* support = baskets holding A and b / baskets;
* confidence = baskets holding A and b / baskets holding A (an estimate of P(b | A));
* lift = confidence / share of baskets holding b (above 1: A makes b more likely than usual);
* p_value = the chance of at least that many baskets holding A and b if products were dealt to
  baskets by their sizes alone (a size-aware null, see :func:`with_p_values`; Poisson tail);
* leverage = support - (share of baskets holding A) * (share holding b): the share of all baskets
  that hold both beyond what chance would put together; it grows with the baskets a rule
  explains, so strong rules of many baskets outrank rare coincidences of a huge lift.

Mining is bounded: itemsets are counted directly (items, then pairs of frequent items, then
triples of frequent pairs: Apriori's rule), never enumerated per basket beyond the antecedent
length, so a giant basket cannot explode it; the rows the counting would generate are computed
first and must stay under ``max_candidate_pairs``, and the whole stage under ``max_seconds``
(Spark's jobs are cancelled then): both end with a one-line :class:`BudgetExceededError`
naming the setting instead of running for hours.

A rule is published when it is in at least ``min_rule_baskets`` baskets (and ``min_support`` of
them), has confidence >= ``min_confidence`` and lift > ``min_lift``, and its p-value passes the
Benjamini-Hochberg procedure at false discovery rate ``fdr`` over every rule that could have been
formed from the frequent products (so a shop without real co-purchase structure gets few or no
rules, not hundreds of coincidences). Of those, at most ``max_rules``: the best by leverage (a
family bought together in 700 baskets with lift 10 beats a pair in 17 baskets with lift 600),
then lift.

References: Agrawal & Srikant (1994), Fast algorithms for mining association rules (Apriori);
Benjamini & Hochberg (1995), Controlling the false discovery rate; Webb (2007), Discovering
significant patterns; Piatetsky-Shapiro (1991), Discovery, analysis and presentation of strong rules
(leverage).
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.activation.campaigns_config import AssociationSettings, load_campaigns
from jobs.platform.config import PipelineConfig
from jobs.platform.errors import BudgetExceededError
from jobs.platform.publish import publish, snapshot
from jobs.platform.published import published_tables
from jobs.platform.spark import time_budget
from jobs.platform.warehouse import to_arrow

log = logging.getLogger(__name__)
STAGE = "associations"
TABLE = "mart_product_associations"
RULES_SCHEMA = (
    "antecedent array<bigint>, consequent bigint, support double, confidence double, lift double, "
    "antecedent_support double, basket_count bigint, antecedent_basket_count bigint, "
    "leverage double, p_value double"
)


def load_association_settings(values: dict | None) -> AssociationSettings:
    """The ``associations:`` section's values as settings (defaults when absent); a bad value
    raises pydantic's ``ValidationError`` naming the key."""
    return AssociationSettings.model_validate(values or {})


def purchase_baskets(
    order_items: DataFrame, orders: DataFrame, as_of: date, settings: AssociationSettings
) -> DataFrame:
    """``order_id, items``: one row per purchase placed in the lookback up to ``as_of``, ``items``
    the sorted distinct products of its lines (every size; see :func:`baskets`)."""
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
    )


def baskets(order_items: DataFrame, orders: DataFrame, as_of: date, settings: AssociationSettings) -> DataFrame:
    """The purchase baskets rules are mined from: between ``min_basket_items`` and
    ``max_basket_items`` distinct products."""
    return within_size(purchase_baskets(order_items, orders, as_of, settings), settings)


def within_size(baskets: DataFrame, settings: AssociationSettings) -> DataFrame:
    """The baskets of ``min_basket_items`` to ``max_basket_items`` distinct products."""
    size = F.size("items")
    return baskets.where((size >= settings.min_basket_items) & (size <= settings.max_basket_items))


def min_rule_count(basket_count: int, settings: AssociationSettings) -> int:
    """Baskets a rule must be in: ``min_rule_baskets``, and ``min_support`` of the baskets."""
    return max(settings.min_rule_baskets, math.ceil(settings.min_support * basket_count - 1e-9))


def _pairs_of(items: Column) -> Column:
    """Every ``(a, b)`` with ``a`` before ``b`` in a sorted array of two or more items."""
    size = F.size(items)
    return F.flatten(
        F.transform(
            F.sequence(F.lit(1), size - 1),
            lambda i: F.transform(
                F.slice(items, i + 1, size - i), lambda b: F.struct(F.element_at(items, i).alias("a"), b.alias("b"))
            ),
        )
    )


def frequent_itemsets(
    baskets: DataFrame, basket_count: int, settings: AssociationSettings
) -> tuple[DataFrame, DataFrame, DataFrame | None, DataFrame]:
    """``(items, pairs, triples, baskets)``: the frequent items (``a``, ``n``), pairs (``a < b``, ``n``) and,
    with ``max_antecedent_items: 2``, triples (``a < b < c``, ``n``); ``n`` is the number of
    baskets holding the itemset, at least :func:`min_rule_count`; ``baskets`` holds each basket's
    frequent products (all four persisted: the caller unpersists them). Raises
    :class:`BudgetExceededError` before counting when the baskets would generate more than
    ``max_candidate_pairs`` rows."""
    minimum = min_rule_count(basket_count, settings)
    lines = baskets.select("order_id", F.explode("items").alias("a"))
    items = lines.groupBy("a").agg(F.count("*").alias("n")).where(F.col("n") >= minimum).persist()
    # each basket's frequent products, sorted: no other product is in a frequent itemset
    kept = (
        lines.join(F.broadcast(items.select("a")), "a")
        .groupBy("order_id")
        .agg(F.array_sort(F.collect_list("a")).alias("items"))
        .where(F.size("items") >= 2)
        .persist()
    )
    k = F.size("items").cast("double")
    bounds = kept.agg(F.sum(k * (k - 1) / 2).alias("pairs"), F.sum(k * (k - 1) * (k - 2) / 6).alias("triples")).first()
    generated = (bounds["pairs"] or 0) + ((bounds["triples"] or 0) if settings.max_antecedent_items >= 2 else 0)
    if generated > settings.max_candidate_pairs:
        kept.unpersist(), items.unpersist()
        raise BudgetExceededError(
            f"associations: {basket_count:,} baskets would generate {generated:,.0f} candidate itemset rows "
            f"(associations.max_candidate_pairs = {settings.max_candidate_pairs:,}); raise min_rule_baskets or "
            "min_support, lower max_basket_items, or set max_antecedent_items to 1"
        )
    # pairs are generated inside each basket (no join, no shuffle of the lines)
    in_basket = kept.select("items", F.explode(_pairs_of(F.col("items"))).alias("p")).select("items", "p.a", "p.b")
    pairs = in_basket.groupBy("a", "b").agg(F.count("*").alias("n")).where(F.col("n") >= minimum).persist()
    triples = None
    if settings.max_antecedent_items >= 2:
        frequent_pairs = F.broadcast(pairs.select("a", "b"))
        extended = (
            in_basket.join(frequent_pairs, ["a", "b"], "left_semi")
            .select("a", "b", F.explode(F.filter("items", lambda item: item > F.col("b"))).alias("c"))
            # Apriori: every sub-pair of a frequent triple is frequent
            .join(frequent_pairs.select("a", F.col("b").alias("c")), ["a", "c"], "left_semi")
            .join(frequent_pairs.select(F.col("a").alias("b"), F.col("b").alias("c")), ["b", "c"], "left_semi")
        )
        triples = extended.groupBy("a", "b", "c").agg(F.count("*").alias("n")).where(F.col("n") >= minimum).persist()
    return items, pairs, triples, kept


def candidate_rules(
    items: DataFrame, pairs: DataFrame, triples: DataFrame | None, basket_count: int
) -> tuple[DataFrame, int]:
    """Every rule the frequent itemsets give (``antecedent``, ``consequent``, the three counts)
    and the number of rules that could have been formed from the frequent items (the
    multiple-testing family: every ordered pair, and every pair -> third item when mining triples)."""
    count_of = items.select(F.col("a").alias("item"), F.col("n").alias("item_n"))
    pair_n = pairs.select("a", "b", F.col("n").alias("pair_n"))
    one = pairs.select(F.array("a").alias("antecedent"), F.col("b").alias("consequent"), "n", F.col("a").alias("_a"))
    one = one.unionByName(
        pairs.select(F.array("b").alias("antecedent"), F.col("a").alias("consequent"), "n", F.col("b").alias("_a"))
    )
    rules = one.join(F.broadcast(count_of.withColumnsRenamed({"item": "_a", "item_n": "antecedent_n"})), "_a").drop(
        "_a"
    )
    frequent_items = items.count()
    family = frequent_items * (frequent_items - 1)
    if triples is not None:
        family += frequent_items * (frequent_items - 1) * (frequent_items - 2) // 2
        three = None
        for left, right, out in (("a", "b", "c"), ("a", "c", "b"), ("b", "c", "a")):
            part = triples.select(
                F.array(left, right).alias("antecedent"),
                F.col(out).alias("consequent"),
                "n",
                F.col(left).alias("_l"),
                F.col(right).alias("_r"),
            ).join(pair_n.withColumnsRenamed({"a": "_l", "b": "_r", "pair_n": "antecedent_n"}), ["_l", "_r"])
            part = part.drop("_l", "_r")
            three = part if three is None else three.unionByName(part)
        rules = rules.unionByName(three)
    rules = rules.join(F.broadcast(count_of.withColumnRenamed("item", "consequent")), "consequent")
    return rules.withColumn("baskets", F.lit(basket_count)), family


def size_aware_null(baskets: DataFrame, items: DataFrame) -> tuple[dict[int, int], np.ndarray, np.ndarray]:
    """What chance alone puts in a basket, given its size: ``(row of each frequent item, P, c)``
    with ``P[i, s]`` the probability that a basket of the ``s``-th size holds item ``i`` when the
    items' lines are dealt to baskets in proportion to their sizes, ``1 - (1 - size / lines) **
    baskets holding i``, and ``c[s]`` the baskets of that size. Sizes and items are few (at most
    ``max_basket_items`` sizes; the frequent products), so both live on the driver."""
    sizes = baskets.groupBy(F.size("items").alias("size")).count().toPandas().sort_values("size")
    counts = items.toPandas().sort_values("a")
    lines = float((sizes["size"] * sizes["count"]).sum())
    share = (sizes["size"].to_numpy(dtype=float) / lines)[None, :]
    chance = 1.0 - np.power(1.0 - share, counts["n"].to_numpy(dtype=float)[:, None])
    return {int(a): i for i, a in enumerate(counts["a"])}, chance, sizes["count"].to_numpy(dtype=float)


def with_p_values(rules: DataFrame, null: tuple[dict[int, int], np.ndarray, np.ndarray]) -> DataFrame:
    """``rules`` with ``expected`` (the baskets chance alone would give the rule, knowing every
    basket's size) and ``p_value`` (Poisson upper tail at ``n``), computed in the executors.

    Why not Fisher's exact test: it assumes every basket is as likely to hold a product, but a
    basket of 80 products is far likelier to hold any two than one of 3, so with basket sizes as
    uneven as real shops' (wholesale next to single items) every pair looks associated (on the
    busy season of a real UK shop, baskets whose products were shuffled between them gave 449
    "significant" Fisher rules). Under the size-aware null, a pair's expected count is
    ``sum over sizes c * P[a] * P[b]``; for ``{a, b} -> c`` it is the baskets holding a and b times
    the share of them chance would give c. The Poisson tail is conservative for a sum of
    independent Bernoulli variables of that mean."""
    index, chance, per_size = null

    def p_values(antecedent: pd.Series, consequent: pd.Series, n: pd.Series, antecedent_n: pd.Series) -> pd.DataFrame:
        from scipy.stats import poisson

        first = np.array([index[int(items[0])] for items in antecedent])
        second = np.array([index[int(items[1])] if len(items) > 1 else -1 for items in antecedent])
        target = np.array([index[int(c)] for c in consequent])
        pair = chance[first] * per_size
        both = np.where(second[:, None] >= 0, pair * chance[np.maximum(second, 0)], pair)
        with_target = (both * chance[target]).sum(axis=1)
        expected = np.where(second >= 0, antecedent_n * with_target / np.maximum(both.sum(axis=1), 1e-300), with_target)
        return pd.DataFrame({"expected": expected, "p_value": poisson.sf(n - 1, expected)})

    tested = F.pandas_udf(p_values, "expected double, p_value double")
    return (
        rules.withColumn("_test", tested("antecedent", "consequent", "n", "antecedent_n"))
        .select("*", "_test.expected", "_test.p_value")
        .drop("_test")
    )


def significant(tested: DataFrame, family: int, fdr: float) -> DataFrame:
    """The rules (with ``p_value``) that pass the Benjamini-Hochberg procedure at ``fdr`` over
    ``family`` hypotheses (rules never formed count as not rejected)."""
    # Only p-values <= fdr can be rejected (k * fdr / family <= fdr), so only those are ranked,
    # on the driver: one number per such rule.
    from jobs.activation.stats import benjamini_hochberg

    small = [row[0] for row in tested.where(F.col("p_value") <= fdr).select("p_value").collect()]
    rejected = [
        p for p, keep in zip(small, benjamini_hochberg(small, fdr, m=max(family, len(small))), strict=True) if keep
    ]
    return tested.where(F.col("p_value") <= (max(rejected) if rejected else -1.0))


def association_rules(
    baskets: DataFrame,
    settings: AssociationSettings,
    active_products: DataFrame | None = None,
    counts: dict | None = None,
) -> DataFrame:
    """Rules mined from ``baskets`` (``items``: distinct product ids; already within the basket
    size bounds): ``antecedent`` (sorted product ids, at most ``max_antecedent_items``),
    ``consequent`` (an active product when ``active_products`` (``product_id``) is given),
    ``support``, ``confidence``, ``lift``, ``antecedent_support``, ``basket_count`` (baskets holding
    antecedent and consequent), ``antecedent_basket_count``, ``leverage``, ``p_value``; only
    significant rules passing the thresholds, at most ``max_rules``, best (leverage, then lift)
    first. ``counts``, when given, receives the itemsets and
    candidate rules counted."""
    counts = {} if counts is None else counts
    spark = baskets.sparkSession
    basket_count = baskets.count()
    if basket_count == 0:
        counts.update(itemsets=0, candidate_rules=0, significant_rules=0)
        return spark.createDataFrame([], RULES_SCHEMA)
    items, pairs, triples, kept_baskets = frequent_itemsets(baskets, basket_count, settings)
    rules, family = candidate_rules(items, pairs, triples, basket_count)
    null = size_aware_null(baskets, items)
    tested = with_p_values(rules, null).persist()  # read by the ranking, the filter and the counts
    kept = significant(tested, family, settings.fdr)
    if active_products is not None:
        active = active_products.select(F.col("product_id").cast("bigint").alias("consequent"))
        kept = kept.join(active, "consequent", "left_semi")
    n = F.col("n")
    measured = kept.select(
        F.array_sort("antecedent").alias("antecedent"),
        "consequent",
        (n / basket_count).alias("support"),
        (n / F.col("antecedent_n")).alias("confidence"),
        (n * basket_count / (F.col("antecedent_n") * F.col("item_n"))).alias("lift"),
        (F.col("antecedent_n") / basket_count).alias("antecedent_support"),
        n.alias("basket_count"),
        F.col("antecedent_n").alias("antecedent_basket_count"),
        ((n - F.col("antecedent_n") * F.col("item_n") / basket_count) / basket_count).alias("leverage"),
        "p_value",
    ).where((F.col("confidence") >= settings.min_confidence) & (F.col("lift") > settings.min_lift))
    best = [
        F.desc("leverage"), F.desc("lift"), F.desc("basket_count"), F.asc("antecedent"),
        F.asc("consequent"),
    ]  # fmt: skip
    # (antecedent, consequent) is unique, so the order (and the cap) is deterministic.
    result = measured.orderBy(*best).limit(settings.max_rules).persist()
    result.count()
    counts.update(
        itemsets=items.count() + pairs.count() + (triples.count() if triples is not None else 0),
        candidate_rules=tested.count(),
        significant_rules=kept.count(),
        rules_family=family,
    )
    for frame in (tested, items, pairs, triples, kept_baskets):
        if frame is not None:
            frame.unpersist()
    return result


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
        "leverage",
        "p_value",
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
    spark = current["orders"].sparkSession
    all_baskets = purchase_baskets(current["order_items"], current["orders"], as_of, settings).persist()
    sizes = (
        all_baskets.select(F.size("items").alias("size"))
        .agg(
            F.count(F.when(F.col("size") > settings.max_basket_items, 1)).alias("over_cap"),
            F.max("size").alias("largest"),
        )
        .first()
    )
    purchases = within_size(all_baskets, settings).persist()  # the orders are read and grouped once
    basket_count = purchases.count()
    all_baskets.unpersist()
    active = current["products"].where(F.col("is_active")).select("product_id")
    counts: dict = {}
    with time_budget(spark, settings.max_seconds, f"associations {as_of}", "associations.max_seconds"):
        rules = association_rules(purchases, settings, active, counts)
        data = to_arrow(publishable(rules, as_of, datetime.now(timezone.utc)))
    rules.unpersist()
    purchases.unpersist()
    summary = {
        "baskets": basket_count,
        "baskets_over_cap": int(sizes["over_cap"] or 0),
        "largest_basket": int(sizes["largest"] or 0),
        "itemsets": counts["itemsets"],
        "candidate_rules": counts["candidate_rules"],
        "significant_rules": counts["significant_rules"],
        "rules": data.num_rows,
    }
    publish(
        config,
        as_of,
        STAGE,
        TABLE,
        [snapshot(TABLE, data)],
        rows_in=basket_count,
        details={**summary, "settings": settings.model_dump()},
    )
    log.info(
        "%s associations: %s baskets (%s over max_basket_items left out), %s frequent itemsets, %s candidate rules, "
        "%s significant, %s published",
        as_of, basket_count, summary["baskets_over_cap"], summary["itemsets"], summary["candidate_rules"],
        summary["significant_rules"], summary["rules"],
    )  # fmt: skip
    return {"snapshot_date": as_of.isoformat(), **summary, "settings": settings.model_dump()}
