"""Benchmark (not a test): a real shop's whole year through every stage, read through a mapping.

    .venv/bin/python benchmarks/bench_real_shop.py --out benchmarks/results/real-shop-online-retail.json

The shop is the UCI "Online Retail" export shipped in ``tests/data/real/`` (541,909 order lines,
2010-12-01 to 2011-12-09: string SKUs, cancellation invoices, guest checkouts, postage and fee
lines, wholesale quantities, naive London times, no behaviour logs), mapped by
``config/examples/online-retail.source.yaml`` with the settings of
``config/examples/online-retail.pipeline.yaml`` (data folders moved under a temporary root). One
night, 2011-12-09, runs every stage: nightly, customers, recommender, campaigns, report.

Reported: ``source check``'s time and findings, each stage's time and peak memory, and the
issue's checks. The checks are that the warehouse's net sales equal the export's net to the
penny; that guests are in orders but in no customer table; that no non-merchandise product is
in any list; and that the associations stage finishes in under 60 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NIGHT = date(2011, 12, 9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--root", help="where the run's data goes (default: a temporary folder)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import pandas as pd
    import sqlalchemy as sa

    from jobs.ingest.source_map import source_check
    from jobs.platform.config import load_config
    from jobs.platform.ops import warehouse_engine
    from jobs.platform.stages import run_pipeline
    from tests.real_data import ONLINE_RETAIL

    root = Path(args.root or tempfile.mkdtemp(prefix="bench-real-shop-"))
    stores = ("landing", "lake", "reports", "exports", "state")
    config = load_config(
        ROOT / "config/examples/online-retail.pipeline.yaml",
        environ={"MKT_PII_HASH_KEY": "benchmark-only-key-0123456789abcdef"},
        overrides={
            "storage": {f"{name}_root": str(root / name) for name in stores},
            "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
            "portal": {"database_url": f"sqlite:///{root / 'portal.db'}"},
            "recommender": {"registry_root": str(root / "models")},
        },
    )
    started = time.perf_counter()
    check = source_check(config, sample=None)
    check_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run_pipeline(config, NIGHT, ["nightly", "customers", "models", "campaigns", "reports"])
    night_seconds = time.perf_counter() - started

    lines = pd.read_parquet(ONLINE_RETAIL)
    cents = (lines["Quantity"].astype("int64") * (lines["UnitPrice"] * 100).round().astype("int64")).sum()
    schema = config.warehouse.schema_name

    def one(sql: str):
        with warehouse_engine(config).connect() as conn:
            return conn.execute(sa.text(sql.replace("{s}", schema)), {"d": NIGHT}).one()

    stages = pd.read_sql_query(
        sa.text(f"select stage, duration_s, peak_rss_mb from {schema}.ops_stage_runs where logical_date = :d "
                "order by started_at"), warehouse_engine(config).connect(), params={"d": NIGHT},
    )  # fmt: skip
    non_goods = f"(select product_id from {schema}.dim_product where not is_merchandise)"
    checks = {
        "export_net": str(Decimal(int(cents)) / 100),
        "warehouse_net_orders": str(one("select sum(total_amount) from {s}.fct_orders")[0]),
        "warehouse_net_lines": str(one("select sum(line_amount) from {s}.fct_order_items")[0]),
        "guest_orders": one("select count(*) from {s}.fct_orders where is_guest")[0],
        "customers": one("select count(*) from {s}.dim_user")[0],
        "export_customers": int(lines["CustomerID"].dropna().nunique()),
        "non_merchandise_in_recommendations": one(f"select count(*) from {{s}}.mart_recommendations "
                                                  f"where product_id in {non_goods}")[0],
        "non_merchandise_in_similar_items": one(f"select count(*) from {{s}}.mart_similar_items "
                                                f"where similar_product_id in {non_goods}")[0],
        "non_merchandise_in_rules": one(f"select count(*) from {{s}}.mart_product_associations "
                                        f"where consequent_product_id in {non_goods}")[0],
        "non_merchandise_in_campaign_slots": one(
            f"select count(*) from {{s}}.mart_campaign_targets where product_id_1 in {non_goods} "
            f"or product_id_2 in {non_goods} or product_id_3 in {non_goods}")[0],
        "associations_seconds": float(stages.loc[stages["stage"] == "associations", "duration_s"].iloc[0]),
        "highest_predicted_value_12m": float(one("select max(predicted_value_12m) from {s}.mart_customer_scores")[0]),
    }  # fmt: skip
    checks["net_sales_to_the_penny"] = checks["export_net"] == checks["warehouse_net_orders"] == checks[
        "warehouse_net_lines"]  # fmt: skip
    result = {
        "benchmark": "real shop: UCI Online Retail year through every stage",
        "lines": len(lines),
        "source_check_seconds": round(check_seconds, 1),
        "source_check": {k: check[k] for k in ("order_lines", "orders", "products", "customers", "problems")},
        "night_seconds": round(night_seconds, 1),
        "stages": stages.round(1).to_dict(orient="records"),
        "checks": checks,
    }
    print(json.dumps(result, indent=2, default=str))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
