"""Benchmark (not a test): cross-sell rules on a real shop's year of baskets.

    .venv/bin/python benchmarks/bench_associations.py --out benchmarks/results/associations-online-retail.json

The baskets are the UCI "Online Retail" data set shipped in ``tests/data/real/`` (a UK online
gift retailer, 2010-12-01 to 2011-12-09: 541,909 lines, 25,900 invoices, 4,070 stock codes; see
that folder's README): every invoice that is not a cancellation ("C...") with its lines of
positive quantity, as a set of stock codes. They are mined exactly as the associations stage
mines them (``association_rules`` with ``config/campaigns.yaml``'s settings, under the stage's time
budget), once on the real baskets and once on the same baskets with their products shuffled
between baskets (each basket keeps its size and each product its frequency: any co-purchase
structure is gone). Reported: wall time, baskets (and those left out as larger than
``max_basket_items``), frequent itemsets, candidate and significant rules, published rules, the
top rules with their product descriptions and basket counts, and how many rules the shuffled
baskets give (the false discoveries; the target is none).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def mine(spark, baskets: pd.DataFrame, settings) -> tuple[pd.DataFrame, dict, float]:
    from jobs.activation.associations import association_rules
    from jobs.platform.spark import time_budget

    sized = baskets[baskets["items"].str.len().between(settings.min_basket_items, settings.max_basket_items)]
    frame = spark.createDataFrame(sized, "order_id long, items array<long>")
    counts: dict = {"baskets": len(sized)}
    started = time.perf_counter()
    with time_budget(spark, settings.max_seconds, "associations benchmark", "associations.max_seconds"):
        rules = association_rules(frame, settings, counts=counts).toPandas()
    return rules, counts, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--top", type=int, default=15, help="top rules to list (default 15)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from jobs.activation.campaigns_config import load_campaigns
    from jobs.platform.config import load_config
    from jobs.platform.spark import get_spark
    from tests.real_data import online_retail_baskets, shuffled

    settings = load_campaigns().associations
    spark = get_spark(load_config())
    spark.range(1).count()  # the JVM's start is not the mining's time
    baskets, names = online_retail_baskets()
    over = int((baskets["items"].str.len() > settings.max_basket_items).sum())
    rules, counts, seconds = mine(spark, baskets, settings)
    _, null_counts, null_seconds = mine(spark, shuffled(baskets), settings)
    top = [
        {
            "antecedent": [names[p] for p in rule.antecedent],
            "consequent": names[rule.consequent],
            "basket_count": int(rule.basket_count),
            "antecedent_basket_count": int(rule.antecedent_basket_count),
            "confidence": round(float(rule.confidence), 3),
            "lift": round(float(rule.lift), 1),
            "leverage": round(float(rule.leverage), 5),
        }
        for rule in rules.head(args.top).itertuples()
    ]
    result = {
        "data": "UCI Online Retail, 2010-12-01..2011-12-09, invoices without cancellations",
        "invoices": len(baskets),
        "baskets_over_max_basket_items": over,
        "settings": settings.model_dump(mode="json"),
        "seconds": round(seconds, 1),
        "counts": {**counts, "rules": len(rules)},
        "median_basket_count_of_rules": float(rules["basket_count"].median()) if len(rules) else None,
        "top_rules": top,
        "shuffled_baskets": {"seconds": round(null_seconds, 1), "counts": null_counts},
    }
    print(f"{len(baskets):,} invoices, {counts['baskets']:,} baskets mined ({over:,} over max_basket_items left out)")
    print(
        f"mined in {seconds:.1f} s: {counts['itemsets']:,} frequent itemsets, {counts['candidate_rules']:,} candidate "
        f"rules, {counts['significant_rules']:,} significant, {len(rules):,} published"
    )
    for rule in top:
        print(
            f"  {' + '.join(rule['antecedent'])} -> {rule['consequent']}: {rule['basket_count']} baskets, "
            f"confidence {rule['confidence']}, lift {rule['lift']}"
        )
    print(
        f"shuffled baskets: {null_counts['significant_rules']} significant rules of "
        f"{null_counts['candidate_rules']:,} candidates ({null_seconds:.1f} s)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
