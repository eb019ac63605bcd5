"""Buy again: the products a customer bought before, ranked by how likely they are to buy them
again soon. Repeat purchases are most of a retailer's revenue, and no list of new products
can hold them.

Scored in Spark from one row per customer, product and purchase day (:func:`purchase_days`),
as of a date, by one of three methods:

- ``most_bought``  the number of days the customer bought the product (the baseline every
  shop has: "your most frequently bought"); ties go to the more recently bought.
- ``decayed``      the same count, each day weighted ``0.5 ** (age / half_life_days)``: a
  product bought often lately outranks one bought as often long ago.
- ``cadence``      ``decayed`` times how due the product is by the customer's own cadence:
  ``exp(-|ln((days since last + horizon / 2) / interval)|)``, which is 1 when the next
  purchase falls mid-horizon; the interval is the customer's own mean gap between purchases
  of the product, else the product's median gap over its repeat buyers, else
  ``default_interval_days``.

Every method also reports each product's ``due_date`` (last purchase + interval), for CRM
tools that time a reminder. Which method (and half-life) a shop gets is decided on its data:
:func:`evaluate` measures each on the repeat purchases of a later period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

METHODS = ("most_bought", "decayed", "cadence")
BASELINE = "most_bought"


@dataclass(frozen=True)
class Method:
    """One way of scoring: ``method`` with its ``half_life_days`` (None for ``most_bought``)."""

    method: str
    half_life_days: float | None = None

    @property
    def name(self) -> str:
        return self.method if self.half_life_days is None else f"{self.method}({self.half_life_days:g}d)"


def purchase_days(orders: DataFrame, order_items: DataFrame, statuses) -> DataFrame:
    """``user_id, item_id, day``: each day a registered customer bought a product (orders in
    ``statuses``; guests have no customer to remind)."""
    bought = orders.where(F.col("status").isin(*statuses) & F.col("user_id").isNotNull()).select(
        "order_id", "user_id", F.col("order_date").alias("day")
    )
    lines = order_items.select("order_id", F.col("product_id").alias("item_id"))
    return lines.join(bought, "order_id").select("user_id", "item_id", "day").distinct()


def scores(
    days: DataFrame,
    as_of: date,
    method: Method,
    horizon_days: int = 30,
    default_interval_days: float = 90.0,
) -> DataFrame:
    """``user_id, item_id, score, times_bought, last_bought, due_date`` for every product each
    customer bought on or before ``as_of`` (see the module docstring for the methods)."""
    if method.method not in METHODS:
        raise ValueError(f"unknown buy-again method {method.method!r}; choose from {', '.join(METHODS)}")
    past = days.where(F.col("day") <= F.lit(as_of))
    age = F.datediff(F.lit(as_of), F.col("day")).cast("double")
    weight = F.lit(1.0)  # no half-life: every purchase day counts alike
    if method.half_life_days:
        weight = F.pow(F.lit(0.5), age / F.lit(float(method.half_life_days)))
    pairs = past.groupBy("user_id", "item_id").agg(
        F.count("*").alias("times_bought"),
        F.min("day").alias("first_bought"),
        F.max("day").alias("last_bought"),
        F.sum(weight).alias("decayed"),
    )
    own_gap = F.when(
        F.col("times_bought") > 1,
        F.datediff("last_bought", "first_bought") / (F.col("times_bought") - 1),
    )
    pairs = pairs.withColumn("own_gap", own_gap)
    typical = pairs.groupBy("item_id").agg(F.percentile_approx("own_gap", 0.5).alias("product_gap"))
    pairs = pairs.join(typical, "item_id", "left").withColumn(
        "interval",
        F.greatest(F.lit(1.0), F.coalesce("own_gap", "product_gap", F.lit(float(default_interval_days)))),
    )
    since = F.datediff(F.lit(as_of), F.col("last_bought")).cast("double")
    due = F.exp(-F.abs(F.log((since + F.lit(horizon_days / 2)) / F.col("interval"))))
    score = {
        "most_bought": F.col("times_bought").cast("double"),
        "decayed": F.col("decayed"),
        "cadence": F.col("decayed") * due,
    }[method.method]
    return pairs.select(
        "user_id",
        "item_id",
        score.alias("score"),
        "times_bought",
        "last_bought",
        F.date_add("last_bought", F.round("interval").cast("int")).alias("due_date"),
    )


def top(scored: DataFrame, n: int) -> DataFrame:
    """The ``n`` best per customer with their ``rank`` (1 = best; ties: the more recently
    bought, then the smaller product id)."""
    order = Window.partitionBy("user_id").orderBy(F.desc("score"), F.desc("last_bought"), "item_id")
    return scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n)


def repeats(days: DataFrame, cutoff: date, end: date) -> DataFrame:
    """``user_id, item_id``: what customers bought in ``(cutoff, end]`` that they had bought on
    or before ``cutoff`` (the truth buy-again lists are measured on)."""
    before = days.where(F.col("day") <= F.lit(cutoff)).select("user_id", "item_id").distinct()
    after = days.where((F.col("day") > F.lit(cutoff)) & (F.col("day") <= F.lit(end)))
    return after.select("user_id", "item_id").distinct().join(before, ["user_id", "item_id"])


@dataclass
class Measured:
    """Each method's metrics at k (by name), its per-customer nDCG, and the customers measured."""

    metrics: dict[str, dict[str, float]]
    per_user: dict[str, pd.Series]
    users: int


def evaluate(
    days: DataFrame, cutoff: date, end: date, methods: list[Method], k: int, horizon_days: int | None = None
) -> Measured:
    """Every method's lists as of ``cutoff`` against the repeat purchases of ``(cutoff, end]``,
    over every customer who made one: nDCG, recall, precision, MAP and hit rate at ``k``."""
    from models.rec_metrics import per_user_accuracy

    horizon = horizon_days or max((end - cutoff).days, 1)
    truth = repeats(days, cutoff, end).toPandas()
    buyers = truth[["user_id"]].drop_duplicates()
    metrics, per_user = {}, {}
    spark = days.sparkSession
    wanted = spark.createDataFrame(buyers) if len(buyers) else None
    for method in methods:
        if wanted is None:
            lists = pd.DataFrame({"user_id": [], "rank": [], "item_id": []})
        else:
            ranked = top(scores(days, cutoff, method, horizon).join(F.broadcast(wanted), "user_id"), k)
            lists = ranked.select("user_id", "rank", "item_id").toPandas()
        accuracy = per_user_accuracy(lists, truth, k)
        metrics[method.name] = {f"{name}@{k}": round(float(accuracy[name].mean()), 6) if len(accuracy) else 0.0
                                for name in accuracy.columns}  # fmt: skip
        per_user[method.name] = accuracy["ndcg"] if len(accuracy) else pd.Series(dtype=float)
    return Measured(metrics, per_user, len(buyers))


def best(measured: Measured, methods: list[Method], k: int) -> Method:
    """The method with the best nDCG@k (ties: the first given, so list the baseline first)."""
    ndcg = [measured.metrics[m.name][f"ndcg@{k}"] for m in methods]
    return methods[int(np.argmax(ndcg))]
