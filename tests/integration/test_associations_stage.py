"""The cross-sell rules stage on the small simulated shop (real Spark, DuckDB): it publishes D's
rules from published orders, their support, confidence and lift agree with the baskets counted
again from the warehouse's fct_orders and fct_order_items, only active products are suggested,
re-running D replaces its snapshot (also with an empty one), and the run is recorded."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from jobs.activation.associations import AssociationSettings, build_associations
from jobs.platform.interface import PURCHASE_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
# The small shop has a few hundred orders, few of them with two or more products: a rule must be
# in 1% of those baskets and in at least two of them (min_rule_baskets).
SETTINGS = AssociationSettings(min_support=0.01, min_confidence=0.05, min_lift=1.0)
COLUMNS = (
    "antecedent_product_ids, antecedent_size, consequent_product_id, support, confidence, lift, basket_count, "
    "antecedent_basket_count"
)


def query(config, sql: str, **params) -> list[tuple]:
    engine = sa.create_engine(config.warehouse.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def published_rules(config, day) -> pd.DataFrame:
    rows = query(config, f"select {COLUMNS} from mart_product_associations where snapshot_date = :d", d=day)
    return pd.DataFrame(rows, columns=[c.strip() for c in COLUMNS.split(",")])


@pytest.fixture(scope="module")
def first_run(small_shop):
    summary = build_associations(small_shop.config, small_shop.last, SETTINGS)
    return summary, published_rules(small_shop.config, small_shop.last)


def warehouse_baskets(config, day) -> list[frozenset[int]]:
    """Purchase baskets of the lookback up to D counted again from the published warehouse tables."""
    statuses = ", ".join(f"'{s}'" for s in PURCHASE_STATUSES)
    rows = query(
        config,
        "select i.order_id, i.product_id from fct_order_items i join fct_orders o on o.order_id = i.order_id "
        f"where o.status in ({statuses}) and o.order_date > :start and o.order_date <= :d",
        start=day - timedelta(days=SETTINGS.lookback_days),
        d=day,
    )
    by_order: dict[int, set[int]] = {}
    for order_id, product_id in rows:
        by_order.setdefault(order_id, set()).add(product_id)
    return [frozenset(items) for items in by_order.values() if len(items) >= SETTINGS.min_basket_items]


def test_the_stage_publishes_the_dates_rules(small_shop, first_run):
    summary, rules = first_run
    assert summary["baskets"] >= 5 and summary["itemsets"] > 0  # most of its orders are of a single product
    assert summary["rules"] == len(rules) > 0, "the small shop should yield some rules at 1% support"
    assert (rules["lift"] > SETTINGS.min_lift).all() and (rules["support"] >= SETTINGS.min_support).all()
    assert (rules["confidence"] >= SETTINGS.min_confidence).all() and (rules["basket_count"] >= 2).all()
    assert (rules["antecedent_size"] == rules["antecedent_product_ids"].str.count(",") + 1).all()
    assert rules["antecedent_size"].between(1, SETTINGS.max_antecedent_items).all()
    inactive = {p for (p,) in query(small_shop.config, "select product_id from dim_product where not is_active")}
    assert not set(rules["consequent_product_id"]) & inactive
    latest = query(small_shop.config, "select count(*) from v_product_associations_latest")
    assert latest == [(len(rules),)]


def test_published_ratios_agree_with_the_warehouse_baskets(small_shop, first_run):
    summary, rules = first_run
    baskets = warehouse_baskets(small_shop.config, small_shop.last)
    n = len(baskets)
    assert n == summary["baskets"]
    for rule in rules.itertuples():  # every rule recounted from the warehouse (the shop has few baskets)
        antecedent = {int(p) for p in rule.antecedent_product_ids.split(",")}
        assert rule.antecedent_product_ids == ",".join(str(p) for p in sorted(antecedent))
        with_antecedent = sum(antecedent <= b for b in baskets)
        both = sum(antecedent | {rule.consequent_product_id} <= b for b in baskets)
        with_consequent = sum(rule.consequent_product_id in b for b in baskets)
        assert (rule.basket_count, rule.antecedent_basket_count) == (both, with_antecedent)
        assert rule.support == pytest.approx(both / n)
        assert rule.confidence == pytest.approx(both / with_antecedent)
        assert rule.lift == pytest.approx(both / with_antecedent / (with_consequent / n))
    # and every row is consistent in itself: confidence = support(A and b) / support(A)
    support_a = rules["antecedent_basket_count"] / n
    assert rules["confidence"].to_numpy() == pytest.approx((rules["support"] / support_a).to_numpy())


def test_rerunning_the_date_replaces_its_snapshot_also_with_an_empty_one(small_shop, first_run):
    config, day = small_shop.config, small_shop.last
    _, rules = first_run
    keys = ["antecedent_product_ids", "consequent_product_id"]

    again = build_associations(config, day, SETTINGS)
    rerun = published_rules(config, day)
    assert again["rules"] == len(rerun) == len(rules) and not rerun.duplicated(keys).any()
    pd.testing.assert_frame_equal(
        rerun.sort_values(keys).reset_index(drop=True), rules.sort_values(keys).reset_index(drop=True)
    )

    # No basket is big enough: D's snapshot is replaced by an empty one, cleanly.
    empty = build_associations(config, day, SETTINGS.model_copy(update={"min_basket_items": 1000}))
    assert (empty["baskets"], empty["itemsets"], empty["rules"]) == (0, 0, 0)
    assert query(config, "select count(*) from mart_product_associations where snapshot_date = :d", d=day) == [(0,)]
    ((rows_in, rows_out),) = query(
        config,
        "select rows_in, rows_out from ops_pipeline_runs where stage = 'associations' and logical_date = :d",
        d=day,
    )
    assert (rows_in, rows_out) == (0, 0)

    build_associations(config, day, SETTINGS)
    assert len(published_rules(config, day)) == len(rules)


def test_the_run_is_recorded_in_ops_pipeline_runs(small_shop, first_run):
    summary, _ = first_run
    ((dataset, status, rows_in, rows_out, details),) = query(
        small_shop.config,
        "select dataset, status, rows_in, rows_out, details_json from ops_pipeline_runs "
        "where stage = 'associations' and logical_date = :d",
        d=small_shop.last,
    )
    assert (dataset, status) == ("mart_product_associations", "success")
    assert (rows_in, rows_out) == (summary["baskets"], summary["rules"])
    details = json.loads(details)
    assert details["rows_by_table"] == {"mart_product_associations": summary["rules"]}
    assert details["settings"]["min_support"] == SETTINGS.min_support
