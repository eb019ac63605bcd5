"""The nightly recommender stage: interactions -> tune -> evaluate -> gate -> register ->
publish, for a logical date D, from published data only.

1. Signals (``config/recommender.yaml`` interactions) over ``lookback_days`` up to D.
2. Temporal holdout: the last ``holdout_days`` are the test set; tuning cuts a validation
   window (``validation_days``) from the training side only.
3. ALS (tuned), popularity and item-kNN are evaluated side by side on the holdout, overall
   and by lifecycle stage and tenure, under the published lists' rule (only owned items are
   excluded; a holdout cart or purchase of a product not owned is relevant, see
   :func:`evaluate_holdout`); every row goes to ``mart_model_evaluation``.
4. Gate: ALS must beat popularity's nDCG@k by ``min_lift_over_popularity`` and stay within
   ``max_drop_vs_production`` of the live model's recorded nDCG@k. The candidate is registered
   either way (``recommender.registry_root``); only a passing one is promoted.
5. A promoted model is refit on everything up to D and publishes ``mart_recommendations``
   (top N per user: active products only, bought items excluded unless their category is
   repurchasable, at most ``max_per_category`` per category; users with too little history
   get their category's (or the shop's) popular products, marked by ``reason_code``) and
   ``mart_similar_items`` (cosine of item factors). A failing gate leaves the previous
   outputs live and raises :class:`ModelGateError`, which fails the task with the reason.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
import sqlalchemy as sa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.errors import ConfigError, ModelGateError
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.provenance import code_version
from jobs.platform.publish import Output, publish, snapshot
from jobs.platform.published import as_date, published_events, published_tables
from jobs.platform.warehouse import frame_to_arrow, to_arrow
from jobs.recommender.interactions import (
    IdIndex,
    event_signals,
    pairs,
    purchase_signals,
    temporal_split,
)
from jobs.recommender.settings import RecommenderConfig, load_recommender
from models.recommenders import AlsRecommender, top_n

log = logging.getLogger(__name__)
MODEL = "recommender"
PUBLISHED = ("mart_recommendations", "mart_similar_items")


def gate(candidate: dict, production: dict | None, settings: RecommenderConfig, k: int) -> tuple[bool, str]:
    """(passed, reason) from the candidate's models' metrics and the live model's record."""
    metric = f"ndcg@{k}"
    als = candidate["als"]["metrics"][metric]
    popular = candidate["popularity"]["metrics"][metric]
    needed = popular * (1 + settings.gate.min_lift_over_popularity)
    if als <= needed:
        return (
            False,
            f"ALS {metric} {als:.4f} does not beat popularity {popular:.4f} by {settings.gate.min_lift_over_popularity:.0%} (needs > {needed:.4f})",
        )
    if production is not None:
        live = production.get("metrics", {}).get("als", {}).get("metrics", {}).get(metric)
        if live is not None and als < live * (1 - settings.gate.max_drop_vs_production):
            return False, (
                f"ALS {metric} {als:.4f} is more than {settings.gate.max_drop_vs_production:.0%} below the live model "
                f"{production['version']} ({live:.4f})"
            )
    return True, f"ALS {metric} {als:.4f} vs popularity {popular:.4f}" + (
        f" and live {production['version']}" if production else ""
    )


def signals_up_to(
    current: dict[str, DataFrame], events: DataFrame, settings: RecommenderConfig, as_of: date
) -> DataFrame:
    ic = settings.interactions
    start = as_of - timedelta(days=ic.lookback_days)
    orders = current["orders"].where((F.col("order_date") > F.lit(start)) & (F.col("order_date") <= F.lit(as_of)))
    return event_signals(events, ic.event_weights, ic.max_events_per_day).unionByName(
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
    model: AlsRecommender,
    index: IdIndex,
    data,
    users: np.ndarray,
    purchased: DataFrame,
    catalogue: pd.DataFrame,
    settings: RecommenderConfig,
) -> pd.DataFrame:
    """Top-N per registered user: ALS for users with enough history, category (or shop)
    popularity for the rest. Returns ``user_id, rank, product_id, score, reason_code``."""
    pub = settings.publishing
    n_items = len(catalogue)
    categories = pd.Categorical(catalogue["category"])
    codes = np.asarray(categories.codes)
    repurchasable = catalogue["category"].isin(pub.repurchasable_categories).to_numpy()
    position = pd.Series(np.arange(len(users)), index=users)
    user_u = pd.Series(np.arange(index.n_users), index=index.user_ids()).reindex(users)
    # bought items (not repurchasable) are excluded, in the publishing user space
    bought = index.indexed(purchased).select("user_id", "i").toPandas()
    bought = bought[~repurchasable[bought["i"].to_numpy()] & bought["user_id"].isin(position.index)]
    exclude = sp.csr_matrix(
        (np.ones(len(bought), np.float32), (position[bought["user_id"]].to_numpy(), bought["i"].to_numpy())),
        shape=(len(users), n_items),
    )
    csr = data.to_csr()
    distinct_items = np.diff(csr.indptr)
    warm = user_u.notna().to_numpy()
    warm[warm] = distinct_items[user_u[warm].astype(int).to_numpy()] >= pub.min_history_items
    allowed = catalogue["active"].to_numpy()
    cap = {"categories": codes, "per_category": pub.max_per_category} if pub.max_per_category else {}

    u_of_row = user_u.fillna(-1).astype(int).to_numpy()
    als = top_n(
        lambda rows: model.scores(u_of_row[rows]), np.flatnonzero(warm), n_items, pub.top_n, exclude, allowed, **cap
    )
    als["reason_code"] = "als"

    popularity = np.asarray((csr > 0).sum(axis=0)).ravel().astype(np.float32)
    # a cold user's category: where most of their (few) interactions fall
    favourite = np.full(len(users), -1)
    known = np.flatnonzero(user_u.notna().to_numpy() & ~warm)
    if len(known):
        rows = csr[user_u.to_numpy()[known].astype(int)]
        per_category = rows @ sp.csr_matrix(
            (np.ones(n_items), (np.arange(n_items), codes)), shape=(n_items, len(categories.categories))
        )
        favourite[known] = np.asarray(per_category.argmax(axis=1)).ravel()
    boost = popularity.max() + 1

    def fallback(rows: np.ndarray) -> np.ndarray:
        return popularity[None, :] + boost * (codes[None, :] == favourite[rows][:, None])

    cold = np.flatnonzero(~warm)
    rest = top_n(fallback, cold, n_items, pub.top_n, exclude, allowed, **cap)
    rest["reason_code"] = np.where(
        favourite[rest["row"].to_numpy()] >= 0, "fallback_category_popularity", "fallback_popularity"
    )
    rest["score"] = rest["score"] % boost  # the popularity itself, without the category boost
    lists = pd.concat([als, rest], ignore_index=True)
    return pd.DataFrame(
        {
            "user_id": users[lists["row"].to_numpy()],
            "rank": lists["rank"].to_numpy().astype(int),
            "product_id": catalogue["product_id"].to_numpy()[lists["column"].to_numpy()],
            "score": lists["score"].to_numpy().astype(float),
            "reason_code": lists["reason_code"].to_numpy(),
        }
    )


def owned_items(current: dict[str, DataFrame], statuses, settings: RecommenderConfig) -> DataFrame:
    """``user_id, item_id, ts`` (first bought): products each user bought (orders in
    ``statuses``) that may not be recommended again (not of a repurchasable category)."""
    orders = (
        current["orders"]
        .where(F.col("status").isin(*statuses))
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
    events = published_events(config, batches, as_of, ic.lookback_days)
    signals = signals_up_to(current, events, settings, as_of).persist()
    first_seen = signals.groupBy("user_id").agg(F.min(F.to_date("ts")).alias("d")).toPandas().set_index("user_id")["d"]
    categories = (
        current["products"].select("product_id", "category_l1").toPandas().set_index("product_id")["category_l1"]
    )
    cutoff = as_of - timedelta(days=ev.holdout_days)
    statuses = PURCHASE_STATUSES
    owned = owned_items(current, statuses, settings).persist()
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
            counts={"input": 0, "output": 0},
            details={"reason": result},
            status="skipped",
        )
        signals.unpersist(), owned.unpersist()
        return {"snapshot_date": as_of.isoformat(), "status": "skipped", "reason": result}
    production = registry.production()
    passed, reason = gate(result.report["models"], production, settings, ev.k)
    version = f"{as_of:%Y%m%d}-{datetime.now(timezone.utc):%H%M%S}"
    loaded_at = datetime.now(timezone.utc)

    evaluation_rows = [
        {"model_version": version, "snapshot_date": as_of, "model": name, "user_group": row["group"], "metric": row["metric"],
         "value": row["value"], "users": row["users"], "is_published": passed and name == "als", "loaded_at": loaded_at}
        for name, entry in result.report["models"].items()
        for row in [{"group": "all", "metric": m, "value": v, "users": result.report["test"]["users_evaluated"]} for m, v in entry["metrics"].items()] + entry["by_group"]
    ]  # fmt: skip
    outputs = {}
    if passed:
        all_pairs = pairs(signals, as_of, ic.half_life_days, ic.max_weight)
        index = IdIndex(all_pairs)
        data = index.interactions(all_pairs)
        model = AlsRecommender(result.best, settings.tuning.seed).fit(data)
        catalogue = _catalogue(current["products"], index)
        registered = current["users"].select("user_id").toPandas()["user_id"].sort_values().to_numpy()
        lists = publish_lists(model, index, data, registered, owned.select("user_id", "item_id"), catalogue, settings)
        similar = similar_items(
            model.item_factors, settings.publishing.similar_n, allowed=catalogue["active"].to_numpy()
        )
        outputs = {
            "mart_recommendations": lists.assign(snapshot_date=as_of, model_version=version, loaded_at=loaded_at),
            "mart_similar_items": pd.DataFrame(
                {
                    "snapshot_date": as_of,
                    "product_id": catalogue["product_id"].to_numpy()[similar["i"].to_numpy()],
                    "rank": similar["rank"].to_numpy().astype(int),
                    "similar_product_id": catalogue["product_id"].to_numpy()[similar["similar_i"].to_numpy()],
                    "similarity": similar["similarity"].to_numpy().astype(float),
                    "model_version": version,
                    "loaded_at": loaded_at,
                }
            ),
        }
        artefacts = {
            "user_factors": pa.table({"user_id": index.user_ids(), "factors": list(model.user_factors)}),
            "item_factors": pa.table({"product_id": index.item_ids(), "factors": list(model.item_factors)}),
            "interactions": to_arrow(all_pairs.select("user_id", "item_id", "weight", "last_day")),
            # the published outputs, so promote/rollback can put exactly these back
            **{
                name: pa.Table.from_pandas(frame.drop(columns=["loaded_at"]), preserve_index=False)
                for name, frame in outputs.items()
            },
        }
    else:
        artefacts = {}
    meta = {
        "snapshot_date": as_of.isoformat(),
        "params": result.best.model_dump(),
        "metrics": result.report["models"],
        "tuning_trials": result.report["tuning_trials"],
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
        [evaluation, *(snapshot(name, frame_to_arrow(frame)) for name, frame in outputs.items())],
        counts={"input": result.report["train"]["interactions"], "output": len(outputs.get("mart_recommendations", ()))},
        details={"version": version, "gate": reason, "params": result.best.model_dump()},
        status="success" if passed else "failed",
    )  # fmt: skip
    signals.unpersist(), owned.unpersist()
    if not passed:
        raise ModelGateError(
            f"{as_of}: model {version} not published: {reason}; the previous recommendations stay live"
        )
    registry.promote(version, reason=f"nightly gate passed: {reason}")
    return {
        "snapshot_date": as_of.isoformat(),
        "version": version,
        "gate": reason,
        "params": result.best.model_dump(),
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
    missing = [name for name in PUBLISHED if name not in meta.get("artefacts", [])]
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
        for name in PUBLISHED
    ]
    restored = outputs[0].rows
    counts = publish(
        config, day, "recommender_republish", "recommendations", outputs,
        counts={"input": restored, "output": restored}, details={"version": version},
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
