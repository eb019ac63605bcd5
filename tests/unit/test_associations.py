"""Cross-sell rules (jobs/activation/associations.py) on small frames with real local Spark:
a rule planted in synthetic baskets is found with the ratios counted by hand and scipy's Fisher
test, unrelated products give no rule (also when hundreds of pairs beat chance),
well-supported rules rank before rare coincidences, baskets are formed from purchases only
(distinct products, single-item and giant baskets left out), and the thresholds, the
active-product filter, the ``max_rules`` cap and the candidate and time budgets hold."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from jobs.activation.associations import (
    AssociationSettings,
    association_rules,
    baskets,
    frequent_itemsets,
    load_association_settings,
    publishable,
)
from jobs.platform.errors import BudgetExceededError
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


def test_the_planted_rule_is_found_with_its_ratios_size_aware_p_value_and_leverage(planted, planted_rules):
    from scipy.stats import fisher_exact, poisson

    rule = planted_rules[((A,), B)]
    assert rule["confidence"] == pytest.approx(PLANTED_CONFIDENCE, abs=0.05)
    assert rule["lift"] > 2

    # The same numbers counted by hand from the baskets (the definitions in the module docstring),
    # the p-value and the bound from scipy as the oracle.
    n = len(planted)
    with_a = sum(A in b for b in planted)
    with_b = sum(B in b for b in planted)
    both = sum(A in b and B in b for b in planted)
    assert rule["basket_count"] == both and rule["antecedent_basket_count"] == with_a
    assert rule["support"] == pytest.approx(both / n)
    assert rule["antecedent_support"] == pytest.approx(with_a / n)
    assert rule["confidence"] == pytest.approx(both / with_a)
    assert rule["lift"] == pytest.approx((both / with_a) / (with_b / n))
    # the size-aware null by hand: a basket of size s holds x with 1 - (1 - s / lines) ** baskets_with_x
    lines = sum(len(b) for b in planted)
    expected = sum(
        (1 - (1 - len(basket) / lines) ** with_a) * (1 - (1 - len(basket) / lines) ** with_b) for basket in planted
    )
    assert rule["p_value"] == pytest.approx(poisson.sf(both - 1, expected), rel=1e-6)
    table = [[both, with_a - both], [with_b - both, n - with_a - with_b + both]]
    assert rule["p_value"] >= fisher_exact(table, alternative="greater").pvalue  # uneven sizes explain some
    assert rule["leverage"] == pytest.approx(both / n - (with_a / n) * (with_b / n))


def test_no_rule_between_products_that_were_not_planted_together(planted_rules):
    # Only the planted pair, in both directions (B's baskets mostly hold A too).
    assert set(planted_rules) == {((A,), B), ((B,), A)}


def test_baskets_without_structure_give_no_rules_though_many_pairs_beat_chance(spark):
    """Independent products: dozens of pairs pass a test at 5% by chance (counted by hand, scipy's
    Fisher test), none survives the correction."""
    from itertools import combinations, permutations

    from scipy.stats import fisher_exact

    rng = random.Random(5)
    rows = [sorted(rng.sample(range(1, 61), rng.randint(2, 6))) for _ in range(3000)]
    counts: dict = {}
    settings = AssociationSettings(min_support=0.002)
    assert association_rules(frame_of(spark, rows), settings, counts=counts).collect() == []
    assert counts["candidate_rules"] > 2000 and counts["significant_rules"] == 0

    n, single, both = len(rows), {}, {}
    for row in rows:
        for item in row:
            single[item] = single.get(item, 0) + 1
        for pair in combinations(row, 2):
            both[pair] = both.get(pair, 0) + 1
    lucky = 0
    for a, b in permutations(single, 2):
        ab = both.get((min(a, b), max(a, b)), 0)
        if ab >= settings.min_rule_baskets:
            table = [[ab, single[a] - ab], [single[b] - ab, n - single[a] - single[b] + ab]]
            lucky += fisher_exact(table, alternative="greater").pvalue < 0.05
    assert lucky > 50  # what would be published without the correction


def test_well_supported_rules_rank_before_rare_coincidences_with_a_higher_lift(spark):
    """1 -> 2: confidence 0.8 over 300 baskets, lift 9; 3 -> 4: 0.9 over 10 baskets, lift 500."""
    rows = [[1, 2]] * 240 + [[1, 10]] * 60 + [[2, 11]] * 200 + [[3, 4]] * 9 + [[3, 12]] + [[20, 21]] * 4490
    rules = association_rules(frame_of(spark, rows), AssociationSettings(min_support=0.0001)).collect()
    order = [(tuple(r["antecedent"]), r["consequent"]) for r in rules]
    strong, rare = order.index(((1,), 2)), order.index(((3,), 4))
    assert strong < rare and rules[rare]["lift"] > 50 * rules[strong]["lift"]
    assert rules[strong]["leverage"] > rules[rare]["leverage"]
    keys = [(-r["leverage"], -r["lift"], -r["basket_count"], list(r["antecedent"]), r["consequent"])
            for r in rules]  # fmt: skip
    assert keys == sorted(keys)
    capped = association_rules(frame_of(spark, rows), AssociationSettings(min_support=0.0001, max_rules=2)).collect()
    assert capped == rules[:2]


def test_thresholds_filter_and_pairs_are_the_default_antecedent(spark, planted):
    settings = AssociationSettings(min_support=0.005, min_confidence=0.05, min_lift=1.0, fdr=0.5)
    rules = association_rules(frame_of(spark, planted), settings).collect()
    assert rules and all(r["lift"] > 1.0 and r["confidence"] >= 0.05 and r["support"] >= 0.005 for r in rules)
    assert all(len(r["antecedent"]) == 1 for r in rules)
    stricter = association_rules(frame_of(spark, planted), settings.model_copy(update={"min_lift": 1.5})).collect()
    assert all(r["lift"] > 1.5 for r in stricter) and len(stricter) <= len(rules)


def test_a_planted_triple_gives_a_two_product_antecedent_when_asked(spark):
    rng = random.Random(3)
    rows = [sorted({1, 2, 3} | set(rng.sample(range(10, 40), 2))) for _ in range(60)]
    rows += [sorted({1, 2} | set(rng.sample(range(10, 40), 2))) for _ in range(40)]
    rows += [sorted(rng.sample(range(3, 40), 3)) for _ in range(900)]
    settings = AssociationSettings(max_antecedent_items=2, min_support=0.005)
    rules = rules_of(association_rules(frame_of(spark, rows), settings))
    triple = rules[((1, 2), 3)]
    assert triple["basket_count"] == sum({1, 2, 3} <= set(r) for r in rows)
    assert triple["antecedent_basket_count"] == sum({1, 2} <= set(r) for r in rows) == 100
    assert all(len(a) == 1 for a, _ in rules_of(association_rules(frame_of(spark, rows), AssociationSettings())))


def test_the_cap_breaks_ties_by_antecedent_then_consequent(spark):
    # Three disjoint pairs, each in 5 of 15 baskets: every rule has the same numbers.
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


def test_a_rule_in_fewer_than_min_rule_baskets_is_not_kept(spark):
    rows = [[1, 2]] * 2 + [[4, 5]] * 15 + [[6, 7]] * 20
    rules = rules_of(association_rules(frame_of(spark, rows), AssociationSettings()))
    assert set(rules) == {((4,), 5), ((5,), 4), ((6,), 7), ((7,), 6)}  # (1, 2): 2 baskets, fewer than 3
    two = rules_of(association_rules(frame_of(spark, rows), AssociationSettings(min_rule_baskets=2)))
    assert two[((1,), 2)]["basket_count"] == 2
    assert association_rules(frame_of(spark, [[1, 2]]), AssociationSettings()).collect() == []


def test_mining_past_its_candidate_budget_stops_with_a_line_naming_the_setting(spark):
    rows = [list(range(1, 41))] * 5  # 5 baskets of 40 products: 3,900 pairs
    with pytest.raises(BudgetExceededError) as caught:
        association_rules(frame_of(spark, rows), AssociationSettings(max_candidate_pairs=1000)).collect()
    message = str(caught.value)
    assert "\n" not in message and "3,900 candidate itemset rows" in message
    assert "associations.max_candidate_pairs = 1,000" in message


def test_a_spark_block_past_its_time_budget_is_cancelled_with_a_line_naming_the_setting(spark):
    import time

    from jobs.platform.spark import time_budget

    started = time.monotonic()
    with pytest.raises(
        BudgetExceededError, match=r"^slow mining did not finish within 2 s \(x\.max_seconds\); cancelled$"
    ):
        with time_budget(spark, 2, "slow mining", "x.max_seconds"):
            spark.sparkContext.parallelize(range(2), 2).map(lambda x: time.sleep(120) or x).count()
    assert time.monotonic() - started < 60
    assert spark.range(3).count() == 3  # the session goes on; later jobs are not in the cancelled group
    with time_budget(spark, 60, "quick", "x.max_seconds"):
        assert spark.range(5).count() == 5
    context = spark.sparkContext  # nothing of the budget's job group stays on the thread's later jobs
    for name in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
        assert context.getLocalProperty(name) is None, name


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
    capped = baskets(items_frame(spark, lines), orders, D, AssociationSettings(lookback_days=10, max_basket_items=2))
    assert sorted(r["order_id"] for r in capped.collect()) == [1, 6]
    giant = orders_frame(spark, [(8, "paid", D)])
    many = items_frame(spark, [(8, line, line) for line in range(1, 6)])
    assert baskets(many, giant, D, AssociationSettings(max_basket_items=4)).collect() == []

    # the duplicate line counts once: a rule from order 1 and another basket has 2 baskets, not 3
    more = orders_frame(spark, [(1, "completed", D), (7, "completed", D)])
    pair = baskets(
        items_frame(spark, [(1, 1, 7), (1, 2, 5), (1, 3, 7), (7, 1, 5), (7, 2, 7)]), more, D, AssociationSettings()
    )
    _, pairs, _, _ = frequent_itemsets(pair, 2, AssociationSettings(min_rule_baskets=2))
    assert [tuple(r) for r in pairs.collect()] == [(5, 7, 2)]


def test_publishable_joins_the_antecedent_in_numeric_order(spark):
    rules = spark.createDataFrame(
        [([9, 12], 45, 0.1, 0.5, 2.0, 0.2, 3, 6, 0.3, 0.001)],
        "antecedent array<bigint>, consequent bigint, support double, confidence double, lift double, "
        "antecedent_support double, basket_count bigint, antecedent_basket_count bigint, "
        "leverage double, p_value double",
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


def test_the_bundles_planted_in_a_simulated_shop_are_found(spark):
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
