"""Benchmark (not a test): the recommender's ALS (Spark MLlib) beside what a team would pick
instead on one machine, the ``implicit`` library's ALS, in the same run on the same data.

    .venv/bin/python benchmarks/bench_peers.py [--interactions 1000000] [--out FILE]

Synthetic interactions (``bench_recommender.synthetic``: users in taste clusters, Zipf item
popularity) are summed per user and item; 20 % of each user's items (users with at least 5)
are held out with a seeded shuffle. Both libraries train on the same pairs with the configured
default parameters (rank, iterations, regularisation, alpha; ratings ``log1p(weight)``, so
confidence is ``1 + alpha x log1p(weight)`` in both) and recommend 10 unseen items to every
held-out user; nDCG@10 is computed by the project's ``rec_metrics`` for both. Spark's
regularisation is scaled by each user's and item's number of ratings (ALS-WR), implicit's is
not: the same nominal parameters are not the same model, which is why quality is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recommender import synthetic  # noqa: E402

K = 10


def split(pairs: pd.DataFrame, share: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``share`` of each user's items (users with at least 5)."""
    rng = np.random.default_rng(seed)
    pairs = pairs.assign(r=rng.random(len(pairs)))
    pairs["n"] = pairs.groupby("user_id")["item_id"].transform("size")
    pairs["order"] = pairs.groupby("user_id")["r"].rank(method="first")
    test = (pairs["n"] >= 5) & (pairs["order"] <= np.ceil(pairs["n"] * share))
    columns = ["user_id", "item_id", "weight"]
    return pairs.loc[~test, columns].reset_index(drop=True), pairs.loc[test, columns].reset_index(drop=True)


def ndcg(recs: pd.DataFrame, test: pd.DataFrame) -> float:
    from models.rec_metrics import ndcg_at_k

    return round(float(ndcg_at_k(recs, test[["user_id", "item_id"]], K).mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    from implicit.als import AlternatingLeastSquares
    from pyspark.sql import functions as F
    from threadpoolctl import threadpool_limits

    from jobs.platform.config import load_config
    from jobs.platform.spark import get_spark
    from jobs.recommender.interactions import IdIndex
    from jobs.recommender.settings import load_recommender
    from models.recommenders import AlsRecommender, recommend

    params = load_recommender().tuning.default
    raw = synthetic(args.interactions)
    pairs = raw.groupby(["user_id", "item_id"], as_index=False)["weight"].sum()
    train, test = split(pairs)
    results: dict = {
        "data": {
            "interactions": args.interactions,
            "train_pairs": len(train),
            "test_pairs": len(test),
            "test_users": int(test["user_id"].nunique()),
            "params": params.model_dump(),
            "cpus": os.cpu_count(),
        }
    }

    spark = get_spark(load_config(environ={}))
    frame = spark.createDataFrame(train.assign(last_day=None).astype({"last_day": "object"}))
    frame = frame.withColumn("last_day", F.col("last_day").cast("date"))
    index = IdIndex(frame)
    data = index.interactions(frame)
    data.frame.count()
    started = time.perf_counter()
    model = AlsRecommender(params, seed=0).fit(data)
    spark_train = time.perf_counter() - started
    users = index.users.toPandas().set_index("user_id")["u"]
    wanted = users.reindex(test["user_id"].unique()).dropna().astype(int).to_numpy()
    started = time.perf_counter()
    recs = recommend(model, np.sort(wanted), data, K)
    spark_score = time.perf_counter() - started
    user_ids, item_ids = index.user_ids(), index.item_ids()
    recs = pd.DataFrame({"user_id": user_ids[recs["u"]], "item_id": item_ids[recs["i"]], "rank": recs["rank"]})
    results["spark_als"] = {
        "train_s": round(spark_train, 1),
        "score_s": round(spark_score, 1),
        "ndcg@10": ndcg(recs, test),
    }

    # implicit: the same pairs as a users x items matrix of ratings log1p(weight)
    user_codes, user_of = pd.factorize(train["user_id"])
    item_codes, item_of = pd.factorize(train["item_id"])
    ratings = sp.csr_matrix(
        (np.log1p(train["weight"].to_numpy()).astype(np.float32), (user_codes, item_codes)),
        shape=(len(user_of), len(item_of)),
    )
    peer = AlternatingLeastSquares(
        factors=params.rank, regularization=params.reg_param, alpha=params.alpha, iterations=params.max_iter,
        random_state=0, calculate_training_loss=False,
    )  # fmt: skip
    rows = pd.Index(user_of).get_indexer(test["user_id"].unique())
    rows = np.sort(rows[rows >= 0])
    with threadpool_limits(1, "blas"):  # implicit runs its own threads; BLAS threads would fight them
        started = time.perf_counter()
        peer.fit(ratings, show_progress=False)
        implicit_train = time.perf_counter() - started
        started = time.perf_counter()
        ids, _ = peer.recommend(rows, ratings[rows], N=K, filter_already_liked_items=True)
        implicit_score = time.perf_counter() - started
    recs = pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(user_of)[rows], K),
            "item_id": np.asarray(item_of)[ids.ravel()],
            "rank": np.tile(np.arange(1, K + 1), len(rows)),
        }
    )
    results["implicit_als"] = {
        "train_s": round(implicit_train, 1),
        "score_s": round(implicit_score, 1),
        "ndcg@10": ndcg(recs, test),
        "version": __import__("implicit").__version__,
    }
    results["spark_over_implicit"] = {
        "train_time": round(spark_train / max(implicit_train, 1e-9), 1),
        "ndcg@10": round(results["spark_als"]["ndcg@10"] / max(results["implicit_als"]["ndcg@10"], 1e-9), 2),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
