"""Benchmark (not a test): implicit ALS training and top-N scoring at scale.

    .venv/bin/python benchmarks/bench_recommender.py [--interactions 1000000] [--rank 32] [--out FILE]

Synthetic interactions (users in taste clusters, Zipf item popularity, about 20 per user)
are written to Parquet and read by Spark, so training never sees driver-side interaction
data; ALS is fitted with the configured default parameters (``--rank`` overrides), then every
user gets a top-20 list (seen items excluded, blockwise scoring). Reports wall time per step
and peak resident memory of the process tree (Python driver + Spark JVM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.platform.ops import PeakMemory


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users, items, clusters = max(n // 20, 10), max(n // 100, 50), 20
    user = rng.integers(0, users, n)
    cluster_items = items // clusters
    own = (user % clusters) * cluster_items + (rng.zipf(1.3, n) - 1) % cluster_items
    popular = (rng.zipf(1.2, n) - 1) % items
    item = np.where(rng.random(n) < 0.7, own, popular)
    return pd.DataFrame({"user_id": user, "item_id": item, "weight": rng.integers(1, 6, n).astype(float)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--rank", type=int)
    parser.add_argument("--top-n", type=int, default=20)
    parser.add_argument("--driver", action="store_true", help="also score on the driver, as before")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from jobs.platform.config import load_config
    from jobs.platform.spark import get_spark
    from jobs.recommender.interactions import IdIndex
    from jobs.recommender.settings import load_recommender
    from models.recommenders import AlsRecommender, recommend, top_n_spark

    root = Path(tempfile.mkdtemp(prefix="mkt-bench-rec-"))
    memory = PeakMemory()
    results: dict = {}
    frame = synthetic(args.interactions)
    frame.to_parquet(root / "interactions.parquet", index=False)
    del frame
    spark = get_spark(load_config(environ={}))
    params = load_recommender().tuning.default
    if args.rank:
        params = params.model_copy(update={"rank": args.rank})

    memory.reset()
    started = time.perf_counter()
    raw = spark.read.parquet(str(root / "interactions.parquet"))
    pairs = raw.groupBy("user_id", "item_id").agg(
        F.sum("weight").alias("weight"), F.lit(None).cast("date").alias("last_day")
    )
    index = IdIndex(pairs)
    data = index.interactions(pairs)
    n_pairs = data.frame.count()
    results["prepare"] = {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(memory.peak / 2**20)}

    memory.reset()
    started = time.perf_counter()
    model = AlsRecommender(params, seed=0).fit(data)
    results["train"] = {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(memory.peak / 2**20)}

    memory.reset()
    started = time.perf_counter()
    seen = data.frame.groupBy("u").agg(F.collect_list("i").alias("exclude"))
    rows = model.user_frame.join(seen, "u", "left")
    lists = top_n_spark(rows, lambda batch: np.stack(batch["features"].to_numpy()), model.item_factors, args.top_n, "u")
    results["score_top_n_spark"] = {
        "rows": lists.count(),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(memory.peak / 2**20),
    }
    if args.driver:
        memory.reset()
        started = time.perf_counter()
        lists = recommend(model, np.arange(index.n_users), data, args.top_n)
        results["score_top_n_driver"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(memory.peak / 2**20),
            "rows": len(lists),
        }
    memory.stop()
    results["data"] = {
        "interactions": args.interactions,
        "user_item_pairs": n_pairs,
        "users": index.n_users,
        "items": index.n_items,
        "params": params.model_dump(),
        "top_n": args.top_n,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
