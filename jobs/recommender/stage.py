"""The nightly recommender stage: interactions -> tune -> evaluate -> gate -> register ->
publish, for a logical date D, from published data only.

1. Signals (``config/recommender.yaml`` interactions) over ``lookback_days`` up to D.
2. Temporal holdout: the last ``holdout_days`` are the test set; the competition cuts a
   validation window (``validation_days``) from the training side only. ALS, EASE, item-kNN
   and recent popularity are each tried with the values of ``tuning`` (ALS) and
   ``competition``; the model best on validation is the candidate. ALS's search of
   ``max_trials`` parameter sets runs at most every ``tuning.every_days``; the nights in
   between refit the live version's ALS parameters (:func:`tuning_for`).
3. Each model's best values are refitted and evaluated side by side on the holdout, overall
   and by lifecycle stage and tenure, under the published lists' rule (only owned items are
   excluded; a holdout cart or purchase of a product not owned is relevant, see
   :func:`evaluate_holdout`); every row goes to ``mart_model_evaluation``.
4. Gate (:func:`gate`): a learned candidate is published only if it beats the strongest
   cheap baseline on evidence (paired bootstrap interval over at least ``min_eval_users``
   users), else that baseline is; and what is published must stay within
   ``max_drop_vs_production`` of the live model's recorded nDCG@k. The night is registered
   either way (``recommender.registry_root``); only a passing one is promoted.
5. The published model is refit on everything up to D and publishes ``mart_recommendations``
   (top N per user: active products only, bought items excluded unless their category is
   repurchasable, at most ``max_per_category`` per category; users with too little history
   get their category's (or the shop's) popular products, marked by ``reason_code``) and
   ``mart_similar_items`` (cosine of ALS's item factors, or of co-purchases for the other
   models). A failing gate leaves the previous outputs live and raises
   :class:`ModelGateError`, which fails the task with the reason.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.platform.daily import USER_ITEM_DAYS, published_daily
from jobs.platform.errors import ConfigError, ModelGateError
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.provenance import code_version
from jobs.platform.publish import Output, publish, snapshot
from jobs.platform.published import as_date, published_tables
from jobs.platform.warehouse import frame_to_arrow, to_arrow
from jobs.recommender.evaluation import CHEAP, model_maker
from jobs.recommender.interactions import (
    IdIndex,
    event_signals,
    pairs,
    purchase_signals,
    temporal_split,
)
from jobs.recommender.settings import RecommenderConfig, load_recommender
from models import buy_again
from models.recommenders import lists_matrix, similar_by_copurchase, top_n_spark

log = logging.getLogger(__name__)
MODEL = "recommender"
PUBLISHED = ("mart_recommendations", "mart_similar_items")
ALSO_PUBLISHED = ("mart_buy_again",)  # restored with a version that has it (versions before it do not)


def gate(report: dict, production: dict | None, settings: RecommenderConfig, k: int) -> tuple[str, bool, str]:
    """(published model, passed, reason) from the night's competition report and the live
    model's record.

    The candidate is the model best on validation. A learned one (ALS, EASE) is published
    only if it beats the strongest cheap baseline on evidence: at least ``min_eval_users``
    users evaluated and a paired bootstrap interval of per-user nDCG differences above 0.
    Otherwise that baseline's lists are published: they are what the evidence supports. The
    published model's nDCG@k must then stay within ``max_drop_vs_production`` of the live
    model's recorded nDCG@k, or nothing is published."""
    metric = f"ndcg@{k}"
    models, chosen, versus = report["models"], report["chosen"], report.get("versus_baseline")

    def score(name: str) -> float:
        return models[name]["metrics"][metric]

    if versus is None:
        published, reason = (
            chosen,
            f"{chosen} {metric} {score(chosen):.4f} is best on validation and the strongest cheap baseline",
        )
    elif chosen in CHEAP:
        published, reason = (
            chosen,
            f"{chosen} {metric} {score(chosen):.4f} is best on validation ({versus['baseline']} {score(versus['baseline']):.4f})",
        )
    else:
        baseline = versus["baseline"]
        interval = (f"difference {versus['difference']:+.4f}, {versus['confidence']:.0%} interval "
                    f"{versus['low']:+.4f} to {versus['high']:+.4f}, {versus['users']} users")  # fmt: skip
        head = f"{chosen} {metric} {score(chosen):.4f} vs {baseline} {score(baseline):.4f} ({interval})"
        if versus["users"] < settings.gate.min_eval_users:
            published = baseline
            reason = f"{head}: fewer than gate.min_eval_users {settings.gate.min_eval_users} users, no evidence; {baseline} published"
        elif versus["low"] <= 0:
            published, reason = baseline, f"{head}: not shown better; {baseline} published"
        else:
            published, reason = chosen, f"{head}: better on evidence"
    if production is not None:
        live_model = production.get("published_model", "als")
        live = production.get("metrics", {}).get(live_model, {}).get("metrics", {}).get(metric)
        if live is not None and score(published) < live * (1 - settings.gate.max_drop_vs_production):
            return (
                published,
                False,
                (
                    f"{reason}; but {published} {metric} {score(published):.4f} is more than "
                    f"{settings.gate.max_drop_vs_production:.0%} below the live model {production['version']} "
                    f"({live_model} {live:.4f})"
                ),
            )
        reason += f"; live {production['version']} ({live_model})"
    return published, True, reason


def signals_up_to(
    current: dict[str, DataFrame], item_days: DataFrame, settings: RecommenderConfig, as_of: date
) -> DataFrame:
    """Event and purchase signals of the lookback (``item_days``: the customers' daily
    aggregates per product, :func:`jobs.platform.daily.user_item_days`)."""
    ic = settings.interactions
    start = as_of - timedelta(days=ic.lookback_days)
    orders = current["orders"].where((F.col("order_date") > F.lit(start)) & (F.col("order_date") <= F.lit(as_of)))
    return event_signals(item_days, ic.event_weights, ic.max_events_per_day).unionByName(
        purchase_signals(current["order_items"], orders, ic.purchase_weights)
    )


def _lifecycle(config, as_of: date) -> pd.Series:
    from jobs.platform.ops import warehouse_engine

    schema = config.warehouse.schema_name
    engine = warehouse_engine(config)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"select user_id, lifecycle_stage from {schema}.mart_user_lifecycle where snapshot_date = "
                f"(select max(snapshot_date) from {schema}.mart_user_lifecycle where snapshot_date <= :d)"
            ),
            {"d": as_of},
        ).all()
    return pd.Series({int(u): s for u, s in rows}, dtype="object")


def _groups(lifecycle: pd.Series, first_seen: pd.Series, cutoff: date):
    """Evaluation breakdowns by user index: lifecycle stage, and new (first interaction in
    the 30 days before the cutoff) vs returning."""

    def build(index: IdIndex, data) -> dict[str, pd.Series]:
        ids = pd.Series(index.user_ids())
        first = ids.map(first_seen)
        tenure = np.where(pd.to_datetime(first) > pd.Timestamp(cutoff - timedelta(days=30)), "new", "returning")
        return {"lifecycle": ids.map(lifecycle).fillna("(unknown)"), "tenure": pd.Series(tenure, index=ids.index)}

    return build


def _catalogue(products: DataFrame, index: IdIndex) -> pd.DataFrame:
    """Per item index: product_id, category and whether it may be recommended (active)."""
    frame = pd.DataFrame({"product_id": index.item_ids()})
    info = products.select("product_id", "category_l1", "is_active").toPandas().set_index("product_id")
    frame["category"] = frame["product_id"].map(info["category_l1"]).fillna("(unknown)")
    frame["active"] = frame["product_id"].map(info["is_active"]).fillna(False).astype(bool)
    return frame


def publish_lists(
    model,
    index: IdIndex,
    data,
    users: DataFrame,
    purchased: DataFrame,
    catalogue: pd.DataFrame,
    settings: RecommenderConfig,
) -> DataFrame:
    """Top-N per registered user (``users``: Spark ``user_id``), scored in Spark's executors:
    the published model (:func:`_user_side`) for users with enough history, category (or
    shop) popularity for the rest. Returns Spark ``user_id, rank, product_id, score,
    reason_code``.

    The fallback is scored like a factor model: a cold user's vector is ``[1, boost x
    one-hot(favourite category)]``, an item's ``[popularity, one-hot(category)]``, so its
    score is the item's popularity, lifted by ``boost`` (more than any popularity) in the
    category where most of the user's (few) interactions fall.
    """
    pub = settings.publishing
    spark = users.sparkSession
    n_items = len(catalogue)
    categories = pd.Categorical(catalogue["category"])
    codes = np.asarray(categories.codes, dtype=np.int32)
    repurchasable = catalogue["category"].isin(pub.repurchasable_categories).to_numpy()
    items = spark.createDataFrame(
        pd.DataFrame(
            {
                "i": np.arange(n_items, dtype=np.int32),
                "code": codes,
                "repurchasable": repurchasable,
                "product_id": catalogue["product_id"].to_numpy(),
            }
        )
    )
    # bought items (not repurchasable) are excluded
    bought = (
        index.indexed(purchased)
        .join(items.where(~F.col("repurchasable")).select("i"), "i")
        .groupBy("user_id")
        .agg(F.collect_set("i").alias("exclude"))
    )
    seen = data.frame.join(items.select("i", "code"), "i")
    history = seen.groupBy("u").agg(F.count("*").alias("distinct_items"))
    # a cold user's category: where most of their interaction weight falls (ties: first category)
    by_category = seen.groupBy("u", "code").agg(F.sum("weight").alias("w"))
    first = Window.partitionBy("u").orderBy(F.desc("w"), "code")
    favourite = (
        by_category.withColumn("n", F.row_number().over(first))
        .where("n = 1")
        .select("u", F.col("code").alias("favourite"))
    )
    people = (
        users.select("user_id")
        .distinct()
        .join(index.users, "user_id", "left")
        .join(history, "u", "left")
        .join(favourite, "u", "left")
        .join(bought, "user_id", "left")
    )
    allowed = catalogue["active"].to_numpy()
    cap = {"categories": codes, "per_category": pub.max_per_category} if pub.max_per_category else {}
    people, warm, vectors, item_vectors = _user_side(model, people, data)
    warm = warm & (F.col("distinct_items") >= pub.min_history_items)
    listed = top_n_spark(people.where(warm), vectors, item_vectors, pub.top_n, "user_id", allowed, **cap).withColumn(
        "reason_code", F.lit(model.name)
    )

    counts = data.frame.groupBy("i").agg(F.count("*").alias("n")).toPandas()
    popularity = np.zeros(n_items, np.float32)
    popularity[counts["i"].to_numpy()] = counts["n"].to_numpy()
    boost = float(popularity.max() + 1)
    n_categories = len(categories.categories)
    item_side = np.hstack([popularity[:, None], np.eye(n_categories, dtype=np.float32)[codes]])

    def fallback_vectors(batch: pd.DataFrame) -> np.ndarray:
        vectors = np.zeros((len(batch), 1 + n_categories), np.float32)
        vectors[:, 0] = 1.0
        known = batch["favourite"].notna().to_numpy()
        vectors[np.flatnonzero(known), 1 + batch["favourite"].to_numpy()[known].astype(np.int64)] = boost
        return vectors

    cold = people.where(~warm).select("user_id", "exclude", "favourite")
    rest = top_n_spark(cold, fallback_vectors, item_side, pub.top_n, "user_id", allowed, **cap)
    rest = rest.join(cold.select("user_id", "favourite"), "user_id").select(
        "user_id",
        "rank",
        "column",
        (F.col("score") % F.lit(boost)).alias("score"),  # the popularity, without the boost
        F.when(F.col("favourite").isNotNull(), "fallback_category_popularity")
        .otherwise("fallback_popularity")
        .alias("reason_code"),
    )
    return (
        listed.unionByName(rest)
        .join(F.broadcast(items.select(F.col("i").alias("column"), "product_id")), "column")
        .select("user_id", "rank", "product_id", F.col("score").cast("double").alias("score"), "reason_code")
    )


def _user_side(model, people: DataFrame, data):
    """``(people, warm, vectors, item_vectors)`` for :func:`top_n_spark` by the published
    model: ALS scores its user factors (trained users are warm) against its item factors;
    EASE and item-kNN a user's binary history row against their item x item weights; recent
    popularity one vector of ones against each item's popularity (everyone with history is warm)."""
    if model.name == "als":
        people = people.join(model.user_frame, "u", "left")
        return (
            people,
            F.col("features").isNotNull(),
            lambda batch: np.stack(batch["features"].to_numpy()),
            model.item_factors,
        )
    if model.name == "popularity":
        return (
            people,
            F.col("u").isNotNull(),
            lambda batch: np.ones((len(batch), 1), np.float32),
            model.popularity[:, None],
        )
    n_items = data.n_items
    history = data.frame.groupBy("u").agg(F.collect_list("i").alias("history"))
    people = people.join(history, "u", "left")
    return (
        people,
        F.col("history").isNotNull(),
        lambda batch: lists_matrix(batch["history"], n_items),
        model.item_vectors,
    )


def buy_again_night(days: DataFrame, as_of: date, settings: RecommenderConfig) -> tuple[object, dict, list[dict]]:
    """The night's buy-again method: every candidate of ``buy_again`` is measured on the repeat
    purchases of the validation window (before the holdout), the best is measured with the
    ``most_bought`` baseline on the holdout's. Returns (method, report, evaluation rows as
    ``model, metric, value, users``: models ``buy_again`` and ``most_bought``, metrics
    ``repeat_*@k``)."""
    ev, ba = settings.evaluation, settings.buy_again
    cutoff = as_of - timedelta(days=ev.holdout_days)
    valid_cutoff = cutoff - timedelta(days=ev.validation_days)
    candidates = ba.candidates()
    validation = buy_again.evaluate(days, valid_cutoff, cutoff, candidates, ev.k, ba.horizon_days)
    chosen = buy_again.best(validation, candidates, ev.k)
    measured = [candidates[0]] + ([chosen] if chosen != candidates[0] else [])
    test = buy_again.evaluate(days, cutoff, as_of, measured, ev.k, ba.horizon_days)
    rows = [
        {"model": model, "metric": f"repeat_{metric}", "value": value, "users": test.users}
        for model, method in (("buy_again", chosen), ("most_bought", candidates[0]))
        for metric, value in test.metrics[method.name].items()
    ]
    report = {
        "method": chosen.name,
        "validation": {
            "users": validation.users,
            **{name: m[f"ndcg@{ev.k}"] for name, m in validation.metrics.items()},
        },
        "holdout": {"users": test.users, **test.metrics},
    }
    return chosen, report, rows


def buy_again_lists(
    days: DataFrame, as_of: date, method, users: DataFrame, products: DataFrame, settings: RecommenderConfig
) -> DataFrame:
    """``user_id, rank, product_id, score, times_bought, last_bought, due_date, method``: the top
    ``buy_again.top_n`` products each registered customer bought, by ``method``; active
    products only, never of ``exclude_categories``."""
    ba = settings.buy_again
    excluded = (
        F.coalesce(F.col("category_l1").isin(*ba.exclude_categories), F.lit(False))
        if ba.exclude_categories
        else F.lit(False)
    )
    listable = products.where(F.col("is_active") & ~excluded).select(F.col("product_id").alias("item_id"))
    scored = buy_again.scores(days, as_of, method, ba.horizon_days, ba.default_interval_days)
    scored = scored.join(F.broadcast(listable), "item_id").join(users.select("user_id").distinct(), "user_id")
    return buy_again.top(scored, ba.top_n).select(
        "user_id", "rank", F.col("item_id").alias("product_id"), "score", "times_bought", "last_bought", "due_date",
        F.lit(method.name).alias("method"),
    )  # fmt: skip


def owned_items(current: dict[str, DataFrame], statuses, settings: RecommenderConfig) -> DataFrame:
    """``user_id, item_id, ts`` (first bought): products each user bought (orders in
    ``statuses``) that may not be recommended again (not of a repurchasable category)."""
    orders = (
        current["orders"]
        .where(F.col("status").isin(*statuses) & F.col("user_id").isNotNull())
        .select("order_id", "user_id", F.col("created_at").alias("ts"))
    )
    lines = current["order_items"].select("order_id", F.col("product_id").alias("item_id")).join(orders, "order_id")
    repurchasable = F.coalesce(F.col("category_l1").isin(*settings.publishing.repurchasable_categories), F.lit(False))
    once = current["products"].where(~repurchasable).select(F.col("product_id").alias("item_id"))
    return lines.join(once, "item_id").groupBy("user_id", "item_id").agg(F.min("ts").alias("ts"))


def evaluate_holdout(
    signals: DataFrame,
    as_of: date,
    settings: RecommenderConfig,
    groups=None,
    categories=None,
    owned: DataFrame | None = None,
):
    """The nightly evaluation of signals up to ``as_of``: the last ``holdout_days`` are the
    test set, tuning validates on the ``validation_days`` before them. With ``owned``
    (:func:`owned_items`) it measures what is published: lists exclude only what the user
    owns by then, and a relevant item is one carted or bought in the holdout and not owned
    (a product viewed earlier and bought now counts); without, everything in training is
    excluded and only new items are relevant. Returns the
    :class:`~jobs.recommender.evaluation.Evaluation`, or the reason (a string) when too few users
    have training data to tune and evaluate."""
    from jobs.recommender.evaluation import tune_and_evaluate

    ev, ic = settings.evaluation, settings.interactions
    cutoff = as_of - timedelta(days=ev.holdout_days)
    valid_cutoff = cutoff - timedelta(days=ev.validation_days)
    train_signals, test_signals = temporal_split(signals, cutoff)
    fit_signals, valid_signals = temporal_split(train_signals, valid_cutoff)
    decayed = {"half_life_days": ic.half_life_days, "max_weight": ic.max_weight}
    fit_pairs = pairs(fit_signals, valid_cutoff, **decayed).persist()
    users_fit = fit_pairs.select("user_id").distinct().count()
    if users_fit < ev.min_train_users:
        fit_pairs.unpersist()
        return (
            f"{users_fit} users with interactions before {valid_cutoff}; need {ev.min_train_users} to tune and evaluate"
        )
    return tune_and_evaluate(
        fit_pairs,
        pairs(valid_signals, None, None, None),
        pairs(train_signals, cutoff, **decayed),
        pairs(test_signals, None, None, None),
        settings,
        ev.k,
        settings.tuning.seed,
        min_relevant_weight=ic.min_relevant_weight,
        groups=groups,
        categories=categories,
        owned=None if owned is None else tuple(temporal_split(owned, day)[0] for day in (valid_cutoff, cutoff)),
    )


def tuning_for(settings: RecommenderConfig, production: dict | None, as_of: date) -> tuple[RecommenderConfig, date]:
    """The night's tuning, and the date the parameters it starts from were searched.

    A search fits ALS ``max_trials`` times and the best parameters move slowly, so it runs at
    most every ``tuning.every_days``: on the nights in between (after the live version's
    search, never before it) the live model's parameters are the one trial, still refit and
    evaluated against the baselines and gated as every night."""
    every = settings.tuning.every_days
    searched = production and production.get("tuned_on") and date.fromisoformat(production["tuned_on"])
    if every and searched and 0 <= (as_of - searched).days < every and production.get("params"):
        params = type(settings.tuning.default).model_validate(production["params"])
        tuning = settings.tuning.model_copy(update={"default": params, "max_trials": 1})
        return settings.model_copy(update={"tuning": tuning}), searched
    return settings, as_of


def stamped(table: pa.Table, loaded_at: datetime) -> pa.Table:
    """``table`` with its ``loaded_at`` column."""
    kind = pa.timestamp("us", tz="UTC")
    return table.append_column(pa.field("loaded_at", kind), pa.repeat(pa.scalar(loaded_at, kind), table.num_rows))


def build_recommender(config, as_of: date, settings: RecommenderConfig | None = None) -> dict:
    """Run the nightly recommender for D; see the module docstring."""
    from models.recommenders import similar_items

    settings = settings or load_recommender(config.recommender.config_file)
    ev, ic = settings.evaluation, settings.interactions
    registry = _registry(config)
    batches, current = published_tables(
        config,
        as_of,
        {"users": "user_id", "orders": "order_id", "order_items": ("order_id", "line_no"), "products": "product_id"},
    )
    item_days = published_daily(config, USER_ITEM_DAYS, batches, as_of, ic.lookback_days)
    signals = signals_up_to(current, item_days, settings, as_of).persist()
    first_seen = signals.groupBy("user_id").agg(F.min(F.to_date("ts")).alias("d")).toPandas().set_index("user_id")["d"]
    categories = (
        current["products"].select("product_id", "category_l1").toPandas().set_index("product_id")["category_l1"]
    )
    cutoff = as_of - timedelta(days=ev.holdout_days)
    statuses = PURCHASE_STATUSES
    owned = owned_items(current, statuses, settings).persist()
    production = registry.production()
    settings, tuned_on = tuning_for(settings, production, as_of)
    result = evaluate_holdout(
        signals,
        as_of,
        settings,
        groups=_groups(_lifecycle(config, as_of), first_seen, cutoff),
        categories=categories,
        owned=owned,
    )
    if isinstance(result, str):
        log.warning("recommender not trained for %s: %s", as_of, result)
        publish(
            config,
            as_of,
            "recommender",
            "recommendations",
            [],
            rows_in=0,
            details={"reason": result},
            status="skipped",
        )
        signals.unpersist(), owned.unpersist()
        return {"snapshot_date": as_of.isoformat(), "status": "skipped", "reason": result}
    published, passed, reason = gate(result.report, production, settings, ev.k)
    days = buy_again.purchase_days(current["orders"], current["order_items"], statuses).persist()
    again, again_report, again_rows = buy_again_night(days, as_of, settings)
    version = f"{as_of:%Y%m%d}-{datetime.now(timezone.utc):%H%M%S}"
    loaded_at = datetime.now(timezone.utc)

    evaluation_rows = [
        {"model_version": version, "snapshot_date": as_of, "model": name, "user_group": row["group"], "metric": row["metric"],
         "value": row["value"], "users": row["users"], "is_published": passed and name == published, "loaded_at": loaded_at}
        for name, entry in result.report["models"].items()
        for row in [{"group": "all", "metric": m, "value": v, "users": result.report["test"]["users_evaluated"]} for m, v in entry["metrics"].items()] + entry["by_group"]
    ] + [
        {"model_version": version, "snapshot_date": as_of, "model": row["model"], "user_group": "all", "metric": row["metric"],
         "value": row["value"], "users": row["users"], "is_published": passed and row["model"] == "buy_again", "loaded_at": loaded_at}
        for row in again_rows
    ]  # fmt: skip
    outputs = {}
    if passed:
        all_pairs = pairs(signals, as_of, ic.half_life_days, ic.max_weight)
        index = IdIndex(all_pairs)
        data = index.interactions(all_pairs)
        model = model_maker(settings, settings.tuning.seed)(published, result.params[published]).fit(data)
        catalogue = _catalogue(current["products"], index)
        spark = data.frame.sparkSession
        lists = publish_lists(
            model, index, data, current["users"], owned.select("user_id", "item_id"), catalogue, settings
        )
        active, similar_n = catalogue["active"].to_numpy(), settings.publishing.similar_n
        if published == "als":  # the cosine of item factors; the other models have none
            similar = similar_items(spark, model.item_factors, similar_n, allowed=active)
        else:
            similar = spark.createDataFrame(similar_by_copurchase(data, similar_n, allowed=active).astype(
                {"i": "int32", "rank": "int32", "similar_i": "int32", "similarity": "float64"}))  # fmt: skip
        ids = spark.createDataFrame(pd.DataFrame({"i": np.arange(len(catalogue), dtype=np.int32),
                                                  "product_id": catalogue["product_id"].to_numpy()}))  # fmt: skip
        similar = (
            similar.join(F.broadcast(ids), "i")
            .join(F.broadcast(ids.select(F.col("i").alias("similar_i"), F.col("product_id").alias("similar_product_id"))), "similar_i")
            .select(F.lit(as_of).alias("snapshot_date"), "product_id", "rank", "similar_product_id",
                    F.col("similarity").cast("double").alias("similarity"), F.lit(version).alias("model_version"))
        )  # fmt: skip
        # the lists leave the executors once, as Arrow, for the warehouse's one publish path
        outputs = {
            "mart_recommendations": to_arrow(lists.select(
                F.lit(as_of).alias("snapshot_date"), "user_id", "rank", "product_id", "score", "reason_code",
                F.lit(version).alias("model_version"))),
            "mart_similar_items": to_arrow(similar),
            "mart_buy_again": to_arrow(buy_again_lists(days, as_of, again, current["users"], current["products"], settings).select(
                F.lit(as_of).alias("snapshot_date"), "user_id", "rank", "product_id", "score", "times_bought",
                "last_bought", "due_date", "method", F.lit(version).alias("model_version"))),
        }  # fmt: skip
        # ALS's factors; the other models are deterministic functions of the training snapshot
        # and their parameters (EASE's weights alone are items x items)
        factors = {
            # written by the executors
            "user_factors": model.user_frame.join(index.users, "u").select("user_id", F.col("features").alias("factors")),
            "item_factors": pa.table({"product_id": index.item_ids(), "factors": list(model.item_factors)}),
        } if published == "als" else {}  # fmt: skip
        artefacts = {
            **factors,
            "interactions": all_pairs.select("user_id", "item_id", "weight", "last_day"),
            # the published outputs, so promote/rollback can put exactly these back
            **outputs,
        }  # fmt: skip
    else:
        artefacts = {}
    meta = {
        "snapshot_date": as_of.isoformat(),
        "params": result.report["als_params"],  # ALS's live tuning (tuning_for)
        "published_model": published,
        "model_params": result.params[published],
        "chosen": result.chosen,
        "versus_baseline": result.report["versus_baseline"],
        "buy_again": again_report,
        "metrics": result.report["models"],
        "tuning_trials": result.report["tuning_trials"],
        "tuned_on": tuned_on.isoformat(),
        "data": {
            "train": result.report["train"],
            "test": result.report["test"],
            "k": ev.k,
            "lookback_days": ic.lookback_days,
            "holdout_days": ev.holdout_days,
            "snapshot": "interactions.parquet",
        },  # fmt: skip
        "gate": {"passed": passed, "reason": reason},
        "code_version": code_version(),
    }
    registry.save(version, meta, artefacts)

    evaluation = Output(
        "mart_model_evaluation",
        frame_to_arrow(pd.DataFrame(evaluation_rows)),
        where="model_version = :v",
        params={"v": version},
    )
    counts = publish(
        config, as_of, "recommender", "recommendations",
        [evaluation, *(snapshot(name, stamped(table, loaded_at)) for name, table in outputs.items())],
        rows_in=result.report["train"]["interactions"],
        details={"version": version, "gate": reason, "model": published, "params": result.params[published]},
        status="success" if passed else "failed",
    )  # fmt: skip
    signals.unpersist(), owned.unpersist(), days.unpersist()
    if not passed:
        raise ModelGateError(
            f"{as_of}: model {version} not published: {reason}; the previous recommendations stay live"
        )
    registry.promote(version, reason=f"nightly gate passed: {reason}")
    return {
        "snapshot_date": as_of.isoformat(),
        "version": version,
        "gate": reason,
        "model": published,
        "params": result.params[published],
        "rows_by_table": counts,
    }


def _registry(config):
    from jobs.platform.storage import open_storage
    from models.registry import Registry

    return Registry(
        open_storage(config.recommender.registry_root, config.storage.s3_endpoint_url, config.storage.s3_region), MODEL
    )


def republish(config, meta: dict) -> dict:
    """Put a registered version's published lists back live: they replace the rows of the
    latest published snapshot date (so the ``*_latest`` views serve them)."""
    from jobs.platform.ops import warehouse_engine

    version, schema = meta["version"], config.warehouse.schema_name
    registry = _registry(config)
    held = meta.get("artefacts", [])
    missing = [name for name in PUBLISHED if name not in held]
    if missing:
        raise ModelGateError(
            f"version {version} has no published outputs to restore ({', '.join(missing)}): it never passed the gate"
        )
    loaded_at = datetime.now(timezone.utc)
    with warehouse_engine(config).connect() as conn:
        latest = conn.execute(sa.text(f"select max(snapshot_date) from {schema}.mart_recommendations")).scalar_one()
    day = max(filter(None, [as_date(latest), date.fromisoformat(meta["snapshot_date"])]))
    outputs = [
        snapshot(
            name,
            frame_to_arrow(registry.load(version, name).to_pandas().assign(snapshot_date=day, loaded_at=loaded_at)),
        )
        for name in (*PUBLISHED, *(name for name in ALSO_PUBLISHED if name in held))
    ]
    restored = outputs[0].rows
    counts = publish(
        config, day, "recommender_republish", "recommendations", outputs,
        rows_in=restored, details={"version": version},
    )  # fmt: skip
    return {"version": version, "snapshot_date": day.isoformat(), "rows_by_table": counts}


def models_command(config, action: str, version: str | None = None, reason: str | None = None) -> dict | list:
    """``marketing models list|promote VERSION|rollback``."""
    registry = _registry(config)
    if action == "list":
        live = registry.production()
        rows = []
        for meta in registry.versions():
            metric = f"ndcg@{meta.get('data', {}).get('k', 10)}"
            rows.append(
                {
                    "version": meta["version"],
                    "snapshot_date": meta.get("snapshot_date"),
                    "live": bool(live and live["version"] == meta["version"]),
                    "gate": meta.get("gate", {}),
                    metric: {name: entry["metrics"].get(metric) for name, entry in meta.get("metrics", {}).items()},
                    "params": meta.get("params"),
                    "code_version": meta.get("code_version"),
                }
            )
        return rows
    if action == "promote":
        meta = registry.meta(version)
        result = republish(config, meta)
        registry.promote(version, reason or "promoted by hand")
        return result
    if action == "rollback":
        current = registry.production()
        target = registry.rollback(reason or "rolled back by hand")
        try:
            return {**republish(config, target), "rolled_back_from": current["version"]}
        except Exception:
            registry.promote(current["version"], "rollback undone: the outputs could not be restored")
            raise
    raise ConfigError(f"unknown action {action!r}")
