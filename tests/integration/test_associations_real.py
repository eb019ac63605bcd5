"""Cross-sell rules on a real shop's baskets (tests/data/real/online_retail.parquet: a UK online
gift retailer's invoices of three months, real Spark).

* the mining finishes inside its budgets, even though the data holds baskets of hundreds of
  products (left out and counted);
* the top rules are pairs that many baskets share (families of products bought together), not
  the rare coincidences of a huge lift;
* the same baskets with their products shuffled between them (sizes and product frequencies
  kept, co-purchase structure gone) give no rule at all.
"""

from __future__ import annotations

import pandas as pd
import pytest

from jobs.activation.associations import association_rules
from jobs.activation.campaigns_config import load_campaigns
from tests.real_data import online_retail_baskets, shuffled

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def real():
    return online_retail_baskets("2011-09-01", "2011-12-01")  # the busy season


def mined(spark, baskets: pd.DataFrame, counts: dict):
    settings = load_campaigns().associations
    sized = baskets[baskets["items"].str.len().between(settings.min_basket_items, settings.max_basket_items)]
    counts["over_cap"] = int((baskets["items"].str.len() > settings.max_basket_items).sum())
    frame = spark.createDataFrame(sized, "order_id long, items array<long>")
    return association_rules(frame, settings, counts=counts).toPandas(), settings


def test_the_top_rules_are_pairs_that_many_baskets_share(spark, real):
    baskets, names = real
    counts: dict = {}
    rules, settings = mined(spark, baskets, counts)
    assert len(baskets) > 6_000 and counts["over_cap"] > 0  # giant wholesale baskets were there, and left out
    assert 0 < len(rules) <= settings.max_rules
    assert (rules["basket_count"] >= settings.min_rule_baskets).all() and (rules["p_value"] <= settings.fdr).all()
    top = rules.head(10)
    assert (top["basket_count"] >= 100).all(), top.assign(consequent=top["consequent"].map(names))
    assert top["leverage"].is_monotonic_decreasing
    # a niche rule of a huge lift is further down than any of them
    niche = rules[(rules["lift"] > 80) & (rules["basket_count"] < 40)]
    assert niche.empty or niche.index.min() > 10


def test_shuffled_baskets_give_no_rule(spark, real):
    baskets, _ = real
    counts: dict = {}
    rules, _ = mined(spark, shuffled(baskets), counts)
    assert counts["candidate_rules"] > 1000  # plenty of pairs were tested
    assert rules.empty, rules.head()
