"""The nightly recommender on a simulated shop, without the pipeline: how much better than
its baselines it is, and whether it finds the tastes the simulator planted.

:func:`study` simulates a shop (:mod:`jobs.simulator`), takes what the cleaned warehouse would
hold of it (:func:`jobs.simulator.published_view`), builds the interaction signals and the
owned items exactly as the nightly stage does and runs the nightly evaluation
(:func:`jobs.recommender.stage.evaluate_holdout`). Used by ``benchmarks/bench_recommender_quality.py``
and by the test that holds ALS to at least twice popularity's nDCG.
"""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pandas as pd

from jobs.platform.errors import ConfigError
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.recommender.settings import RecommenderConfig
from jobs.simulator import SimulationSpec, World, generate, published_view


def spark_tables(spark, world: World) -> dict:
    """The published view of ``world`` as Spark frames."""
    view = published_view(world)
    view["products"] = view["products"][["product_id", "category_l1", "is_active"]]
    return {name: spark.createDataFrame(frame) for name, frame in view.items()}


def planted_recovery(world: World, evaluation, k: int = 10) -> dict:
    """Share of ALS's top-k (training items excluded) that have the user's planted favourite
    taste, for every trained user, against the share of the catalogue that has it (what
    a random list would score)."""
    from models.recommenders import recommend

    truth = world.truth["users"].set_index("user_id")["top_taste"]
    taste = world.truth["products"].set_index("product_id")["taste"]
    index, data = evaluation.index, evaluation.data
    recs = recommend(evaluation.models["als"], np.arange(index.n_users), data, k)
    user_ids, item_ids = index.user_ids(), index.item_ids()
    wanted = truth.reindex(user_ids[recs["u"].to_numpy()]).to_numpy()
    hits = taste.reindex(item_ids[recs["i"].to_numpy()]).to_numpy() == wanted
    share = taste.reindex(item_ids).value_counts(normalize=True)
    chance = share.reindex(truth.reindex(user_ids).to_numpy()).to_numpy().mean()
    return {f"als_top{k}_in_top_taste": round(float(hits.mean()), 4), "chance": round(float(chance), 4)}


def study(config, spec: SimulationSpec, settings: RecommenderConfig) -> tuple[dict, object]:
    """(summary, evaluation) of the nightly evaluation on the last simulated day."""
    from jobs.platform.daily import user_item_days
    from jobs.platform.spark import get_spark
    from jobs.recommender.stage import evaluate_holdout, owned_items, signals_up_to

    started = time.monotonic()
    world = generate(spec)
    as_of = spec.start_date + timedelta(days=spec.days - 1)
    tables = spark_tables(get_spark(config), world)
    signals = signals_up_to(tables, user_item_days(tables["events"]), settings, as_of).persist()
    statuses = PURCHASE_STATUSES
    owned = owned_items(tables, statuses, settings).persist()
    categories = world.products.set_index("product_id")["category_l1"]
    evaluation = evaluate_holdout(signals, as_of, settings, categories=categories, owned=owned)
    if isinstance(evaluation, str):
        raise ConfigError(f"the simulated shop is too small to evaluate: {evaluation}")
    report, k = evaluation.report, settings.evaluation.k
    metrics = pd.DataFrame({name: entry["metrics"] for name, entry in report["models"].items()})
    ndcg = metrics.loc[f"ndcg@{k}"]
    summary = {
        "simulation": {"days": spec.days, "users": spec.users, "products": spec.products, "seed": spec.seed},
        "as_of": as_of.isoformat(),
        "train": report["train"],
        "test": report["test"],
        "excluded": report["excluded"],
        "chosen": report["chosen"],
        "versus_baseline": report["versus_baseline"],
        "als_params": report["als_params"],
        "tuning_trials": len(report["tuning_trials"]),
        "metrics": metrics.to_dict(),
        "als_over_popularity": round(float(ndcg["als"] / ndcg["popularity"]), 3),
        "als_over_item_knn": round(float(ndcg["als"] / ndcg["item_knn"]), 3),
        "planted": planted_recovery(world, evaluation, k),
        "seconds": round(time.monotonic() - started, 1),
    }
    signals.unpersist(), owned.unpersist()
    return summary, evaluation
