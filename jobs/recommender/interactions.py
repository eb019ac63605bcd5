"""User x item interactions for the recommender (Spark): signals, weights, splits, indices.

A *signal* is one weighted observation ``user_id, item_id, ts, weight``: an event on a
product (``interactions.event_weights``, at most ``max_events_per_day`` per user, product,
day and type, so bursts do not dominate) or a purchased order line (``purchase_weights`` by
the order's final status: cancelled orders keep a cart-like weight, refunded ones none).
Signals become one row per pair by :func:`pairs`: the sum of weights decayed with
``half_life_days`` relative to the reference date, capped at ``max_weight``.

Splits never look at the test side when building the training side: :func:`temporal_split`
cuts at a time, :func:`random_split` holds out a share of each user's items chosen by a
seeded hash (the same split whatever the partitioning).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import scipy.sparse as sp
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from models.recommenders import Interactions


def event_signals(item_days: DataFrame, weights: dict[str, float], max_per_day: int) -> DataFrame:
    """``item_days``: the customers' daily aggregates per product and event type
    (:func:`jobs.platform.daily.user_item_days`); one signal per user, product, UTC day and
    weighted event type: the weight times the day's events, at most ``max_per_day``."""
    weight = F.lit(None).cast("double")
    for event_type, value in weights.items():
        weight = F.when(F.col("event_type") == event_type, F.lit(float(value))).otherwise(weight)
    daily = (
        item_days.withColumn("w", weight)
        .where(F.col("w") > 0)
        .groupBy("user_id", "product_id", "day", "event_type", "w")
        .agg(F.sum("n").alias("n"), F.max("last_at").alias("ts"))
    )
    return daily.select(
        "user_id",
        F.col("product_id").alias("item_id"),
        "ts",
        (F.col("w") * F.least(F.col("n"), F.lit(max_per_day))).alias("weight"),
    )


def purchase_signals(items: DataFrame, orders: DataFrame, weights: dict[str, float]) -> DataFrame:
    """``items``: order lines (``order_id, product_id, quantity``); ``orders``: ``order_id,
    user_id, status, created_at``. One signal per line, whatever the quantity; guest orders
    (no customer) give none, and a returned order's status (``returned``) has no weight."""
    weight = F.lit(0.0)
    for status, value in weights.items():
        weight = F.when(F.col("status") == status, F.lit(float(value))).otherwise(weight)
    lines = items.select("order_id", "product_id").join(
        orders.where(F.col("user_id").isNotNull()).select("order_id", "user_id", "status", "created_at"), "order_id"
    )
    return lines.where(weight > 0).select(
        "user_id", F.col("product_id").alias("item_id"), F.col("created_at").alias("ts"), weight.alias("weight")
    )


def pairs(
    signals: DataFrame, reference: date | None, half_life_days: float | None, max_weight: float | None
) -> DataFrame:
    """One row per ``user_id, item_id``: decayed weight sum (capped), the last day and time seen."""
    weight = F.col("weight")
    if reference is not None and half_life_days:
        age = F.greatest(F.datediff(F.lit(reference), F.to_date("ts")), F.lit(0))
        weight = F.when(F.col("ts").isNull(), weight).otherwise(
            weight * F.pow(F.lit(0.5), age / F.lit(float(half_life_days)))
        )
    summed = signals.groupBy("user_id", "item_id").agg(
        F.sum(weight).alias("weight"), F.max(F.to_date("ts")).alias("last_day"), F.max("ts").alias("ts")
    )
    if max_weight is not None:
        summed = summed.withColumn("weight", F.least(F.col("weight"), F.lit(float(max_weight))))
    return summed.where(F.col("weight") > 0)


def temporal_split(signals: DataFrame, cutoff: datetime | date) -> tuple[DataFrame, DataFrame]:
    """Signals at or before ``cutoff`` train, later ones test (a date means its whole day)."""
    if isinstance(cutoff, datetime):
        later = F.col("ts") > F.lit(cutoff)
    else:
        later = F.to_date("ts") > F.lit(cutoff)
    return signals.where(~later), signals.where(later)


def time_cutoff(signals: DataFrame, test_ratio: float) -> datetime:
    """The time after which about ``test_ratio`` of the signals fall."""
    (cutoff,) = signals.select(F.col("ts").cast("double").alias("t")).approxQuantile("t", [1 - test_ratio], 0.001)
    return datetime.fromtimestamp(cutoff, tz=None)


def random_split(pair_rows: DataFrame, test_ratio: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Per user with at least two items, ``round(test_ratio x items)`` (at least one, never
    all) go to test, chosen by a hash of (user, item, seed)."""
    per_user = Window.partitionBy("user_id")
    order = per_user.orderBy(F.xxhash64("user_id", "item_id", F.lit(seed)), "item_id")
    ranked = pair_rows.withColumn("_n", F.count("*").over(per_user)).withColumn("_pos", F.row_number().over(order))
    held = F.greatest(F.lit(1), F.round(F.col("_n") * test_ratio)).cast("int")
    is_test = (F.col("_n") >= 2) & (F.col("_pos") <= F.least(held, F.col("_n") - 1))
    return ranked.where(~is_test).drop("_n", "_pos"), ranked.where(is_test).drop("_n", "_pos")


class IdIndex:
    """Dense indices (0..n-1) for the users and items of a training set."""

    def __init__(self, train_pairs: DataFrame):
        # ids in sorted order, numbered in the JVM (no Python workers); the distinct ids of
        # one column fit one partition (millions are a few MB)
        self.users = self._numbered(train_pairs, "user_id", "u")
        self.items = self._numbered(train_pairs, "item_id", "i")
        self.n_users, self.n_items = self.users.count(), self.items.count()

    @staticmethod
    def _numbered(frame: DataFrame, column: str, name: str) -> DataFrame:
        order = Window.orderBy(column)
        ids = frame.select(column).distinct()
        return ids.select(column, (F.row_number().over(order) - 1).cast("int").alias(name)).persist()

    def interactions(self, pair_rows: DataFrame) -> Interactions:
        frame = pair_rows.join(self.users, "user_id").join(self.items, "item_id").select("u", "i", "weight", "last_day")
        return Interactions(frame.persist(), self.n_users, self.n_items)

    def indexed(self, pair_rows: DataFrame) -> DataFrame:
        """``u, i`` of pairs whose user and item are both known."""
        return pair_rows.join(self.users, "user_id").join(self.items, "item_id")

    def mask(self, pair_rows: DataFrame) -> sp.csr_matrix:
        """users x items matrix with a 1 for each known pair of ``pair_rows``."""
        rows = self.indexed(pair_rows).select("u", "i").distinct().toPandas()
        ones = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((ones, (rows["u"].to_numpy(), rows["i"].to_numpy())), shape=(self.n_users, self.n_items))

    def user_ids(self):
        return self.users.toPandas().sort_values("u")["user_id"].to_numpy()

    def item_ids(self):
        return self.items.toPandas().sort_values("i")["item_id"].to_numpy()


def held_out(known_pairs: DataFrame, test_pairs: DataFrame, min_weight: float = 0.0) -> DataFrame:
    """Relevant test pairs: at least ``min_weight`` and not already known (``known_pairs``:
    the training pairs, or what the user already owns)."""
    strong = test_pairs.where(F.col("weight") >= min_weight).select("user_id", "item_id")
    return strong.join(known_pairs.select("user_id", "item_id"), ["user_id", "item_id"], "left_anti")
