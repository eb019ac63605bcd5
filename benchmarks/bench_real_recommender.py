"""Benchmark (not a test): the recommender competition on a real retailer's purchases.

    .venv/bin/python benchmarks/bench_real_recommender.py [--cut 2011-11-09] [--end 2011-12-10]
        [--protocol temporal|random-per-user] [--out-dir DIR]

The data is the UCI Online Retail year shipped in ``tests/data/real/`` (541,909 order lines of
a UK gift wholesaler, 2010-12-01 to 2011-12-09). Interactions are the registered customers'
merchandise purchase lines (cancellations, postage, fees and manual lines out), one row per
line: ``user_id`` = CustomerID, ``item_id`` = StockCode, ``timestamp`` = InvoiceDate.

``temporal`` (default): train on everything before ``--cut``, test on what the same customers
bought from ``--cut`` to ``--end`` that they had not bought before (new products only), the
issue's protocol; the competition validates on the latest quarter of the training side.
``random-per-user``: the lines up to ``--end`` split by ``marketing evaluate-recommender``'s
seeded per-user protocol. Runs :func:`jobs.recommender.evaluation.evaluate_recommender` (what
the command runs) and prints every model's nDCG, recall and hit rate at 10, the model chosen on
validation and its comparison with the strongest cheap baseline, and (temporal) the buy-again
list's method against "most bought by this customer" on the repeat purchases of the test month.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NOT_MERCHANDISE = ("POST", "DOT", "M", "BANK CHARGES", "C2", "PADS", "AMAZONFEE", "CRUK", "D", "S", "B")


def interactions(end: str) -> pd.DataFrame:
    from tests.real_data import ONLINE_RETAIL

    lines = pd.read_parquet(ONLINE_RETAIL, columns=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "CustomerID"])
    keep = (
        lines["CustomerID"].notna()
        & ~lines["InvoiceNo"].astype(str).str.startswith("C")
        & (lines["Quantity"] > 0)
        & ~lines["StockCode"].isin(NOT_MERCHANDISE)
        & (lines["InvoiceDate"] < pd.Timestamp(end))
    )
    lines = lines[keep]
    return pd.DataFrame(
        {
            "user_id": lines["CustomerID"].astype(int).astype(str),
            "item_id": lines["StockCode"].astype(str),
            "timestamp": lines["InvoiceDate"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", default="2011-11-09")
    parser.add_argument("--end", default="2011-12-10")
    parser.add_argument("--protocol", choices=["temporal", "random-per-user"], default="temporal")
    parser.add_argument("--out-dir", default="/tmp/bench-real-recommender")
    args = parser.parse_args()

    from jobs.platform.config import load_config
    from jobs.recommender.evaluation import evaluate_recommender

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = interactions(args.end)
    started = time.monotonic()
    if args.protocol == "temporal":
        before = pd.to_datetime(data["timestamp"]) < pd.Timestamp(args.cut)
        data[before].to_csv(out / "train-input.csv", index=False)
        data[~before].to_csv(out / "test-input.csv", index=False)
        files = {"train": str(out / "train-input.csv"), "test": str(out / "test-input.csv")}
        evaluate_recommender(load_config(), str(out), protocol="temporal", test_ratio=0.25, **files)
    else:
        data.to_csv(out / "interactions.csv", index=False)
        evaluate_recommender(
            load_config(), str(out), interactions=str(out / "interactions.csv"), protocol=args.protocol
        )
    report = json.loads((out / "metrics.json").read_text())
    table = pd.DataFrame(
        {
            name: {m: r["metrics"][m] for m in ("ndcg@10", "recall@10", "hit_rate@10")}
            for name, r in report["models"].items()
        }
    ).T
    print(f"{args.protocol} split, cut {args.cut}, end {args.end}: {report['test']['users_evaluated']} users evaluated")
    print(table.round(4).to_string())
    print("validation nDCG@10:", report["validation"])
    print("chosen on validation:", report["chosen"], {n: r["params"] for n, r in report["models"].items()})
    print("versus the strongest cheap baseline:", report["versus_baseline"])
    if "buy_again" in report:
        again = report["buy_again"]
        print(
            f"buy again ({again['test']['users_evaluated']} customers with a repeat purchase), method {again['method']}:"
        )
        print(pd.DataFrame(again["models"]).T.round(4).to_string())
        print("versus most bought:", again["versus_baseline"])
    print(f"{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
