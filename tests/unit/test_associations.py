"""Cross-sell rules (jobs/activation/associations.py) on small frames with real local Spark:
FP-growth recovers a rule planted in synthetic baskets and no rule between unrelated products,
its ratios equal the ones counted by hand, baskets are formed from purchases only (distinct
products, single-item baskets dropped), and the thresholds, the active-product filter and the
``max_rules`` cap hold."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from jobs.activation.associations import (
    AssociationSettings,
    association_rules,
    baskets,
    load_association_settings,
    publishable,
)
from jobs.platform.interface import PURCHASE_STATUSES

D = date(2026, 3, 31)
LOADED_AT = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
A, B = 1, 2  # planted: B is added to 60% of the baskets holding A
NOISE = range(3, 41)
PLANTED_CONFIDENCE = 0.6 + 0.4 * 0.05  # planted share, plus B's background rate in the rest


def planted_baskets(n: int = 2000, seed: int = 11) -> list[list[int]]:
    rng = random.Random(seed)
    result = []
    for _ in range(n):
        items = set(rng.sample(NOISE, rng.randint(1, 4)))
        if rng.random() < 0.2:
            items.add(A)
            if rng.random() < 0.6:
                items.add(B)
        if B not in items and rng.random() < 0.05:
            items.add(B)
        result.append(sorted(items))
    return result


def rules_of(frame) -> dict[tuple[tuple[int, ...], int], dict]:
    return {(tuple(r["antecedent"]), r["consequent"]): r.asDict() for r in frame.collect()}


def frame_of(spark, rows: list[list[int]]):
    return spark.createDataFrame([(i, items) for i, items in enumerate(rows)], "order_id bigint, items array<bigint>")


@pytest.fixture(scope="module")
def planted():
    return planted_baskets()


@pytest.fixture(scope="module")
def planted_rules(spark, planted):
    settings = AssociationSettings(min_support=0.02, min_confidence=0.3)
    return rules_of(association_rules(frame_of(spark, planted), settings))


def test_fp_growth_recovers_the_planted_rule_with_its_confidence(planted, planted_rules):
    rule = planted_rules[((A,), B)]
    assert rule["confidence"] == pytest.approx(PLANTED_CONFIDENCE, abs=0.05)
    assert rule["lift"] > 2

    # The same ratios counted by hand from the baskets (the definitions in the module docstring).
    n = len(planted)
    with_a = sum(A in b for b in planted)
    with_b = sum(B in b for b in planted)
    both = sum(A in b and B in b for b in planted)
    assert rule["basket_count"] == both and rule["antecedent_basket_count"] == with_a
    assert rule["support"] == pytest.approx(both / n)
    assert rule["antecedent_support"] == pytest.approx(with_a / n)
    assert rule["confidence"] == pytest.approx(both / with_a)
    assert rule["lift"] == pytest.approx((both / with_a) / (with_b / n))


def test_no_rule_between_products_that_were_not_planted_together(planted_rules):
    # Only the planted pair, in both directions (B's baskets mostly hold A too).
    assert set(planted_rules) == {((A,), B), ((B,), A)}
    assert ((A,), 3) not in planted_rules and ((3,), 4) not in planted_rules


def test_every_rule_is_above_min_lift_and_sorted_strongest_first(spark, planted):
    settings = AssociationSettings(min_support=0.005, min_confidence=0.05, min_lift=1.0)
    rules = association_rules(frame_of(spark, planted), settings).collect()
    assert len(rules) > 10  # noise pairs with lift above 1 by chance, and the planted ones
    assert all(r["lift"] > 1.0 and r["confidence"] >= 0.05 and r["support"] >= 0.005 for r in rules)
    assert all(1 <= len(r["antecedent"]) <= 2 and list(r["antecedent"]) == sorted(r["antecedent"]) for r in rules)
    keys = [(-r["lift"], -r["confidence"], -r["support"], list(r["antecedent"]), r["consequent"]) for r in rules]
    assert keys == sorted(keys)

    stricter = association_rules(frame_of(spark, planted), settings.model_copy(update={"min_lift": 1.5})).collect()
    assert 0 < len(stricter) < len(rules) and all(r["lift"] > 1.5 for r in stricter)
    single = settings.model_copy(update={"max_antecedent_items": 1})
    assert all(len(r["antecedent"]) == 1 for r in association_rules(frame_of(spark, planted), single).collect())

    capped = association_rules(frame_of(spark, planted), settings.model_copy(update={"max_rules": 3})).collect()
    assert capped == rules[:3]


def test_the_cap_breaks_ties_by_antecedent_then_consequent(spark):
    # Three disjoint pairs, each in 5 of 15 baskets: every rule has the same lift and confidence.
    rows = [[1, 2]] * 5 + [[3, 4]] * 5 + [[5, 6]] * 5
    settings = AssociationSettings(max_rules=4)
    first = association_rules(frame_of(spark, rows), settings).collect()
    again = association_rules(frame_of(spark, list(reversed(rows))), settings).collect()
    assert [(list(r["antecedent"]), r["consequent"]) for r in first] == [([1], 2), ([2], 1), ([3], 4), ([4], 3)]
    assert first == again


def test_only_active_products_are_consequents(spark, planted):
    settings = AssociationSettings(min_support=0.02, min_confidence=0.3)
    active = spark.createDataFrame([(A,), *((p,) for p in NOISE)], "product_id bigint")
    rules = rules_of(association_rules(frame_of(spark, planted), settings, active))
    assert set(rules) == {((B,), A)}  # B is delisted: it may be an antecedent, never a suggestion


def test_a_rule_in_a_single_basket_is_not_kept(spark):
    rows = [[1, 2, 3]] + [[4, 5]] * 3 + [[6, 7]] * 4
    rules = rules_of(association_rules(frame_of(spark, rows), AssociationSettings()))
    assert {(a, c) for a, c in rules if 1 in a or c == 1} == set()
    assert rules[((4,), 5)]["basket_count"] == 3
    one = rules_of(association_rules(frame_of(spark, rows), AssociationSettings(min_rule_baskets=1)))
    assert one[((1, 2), 3)]["basket_count"] == 1
    assert association_rules(frame_of(spark, [[1, 2]]), AssociationSettings()).collect() == []


def test_no_baskets_give_no_rules(spark):
    empty = spark.createDataFrame([], "order_id bigint, items array<bigint>")
    rules = association_rules(empty, AssociationSettings())
    assert rules.collect() == []
    assert publishable(rules, D, LOADED_AT).columns[:4] == [
        "snapshot_date",
        "antecedent_product_ids",
        "antecedent_size",
        "consequent_product_id",
    ]


def orders_frame(spark, rows):
    return spark.createDataFrame(rows, "order_id bigint, status string, order_date date")


def items_frame(spark, rows):
    return spark.createDataFrame(
        [(order, line, product) for order, line, product in rows], "order_id bigint, line_no int, product_id bigint"
    )


def test_baskets_are_distinct_products_of_recent_purchases_with_two_or_more_items(spark):
    orders = orders_frame(
        spark,
        [
            (1, "completed", D),  # duplicate lines of one product
            (2, "paid", D - timedelta(days=3)),  # a single product: dropped
            (3, "cancelled", D),  # not a purchase
            (4, "shipped", D - timedelta(days=10)),  # before the lookback
            (5, "paid", D + timedelta(days=1)),  # after D
            (6, "shipped", D - timedelta(days=9)),  # last day of the lookback
        ],
    )
    lines = [(1, 1, 7), (1, 2, 5), (1, 3, 7), (2, 1, 5), (2, 2, 5), (3, 1, 5), (3, 2, 6), (4, 1, 5), (4, 2, 6)]
    lines += [(5, 1, 5), (5, 2, 6), (6, 1, 9), (6, 2, 8), (6, 3, None)]
    result = baskets(items_frame(spark, lines), orders, D, AssociationSettings(lookback_days=10))
    assert sorted((r["order_id"], list(r["items"])) for r in result.collect()) == [(1, [5, 7]), (6, [8, 9])]

    # the duplicate line counts once: a rule from order 1 and another basket has 2 baskets, not 3
    more = orders_frame(spark, [(1, "completed", D), (7, "completed", D)])
    pair = baskets(
        items_frame(spark, [(1, 1, 7), (1, 2, 5), (1, 3, 7), (7, 1, 5), (7, 2, 7)]), more, D, AssociationSettings()
    )
    (rule, _) = association_rules(pair, AssociationSettings(min_lift=0.0)).collect()
    assert rule["basket_count"] == 2 and rule["confidence"] == 1.0


def test_publishable_joins_the_antecedent_in_numeric_order(spark):
    rules = spark.createDataFrame(
        [([9, 12], 45, 0.1, 0.5, 2.0, 0.2, 3, 6)],
        "antecedent array<bigint>, consequent bigint, support double, confidence double, lift double, "
        "antecedent_support double, basket_count bigint, antecedent_basket_count bigint",
    )
    (row,) = publishable(rules, D, LOADED_AT).collect()
    assert (row["antecedent_product_ids"], row["antecedent_size"], row["consequent_product_id"]) == ("9,12", 2, 45)


@pytest.mark.parametrize("value", [0, 1.5])
def test_a_bad_min_support_is_an_error_naming_the_key(value):
    with pytest.raises(ValidationError, match="min_support"):
        load_association_settings({"min_support": value})


def test_settings_default_to_retail_values_and_refuse_unknown_keys_and_statuses():
    settings = load_association_settings(None)
    assert settings.min_support == 0.001 and settings.statuses == PURCHASE_STATUSES
    with pytest.raises(ValidationError, match="min_suport"):
        load_association_settings({"min_suport": 0.01})
    with pytest.raises(ValidationError, match="statuses"):
        load_association_settings({"statuses": ["paid", "lost"]})


def test_fp_growth_recovers_the_bundles_planted_in_a_simulated_shop(spark):
    """The simulator plants "bought together" pairs in its orders; with the shipped settings
    every pair is found, and it is far stronger than chance."""
    from jobs.activation.campaigns_config import load_campaigns
    from jobs.simulator import SimulationSpec, generate, published_view

    spec = SimulationSpec(seed=8, days=120, users=3000, products=300)
    world = generate(spec)
    view = published_view(world)
    orders = spark.createDataFrame(view["orders"][["order_id", "status", "order_date"]])
    items = spark.createDataFrame(view["order_items"][["order_id", "product_id"]])
    last = spec.start_date + timedelta(days=spec.days - 1)
    settings = load_campaigns().associations
    rules = rules_of(association_rules(baskets(items, orders, last, settings), settings))
    planted = world.truth["planted_bundles"]
    assert len(planted) == 6
    for a, b in planted[["antecedent_product_id", "consequent_product_id"]].itertuples(index=False):
        rule = rules[((int(a),), int(b))]
        assert rule["lift"] > 5 and rule["confidence"] > 0.3, rule
