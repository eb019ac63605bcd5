"""Top-K recommendation metrics, vectorised over long frames (no per-user Python loops).

``recs``: one row per recommended item, ``user_id, rank, item_id`` (rank 1 = best; only ranks
<= k count). ``truth``: the held-out relevant items, ``user_id, item_id``. Every user in
``truth`` is evaluated; one with no recommendations scores 0 on the accuracy metrics.

Definitions (binary relevance):

- precision@k  hits in the top k / k
- recall@k     hits in the top k / relevant items
- nDCG@k       sum(1 / log2(rank + 1)) over hits / the same for an ideal list of
               min(relevant, k) hits
- MAP@k        mean over users of AP@k = sum over hit ranks r of precision@r / min(relevant, k)
- hit rate@k   share of users with at least one hit
- coverage     distinct items recommended to the evaluated users / catalogue size
- diversity    intra-list diversity: share of item pairs in a user's list from different
               categories, averaged over users with at least two items
- novelty      mean self-information -log2(p) of recommended items, p = share of training
               users who interacted with the item (unseen items count as 1 user)
- popularity   mean p of recommended items (average recommendation popularity); lower means
               less popularity bias
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate")


def _top_k(recs: pd.DataFrame, k: int) -> pd.DataFrame:
    return recs.loc[recs["rank"] <= k, ["user_id", "rank", "item_id"]]


def _hits(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """Top-k rows that are relevant: ``user_id, rank``."""
    relevant = truth[["user_id", "item_id"]].drop_duplicates()
    return _top_k(recs, k).merge(relevant, on=["user_id", "item_id"])[["user_id", "rank"]]


def _relevant_counts(truth: pd.DataFrame) -> pd.Series:
    return truth[["user_id", "item_id"]].drop_duplicates().groupby("user_id").size()


def precision_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.Series:
    users = _relevant_counts(truth).index
    hits = _hits(recs, truth, k).groupby("user_id").size()
    return (hits.reindex(users, fill_value=0) / k).rename("precision")


def recall_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.Series:
    relevant = _relevant_counts(truth)
    hits = _hits(recs, truth, k).groupby("user_id").size().reindex(relevant.index, fill_value=0)
    return (hits / relevant).rename("recall")


def _ideal_dcg(counts: pd.Series, k: int) -> pd.Series:
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    return pd.Series(discounts[np.minimum(counts.to_numpy(), k) - 1], index=counts.index)


def ndcg_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.Series:
    relevant = _relevant_counts(truth)
    hits = _hits(recs, truth, k)
    dcg = (1.0 / np.log2(hits["rank"] + 1)).groupby(hits["user_id"]).sum()
    return (dcg.reindex(relevant.index, fill_value=0.0) / _ideal_dcg(relevant, k)).rename("ndcg")


def average_precision_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.Series:
    relevant = _relevant_counts(truth)
    hits = _hits(recs, truth, k).sort_values(["user_id", "rank"])
    # precision at the rank of the n-th hit = n / rank
    nth = hits.groupby("user_id").cumcount() + 1
    summed = (nth / hits["rank"]).groupby(hits["user_id"]).sum()
    return (summed.reindex(relevant.index, fill_value=0.0) / np.minimum(relevant, k)).rename("map")


def hit_rate_at_k(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.Series:
    relevant = _relevant_counts(truth)
    hit_users = _hits(recs, truth, k)["user_id"].unique()
    return pd.Series(relevant.index.isin(hit_users).astype(float), index=relevant.index, name="hit_rate")


def per_user_accuracy(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per evaluated user with every accuracy metric."""
    return pd.concat(
        [
            precision_at_k(recs, truth, k),
            recall_at_k(recs, truth, k),
            ndcg_at_k(recs, truth, k),
            average_precision_at_k(recs, truth, k),
            hit_rate_at_k(recs, truth, k),
        ],
        axis=1,
    )


def catalogue_coverage(recs: pd.DataFrame, catalogue_size: int, k: int) -> float:
    return float(_top_k(recs, k)["item_id"].nunique() / catalogue_size) if catalogue_size else 0.0


def intra_list_diversity(recs: pd.DataFrame, categories: pd.Series, k: int) -> float:
    """``categories``: item_id -> category. Share of different-category pairs per list."""
    top = _top_k(recs, k)
    top = top.assign(category=top["item_id"].map(categories).fillna("(unknown)").to_numpy())
    per_user = top.groupby(["user_id", "category"]).size().rename("n").reset_index()
    sizes = per_user.groupby("user_id")["n"].sum()
    same = (per_user["n"] * (per_user["n"] - 1) / 2).groupby(per_user["user_id"]).sum()
    pairs = sizes * (sizes - 1) / 2
    valid = pairs > 0
    if not valid.any():
        return 0.0
    return float((1 - same[valid] / pairs[valid]).mean())


def item_popularity(train: pd.DataFrame) -> pd.Series:
    """item_id -> share of training users who interacted with it."""
    users = train["user_id"].nunique()
    return train[["user_id", "item_id"]].drop_duplicates().groupby("item_id").size() / max(users, 1)


def novelty(recs: pd.DataFrame, popularity: pd.Series, n_train_users: int, k: int) -> float:
    top = _top_k(recs, k)
    if top.empty:
        return 0.0
    floor = 1.0 / max(n_train_users, 1)
    p = top["item_id"].map(popularity).fillna(floor).clip(lower=floor)
    return float((-np.log2(p)).mean())


def popularity_bias(recs: pd.DataFrame, popularity: pd.Series, k: int) -> float:
    top = _top_k(recs, k)
    return float(top["item_id"].map(popularity).fillna(0.0).mean()) if len(top) else 0.0


def evaluate(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    train: pd.DataFrame,
    k: int,
    catalogue_size: int,
    categories: pd.Series | None = None,
    groups: dict[str, pd.Series] | None = None,
) -> list[dict]:
    """All metrics; rows ``{group, metric, value, users}`` for ``all`` and, for the accuracy
    metrics, each user group: ``groups`` maps a breakdown name to ``user_id -> value``, and
    the group is called ``name=value`` (e.g. ``lifecycle=at_risk``)."""
    users = truth["user_id"].unique()
    scored = recs[recs["user_id"].isin(users)]
    accuracy = per_user_accuracy(scored, truth, k)
    rows = [
        {"group": "all", "metric": f"{name}@{k}", "value": float(accuracy[name].mean()), "users": len(accuracy)}
        for name in ACCURACY
    ]
    popularity = item_popularity(train)
    n_train_users = train["user_id"].nunique()
    beyond = {
        "coverage": catalogue_coverage(scored, catalogue_size, k),
        "novelty": novelty(scored, popularity, n_train_users, k),
        "popularity_bias": popularity_bias(scored, popularity, k),
    }
    if categories is not None:
        beyond["diversity"] = intra_list_diversity(scored, categories, k)
    rows += [
        {"group": "all", "metric": f"{name}@{k}", "value": value, "users": len(accuracy)}
        for name, value in beyond.items()
    ]
    for breakdown, labels in (groups or {}).items():
        labelled = accuracy.assign(group=accuracy.index.map(labels).fillna("(unknown)"))
        for group, part in labelled.groupby("group"):
            rows += [
                {
                    "group": f"{breakdown}={group}",
                    "metric": f"{name}@{k}",
                    "value": float(part[name].mean()),
                    "users": len(part),
                }
                for name in ACCURACY
            ]
    return rows


def paired_bootstrap(
    difference: np.ndarray, samples: int = 1000, confidence: float = 0.90, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-user metric differences (model A minus model B, same users) and its
    percentile bootstrap interval at ``confidence`` (two-sided): users are resampled with
    replacement ``samples`` times. ``(mean, low, high)``; an empty input gives zeros."""
    difference = np.asarray(difference, dtype=np.float64)
    if not len(difference):
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 100):  # 100 resamples at a time bounds the memory
        stop = min(samples, start + 100)
        draws = rng.integers(0, len(difference), size=(stop - start, len(difference)))
        means[start:stop] = difference[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(difference.mean()), float(low), float(high)
