"""``marketing evaluate-recommender``: the recommender competition (tuned implicit ALS, EASE,
item-kNN and recent popularity) on any interaction data, reproducibly.

Input: CSV or Parquet with ``user_id, item_id`` and optional ``timestamp`` and ``weight``
(default 1). Either one file split here (``--protocol temporal``: the latest ``--test-ratio``
of interactions by time, and only products new to the user are relevant; ``random-per-user``:
that share of each user's items, by a seeded hash) or ``--train``/``--test`` files. The
competition sees the training side only: it cuts a validation split from it with the same
protocol, tries every model's values (``config/recommender.yaml``: ALS's search space and
``competition``'s grids) for the best nDCG@k, and the model best on validation is the one
chosen. Each model's best values are then refit on the whole training side. Every model
recommends ``k`` items per test user who has training data, training items excluded; relevant
items are the user's test items not in training. The chosen model is compared with the
strongest cheap baseline (recent popularity or item-kNN) on the same test users: the mean
per-user nDCG difference and its paired bootstrap interval.

Writes to ``--out-dir``: ``metrics.json`` (every model, every metric, the split, the chosen
model, each model's parameters, the comparison and all tuning trials), ``recommendations.csv``
(the chosen model's ``user_id, rank, item_id, score``) and, when it made the split,
``train.csv`` and ``test.csv``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.errors import ConfigError, InputFileError
from jobs.platform.files import read_table, timestamp_column
from jobs.recommender.interactions import (
    IdIndex,
    held_out,
    pairs,
    random_split,
    temporal_split,
    time_cutoff,
)
from jobs.recommender.settings import RecommenderConfig, load_recommender
from models import rec_metrics
from models.recommenders import (
    AlsRecommender,
    EaseRecommender,
    ItemKnnRecommender,
    PopularityRecommender,
    candidate_params,
    recommend,
    tune,
)

PROTOCOLS = ("random-per-user", "temporal")


def read_interactions(spark, path: Path, role: str) -> DataFrame:
    """``user_id, item_id, ts, weight`` from a file; one-line errors for bad values."""
    frame = read_table(spark, path, role, ("user_id", "item_id"))
    columns = set(frame.columns)
    typed = frame.select(
        F.col("user_id").cast("string").alias("user_id"),
        F.col("item_id").cast("string").alias("item_id"),
        (timestamp_column(F.col("timestamp")) if "timestamp" in columns else F.lit(None).cast("timestamp")).alias("ts"),
        (F.col("weight").cast("string").try_cast("double") if "weight" in columns else F.lit(1.0)).alias("weight"),
        *[F.col(c).cast("string").alias(f"raw_{c}") for c in ("timestamp", "weight") if c in columns],
    ).cache()
    checks = [("user_id", "user_id", F.col("user_id").isNull() | (F.trim("user_id") == ""), "empty")]
    checks.append(("item_id", "item_id", F.col("item_id").isNull() | (F.trim("item_id") == ""), "empty"))
    if "timestamp" in columns:
        checks.append(
            (
                "timestamp",
                "raw_timestamp",
                F.col("ts").isNull(),
                "not a timestamp (ISO-8601, or Unix epoch seconds or milliseconds)",
            )
        )
    if "weight" in columns:
        checks.append(("weight", "raw_weight", F.col("weight").isNull() | (F.col("weight") < 0), "not a number >= 0"))
    bad = typed.agg(*[F.count(F.when(test, 1)).alias(name) for name, _, test, _ in checks]).first()
    for name, raw, test, what in checks:
        if bad[name]:
            example = typed.where(test).select(raw).first()[0]
            raise InputFileError(
                f"{role} file {path}: column {name} has {bad[name]} value(s) {what} (e.g. {example!r})"
            )
    if typed.limit(1).count() == 0:
        raise InputFileError(f"{role} file {path} has no rows")
    return typed.select("user_id", "item_id", "ts", "weight")


def _split(signals: DataFrame, protocol: str, ratio: float, seed: int, role: str) -> tuple[DataFrame, DataFrame]:
    """(train, test) signals by protocol; temporal needs timestamps."""
    if protocol == "temporal":
        if signals.where(F.col("ts").isNull()).limit(1).count():
            raise InputFileError(
                f"--protocol temporal needs a timestamp for every interaction ({role} has rows without one)"
            )
        return temporal_split(signals, time_cutoff(signals, ratio))
    train, test = random_split(pairs(signals, None, None, None), ratio, seed)
    return train.drop("last_day"), test.drop("last_day")  # one signal per pair, with its last ts


def _pairs(signals: DataFrame) -> DataFrame:
    return pairs(signals, None, None, None)


def _named(recs: pd.DataFrame, index: IdIndex) -> pd.DataFrame:
    users, items = index.user_ids(), index.item_ids()
    return pd.DataFrame(
        {
            "user_id": users[recs["u"].to_numpy()],
            "rank": recs["rank"].to_numpy(),
            "item_id": items[recs["i"].to_numpy()],
            "score": recs["score"].to_numpy(),
        }
    )


CHEAP = ("popularity", "item_knn")  # the baselines a learned model has to beat on evidence


def competition_plan(settings: RecommenderConfig) -> list[tuple[str, dict]]:
    """Every ``(model, params)`` the validation split tries: ALS's tuning trials (the default
    first), then each value of ``competition``'s grids for the other models."""
    from itertools import product

    c = settings.competition
    plan: list[tuple[str, dict]] = []
    if "als" in c.models:
        plan += [("als", params.model_dump()) for params in candidate_params(settings.tuning)]
    if "ease" in c.models:
        plan += [("ease", {"l2": float(l2)}) for l2 in c.ease_l2]
    if "item_knn" in c.models:
        plan += [("item_knn", {"neighbours": n}) for n in c.knn_neighbours]
    plan += [
        ("popularity", {"days": days, "half_life_days": half_life})
        for days, half_life in product(c.popularity_days, c.popularity_half_life_days)
    ]
    return plan


def model_maker(settings: RecommenderConfig, seed: int):
    """``make(model, params) -> recommender`` for :func:`models.recommenders.tune`."""
    from jobs.recommender.settings import AlsParams

    def make(name: str, params: dict):
        if name == "als":
            return AlsRecommender(AlsParams.model_validate(params), seed)
        if name == "ease":
            return EaseRecommender(params["l2"], settings.competition.ease_max_items)
        if name == "item_knn":
            return ItemKnnRecommender(params["neighbours"])
        if name == "popularity":
            return PopularityRecommender(params["days"], params["half_life_days"])
        raise ConfigError(f"unknown model {name!r}")

    return make


@dataclass
class Evaluation:
    """What :func:`tune_and_evaluate` learnt: the report, each model's best parameters and the
    validation winner, the evaluated models, their index and training data, each model's
    per-user nDCG@k on the test users and its test recommendations."""

    report: dict
    params: dict[str, dict]
    chosen: str
    models: dict
    index: IdIndex
    data: object
    per_user: dict[str, pd.Series]
    recs: dict[str, pd.DataFrame]

    @property
    def best(self):
        """ALS's best parameters (the live tuning's state), or None when ALS did not run."""
        from jobs.recommender.settings import AlsParams

        return AlsParams.model_validate(self.params["als"]) if "als" in self.params else None


def compare(per_user: dict[str, pd.Series], model: str, baseline: str, settings: RecommenderConfig) -> dict:
    """``model`` against ``baseline`` on the same users: mean per-user nDCG difference and its
    paired bootstrap interval (``gate.confidence``)."""
    gate = settings.gate
    a, b = per_user[model].align(per_user[baseline], fill_value=0.0)
    mean, low, high = rec_metrics.paired_bootstrap(
        (a - b).to_numpy(), gate.bootstrap_samples, gate.confidence, settings.tuning.seed
    )
    return {
        "model": model, "baseline": baseline, "users": len(a), "difference": round(mean, 6),
        "low": round(low, 6), "high": round(high, 6), "confidence": gate.confidence,
    }  # fmt: skip


def tune_and_evaluate(
    fit_pairs: DataFrame,
    valid_pairs: DataFrame,
    train_pairs: DataFrame,
    test_pairs: DataFrame,
    settings: RecommenderConfig,
    k: int,
    seed: int,
    min_relevant_weight: float = 0.0,
    groups=None,
    categories: pd.Series | None = None,
    owned: tuple[DataFrame, DataFrame] | None = None,
) -> Evaluation:
    """The competition: every model of :func:`competition_plan` is fitted on ``fit_pairs``
    and measured on ``valid_pairs``; each model's best parameters are refitted on
    ``train_pairs`` and measured on ``test_pairs``. The best model on validation is the
    candidate (``chosen``); the test set only measures. Relevant: held-out pairs of at least
    ``min_relevant_weight`` that the user did not have yet, and lists never contain those,
    where "had" means any training pair, or, with ``owned`` (pairs ``user_id, item_id`` owned
    by the validation and by the test cutoff), only what the user owns: the published lists'
    rule, under which a viewed product may still be recommended. ``groups(index, data) ->
    {breakdown: u -> label}``; ``categories``: item_id -> category."""
    started = time.monotonic()
    owned_fit, owned_train = owned or (fit_pairs, train_pairs)
    make = model_maker(settings, seed)
    fit_index = IdIndex(fit_pairs)
    fit_data = fit_index.interactions(fit_pairs)
    validation = fit_index.indexed(held_out(owned_fit, valid_pairs, min_relevant_weight)).select("u", "i").toPandas()
    tuned = tune(
        fit_data, validation, k, competition_plan(settings), make, fit_index.mask(owned_fit) if owned else None
    )
    fit_data.frame.unpersist()

    index = IdIndex(train_pairs)
    data = index.interactions(train_pairs)
    exclude = index.mask(owned_train) if owned else None
    truth_frame = held_out(owned_train, test_pairs, min_relevant_weight)
    truth_all = truth_frame.join(index.users, "user_id").select("u", "item_id").toPandas()
    users = np.sort(truth_all["u"].unique())
    item_of = pd.Series(np.arange(index.n_items), index=index.item_ids())
    # relevant items unknown to training can never be recommended, but still count as missed
    truth_all["i"] = truth_all["item_id"].map(item_of).fillna(-1).astype(int)
    truth_eval = truth_all[["u", "i"]].rename(columns={"u": "user_id", "i": "item_id"})
    seen = data.to_csr().tocoo()  # already on the driver for the seen mask: no second Spark read
    train_eval = pd.DataFrame({"user_id": seen.row, "item_id": seen.col})
    item_categories = None
    if categories is not None:
        item_categories = pd.Series(index.item_ids()).map(categories)
    by_group = groups(index, data) if groups else None
    models, results, per_user, all_recs = {}, {}, {}, {}
    for name, params in tuned.best.items():
        fit_started = time.monotonic()
        model = make(name, params).fit(data)
        fit_s = time.monotonic() - fit_started
        recs = recommend(model, users, data, k, exclude).rename(columns={"u": "user_id", "i": "item_id"})
        rows = rec_metrics.evaluate(
            recs, truth_eval, train_eval, k, index.n_items, categories=item_categories, groups=by_group
        )
        models[name], all_recs[name] = model, recs.rename(columns={"user_id": "u", "item_id": "i"})
        per_user[name] = rec_metrics.ndcg_at_k(recs, truth_eval, k)
        results[name] = {
            "params": params,
            "fit_seconds": round(fit_s, 2),
            "metrics": {r["metric"]: round(r["value"], 6) for r in rows if r["group"] == "all"},
            "by_group": [r for r in rows if r["group"] != "all"],
        }
    metric = f"ndcg@{k}"
    cheap = [name for name in CHEAP if name in results]
    baseline = max(cheap, key=lambda name: results[name]["metrics"][metric])
    report = {
        "k": k,
        "excluded": "owned items" if owned else "training items",
        "train": {"interactions": len(train_eval), "users": index.n_users, "items": index.n_items},
        "test": {"users_evaluated": len(users), "relevant_items": len(truth_eval)},
        "chosen": tuned.winner,
        "validation": {name: max(t[metric] for t in tuned.trials if t["model"] == name and metric in t)
                       for name in tuned.best},
        "versus_baseline": compare(per_user, tuned.winner, baseline, settings) if tuned.winner != baseline else None,
        "als_params": tuned.best.get("als"),
        "tuning_trials": tuned.trials,
        "models": results,
        "seconds": round(time.monotonic() - started, 1),
    }  # fmt: skip
    return Evaluation(report, tuned.best, tuned.winner, models, index, data, per_user, all_recs)


def _history_groups(index: IdIndex, data) -> dict[str, pd.Series]:
    csr = data.to_csr()
    history = pd.Series(np.diff(csr.indptr))[lambda n: n > 0]
    return {"history": pd.Series(np.where(history < 5, "light (<5 items)", "regular (5+ items)"), index=history.index)}


def evaluate_models(
    train_signals: DataFrame,
    test_signals: DataFrame,
    protocol: str,
    ratio: float,
    seed: int,
    k: int,
    settings: RecommenderConfig,
) -> tuple[dict, pd.DataFrame]:
    """Tune on the training side, fit every model, score the test users; (report, the chosen model's recs)."""
    fit_signals, valid_signals = _split(train_signals, protocol, ratio, seed, "the training data")
    result = tune_and_evaluate(
        _pairs(fit_signals), _pairs(valid_signals), _pairs(train_signals), _pairs(test_signals), settings, k, seed,
        groups=_history_groups,
    )  # fmt: skip
    report = {"protocol": protocol, "test_ratio": ratio, "seed": seed, **result.report}
    if protocol == "temporal":
        report["buy_again"] = buy_again_report(fit_signals, valid_signals, train_signals, test_signals, settings, k)
    return report, _named(result.recs[result.chosen], result.index)


def _after_the_cut(before: DataFrame, after: DataFrame) -> tuple[DataFrame, date, date]:
    """(days, cutoff, end): ``user_id, item_id, day`` of both sides, where a later row on the
    cut's own day counts the day after, so nothing after the cut is history."""
    history = before.select("user_id", "item_id", F.to_date("ts").alias("day"))
    cutoff = history.agg(F.max("day")).first()[0]
    later = after.select("user_id", "item_id", F.greatest(F.to_date("ts"), F.date_add(F.lit(cutoff), 1)).alias("day"))
    return history.unionByName(later), cutoff, later.agg(F.max("day")).first()[0]


def buy_again_report(
    fit_signals: DataFrame,
    valid_signals: DataFrame,
    train_signals: DataFrame,
    test_signals: DataFrame,
    settings: RecommenderConfig,
    k: int,
) -> dict:
    """The buy-again list on a temporal split: every method of ``buy_again`` measured on the
    validation side's repeat purchases (what the user interacted with before and again after
    the cut), the best then against the ``most_bought`` baseline on the test side's, with the
    paired bootstrap interval of per-user nDCG differences."""
    from models import buy_again

    ba, gate = settings.buy_again, settings.gate
    candidates = ba.candidates()
    days, cutoff, end = _after_the_cut(fit_signals, valid_signals)
    validation = buy_again.evaluate(days, cutoff, end, candidates, k, ba.horizon_days)
    chosen = buy_again.best(validation, candidates, k)
    days, cutoff, end = _after_the_cut(train_signals, test_signals)
    test = buy_again.evaluate(days, cutoff, end, [candidates[0], chosen], k, ba.horizon_days)
    a, b = test.per_user[chosen.name].align(test.per_user[candidates[0].name], fill_value=0.0)
    mean, low, high = rec_metrics.paired_bootstrap(
        (a - b).to_numpy(), gate.bootstrap_samples, gate.confidence, settings.tuning.seed
    )
    return {
        "method": chosen.name,
        "validation": {name: m[f"ndcg@{k}"] for name, m in validation.metrics.items()},
        "test": {"users_evaluated": test.users, "cutoff": cutoff.isoformat(), "end": end.isoformat()},
        "models": {"buy_again": test.metrics[chosen.name], "most_bought": test.metrics[candidates[0].name]},
        "versus_baseline": {"users": len(a), "difference": round(mean, 6), "low": round(low, 6),
                            "high": round(high, 6), "confidence": gate.confidence},
    }  # fmt: skip


def evaluate_recommender(
    config,
    out_dir: str,
    interactions: str | None = None,
    train: str | None = None,
    test: str | None = None,
    protocol: str = "random-per-user",
    test_ratio: float = 0.25,
    seed: int = 42,
    k: int = 10,
) -> dict:
    from jobs.platform.spark import get_spark

    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    if not 0 < test_ratio < 1:
        raise ConfigError("--test-ratio must be between 0 and 1")
    if bool(interactions) == bool(train or test) or bool(train) != bool(test):
        raise ConfigError("give either --interactions FILE, or both --train FILE and --test FILE")
    settings = load_recommender(config.recommender.config_file)
    spark = get_spark(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if interactions:
        signals = read_interactions(spark, Path(interactions), "--interactions").persist()
        train_signals, test_signals = _split(signals, protocol, test_ratio, seed, "--interactions")
        for name, part in (("train", train_signals), ("test", test_signals)):
            part.select("user_id", "item_id", F.col("ts").alias("timestamp"), "weight").toPandas().to_csv(
                out / f"{name}.csv", index=False
            )
    else:
        train_signals = read_interactions(spark, Path(train), "--train")
        test_signals = read_interactions(spark, Path(test), "--test")
    report, recs = evaluate_models(train_signals, test_signals, protocol, test_ratio, seed, k, settings)
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    recs.to_csv(out / "recommendations.csv", index=False)
    summary = {
        name: {m: v for m, v in r["metrics"].items() if m.startswith(("ndcg", "recall", "precision"))}
        for name, r in report["models"].items()
    }
    return {
        "out_dir": str(out),
        "chosen": report["chosen"],
        "versus_baseline": report["versus_baseline"],
        "params": {name: r["params"] for name, r in report["models"].items()},
        **({"buy_again": report["buy_again"]} if "buy_again" in report else {}),
        "metrics": summary,
    }
