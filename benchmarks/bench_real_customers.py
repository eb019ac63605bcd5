"""Benchmark (not a test): the nightly customer scores on a real retailer, beside baselines.

    .venv/bin/python benchmarks/bench_real_customers.py [--data online-retail|cdnow]
        [--as-of D ...] [--horizon-days N] [--out FILE]

Two real purchase histories shipped in ``tests/data/real/``:

- ``online-retail`` (default: as of 2011-09-09, 2011-06-01 and 2011-03-01, 90 days): the UCI
  Online Retail year of a UK gift wholesaler; one order per invoice of a registered customer
  (cancellation invoices are credit notes: negative amounts, counted as purchases of negative
  value, so net spend is what was kept), ``amount`` = the sum of quantity x unit price.
- ``cdnow`` (default: as of 1997-09-30, 273 days = 39 weeks, the literature's split): the CDNOW
  cohort of 23,570 customers who first bought in the first quarter of 1997, to June 1998.

For each ``--as-of`` it runs :func:`jobs.customers.backtest.evaluate_customers` (what
``marketing evaluate-customers`` runs) and prints every model's repurchase AUC, value Spearman
and total.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cdnow_file(folder: Path) -> Path:
    from tests.real_data import REAL

    lines = pd.read_parquet(REAL / "cdnow.parquet")
    orders = pd.DataFrame(
        {
            "user_id": lines["customer_id"],
            "order_id": [f"{c}-{i}" for i, c in enumerate(lines["customer_id"])],
            "order_ts": pd.to_datetime(lines["order_date"]).dt.strftime("%Y-%m-%d"),
            "amount": lines["amount"],
        }
    )
    path = folder / "cdnow_orders.csv"
    orders.to_csv(path, index=False)
    return path


def orders_file(folder: Path) -> Path:
    from tests.real_data import ONLINE_RETAIL

    lines = pd.read_parquet(ONLINE_RETAIL, columns=["InvoiceNo", "Quantity", "UnitPrice", "InvoiceDate", "CustomerID"])
    lines = lines[lines["CustomerID"].notna()]
    lines = lines.assign(amount=lines["Quantity"] * lines["UnitPrice"])
    orders = lines.groupby("InvoiceNo").agg(
        user_id=("CustomerID", "first"), order_ts=("InvoiceDate", "min"), amount=("amount", "sum")
    )
    orders = orders.reset_index().rename(columns={"InvoiceNo": "order_id"})
    orders["user_id"] = orders["user_id"].astype(int)
    orders["order_ts"] = orders["order_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    path = folder / "online_retail_orders.csv"
    orders[["user_id", "order_id", "order_ts", "amount"]].to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["online-retail", "cdnow"], default="online-retail")
    parser.add_argument("--as-of", nargs="+")
    parser.add_argument("--horizon-days", type=int)
    parser.add_argument("--out", help="also write the reports as JSON here")
    args = parser.parse_args()

    from jobs.customers.backtest import evaluate_customers
    from jobs.platform.config import load_config

    config = load_config()
    defaults = {"online-retail": (["2011-09-09", "2011-06-01", "2011-03-01"], 90), "cdnow": (["1997-09-30"], 273)}
    args.as_of = args.as_of or defaults[args.data][0]
    args.horizon_days = args.horizon_days or defaults[args.data][1]
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        path = (cdnow_file if args.data == "cdnow" else orders_file)(Path(folder))
        for as_of in args.as_of:
            started = time.monotonic()
            report = evaluate_customers(config, str(path), date.fromisoformat(as_of), args.horizon_days)
            reports.append(report)
            print(f"as of {as_of}, {args.horizon_days} days: {report['customers']} customers, "
                  f"{report['bought_again']} bought again, actual {report['actual_total']:,.0f} "
                  f"(nightly: {report['nightly_method']}; BG/NBD at boundary: {report['bgnbd_fit']['at_boundary']})")  # fmt: skip
            print(pd.DataFrame(report["models"]).set_index("model").to_string())
            print(f"{time.monotonic() - started:.0f} s\n")
    if args.out:
        Path(args.out).write_text(json.dumps(reports, indent=2, default=str))


if __name__ == "__main__":
    main()
