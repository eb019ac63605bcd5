"""Benchmark (not a test): ``marketing score-customers`` on ~1 million orders.

    .venv/bin/python benchmarks/bench_score_customers.py [--orders 1000000] [--customers 200000]

Writes a synthetic order export (Parquet: user_id, order_id, order_ts, amount, status) with
heterogeneous customers — purchase rates from a gamma distribution, a share who stop buying
half-way — over two years, then times ``score_file`` (RFM, lifecycle, churn backtest +
scoring, value) end to end, with peak RSS of the process tree (driver + Spark JVM).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.platform.ops import PeakMemory


def synthetic_orders(n_orders: int, n_customers: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = 730
    rate = rng.gamma(0.6, 1.0, n_customers)
    stop = np.where(rng.random(n_customers) < 0.4, rng.integers(200, days, n_customers), days)
    weights = rate * stop
    user = rng.choice(n_customers, size=n_orders, p=weights / weights.sum())
    day = (rng.random(n_orders) * stop[user]).astype(int)
    start = datetime(2024, 11, 1)
    ts = (
        pd.to_datetime(start)
        + pd.to_timedelta(day, unit="D")
        + pd.to_timedelta(rng.integers(0, 86_400, n_orders), unit="s")
    )
    status = rng.choice(
        ["completed", "paid", "shipped", "cancelled", "refunded"], size=n_orders, p=[0.8, 0.05, 0.05, 0.06, 0.04]
    )
    return pd.DataFrame(
        {
            "user_id": user.astype("int64") + 1,
            "order_id": np.arange(1, n_orders + 1, dtype="int64"),
            "order_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "amount": np.round(rng.lognormal(4.5, 0.8, n_orders), 2),
            "status": status,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    from jobs.customers.score_file import score_file
    from jobs.platform.config import load_config

    root = Path(tempfile.mkdtemp(prefix="mkt-score-bench-"))
    orders = synthetic_orders(args.orders, args.customers)
    export = root / "orders.parquet"
    orders.to_parquet(export, index=False)
    as_of = date(2026, 10, 31)
    memory = PeakMemory()
    started = time.perf_counter()
    summary = score_file(load_config(environ={}), str(export), as_of, str(root / "scores.parquet"))
    elapsed = time.perf_counter() - started
    memory.stop()
    scored = pd.read_parquet(root / "scores.parquet")
    results = {
        "orders": args.orders,
        "customers_in_file": int(orders["user_id"].nunique()),
        "customers_scored": summary["customers"],
        "seconds": round(elapsed, 1),
        "orders_per_s": round(args.orders / elapsed),
        "peak_rss_mb": round(memory.peak / 2**20),
        "churn_bands": scored["churn_risk_band"].value_counts(dropna=False).to_dict(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(results, indent=2, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
