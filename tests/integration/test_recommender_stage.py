"""The nightly recommender stage on a small simulated shop (real Spark, DuckDB, a local
registry): a gate the model cannot pass keeps everything unpublished and says why; a gate it
passes publishes lists for every registered customer and similar items, and promotes the
version in the registry."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from jobs.platform.errors import ModelGateError
from jobs.platform.storage import LocalStorage
from jobs.recommender.settings import load_recommender
from jobs.recommender.stage import build_recommender
from models.registry import Registry
from tests.integration.conftest import SMALL_SHOP

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
LAST = SMALL_SHOP.start_date + timedelta(days=SMALL_SHOP.days - 1)


@pytest.fixture(scope="module")
def shop(small_shop):
    return small_shop.config


def settings(min_lift: float):
    base = load_recommender()
    return base.model_copy(
        update={
            "gate": base.gate.model_copy(update={"min_lift_over_popularity": min_lift}),
            "tuning": base.tuning.model_copy(update={"max_trials": 1}),  # tuning: see evaluate-recommender
            "evaluation": base.evaluation.model_copy(update={"holdout_days": 5, "validation_days": 5}),
        }
    )


def query(config, sql: str, **params) -> list[tuple]:
    engine = sa.create_engine(config.warehouse.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def test_a_failed_gate_publishes_nothing_and_a_passed_one_publishes_and_promotes(shop):
    registry = Registry(LocalStorage(shop.recommender.registry_root), "recommender")
    with pytest.raises(ModelGateError, match="does not beat popularity"):
        build_recommender(shop, LAST, settings(min_lift=10.0))  # ALS would need 11x popularity
    assert query(shop, "select count(*) from mart_recommendations") == [(0,)]
    (rejected,) = registry.versions()
    assert rejected["gate"]["passed"] is False and registry.production() is None
    evaluated = dict(query(shop, "select model, count(*) from mart_model_evaluation group by 1"))
    assert set(evaluated) == {"als", "popularity", "item_knn"}
    ((status,),) = query(shop, "select status from ops_pipeline_runs where stage = 'recommender'")
    assert status == "failed"

    result = build_recommender(shop, LAST, settings(min_lift=-1.0))
    assert registry.production()["version"] == result["version"]
    assert registry.load(result["version"], "item_factors").num_rows > 0
    assert registry.load(result["version"], "user_factors").num_rows > 0  # written by the executors
    assert registry.meta(result["version"])["tuned_on"] == LAST.isoformat()

    users = query(shop, "select user_id from dim_user")
    lists = pd.DataFrame(
        query(
            shop,
            "select user_id, rank, product_id, reason_code from mart_recommendations where snapshot_date = :d",
            d=LAST,
        ),
        columns=["user_id", "rank", "product_id", "reason_code"],
    )
    assert set(lists["user_id"]) == {u for (u,) in users}  # every registered customer has a list
    assert lists.groupby("user_id")["rank"].max().max() <= 20 and set(lists["reason_code"]) >= {"als"}
    inactive = {p for (p,) in query(shop, "select product_id from dim_product where not is_active")}
    assert not set(lists["product_id"]) & inactive
    bought = query(
        shop,
        "select i.user_id, i.product_id from fct_order_items i join fct_orders o using (order_id) "
        "join dim_product p using (product_id) where o.status in ('paid', 'shipped', 'completed') "
        "and p.category_l1 not in ('food & grocery', 'beauty')",
    )
    assert not set(bought) & set(zip(lists["user_id"], lists["product_id"], strict=True))
    per_category = query(
        shop,
        "select max(n) from (select r.user_id, p.category_l1, count(*) n from mart_recommendations r "
        "join dim_product p using (product_id) group by 1, 2)",
    )
    assert per_category[0][0] <= 5
    ((similar,),) = query(shop, "select count(*) from v_similar_items_latest where product_id <> similar_product_id")
    assert similar > 0
    published = query(shop, "select distinct model_version from mart_model_evaluation where is_published")
    assert published == [(result["version"],)]


def test_models_can_be_listed_promoted_and_rolled_back(shop, tmp_path):
    import json

    from jobs.recommender.stage import models_command
    from models.registry import RegistryError
    from tests.unit.test_cli import assert_one_line_error, marketing

    registry = Registry(LocalStorage(shop.recommender.registry_root), "recommender")
    first = registry.production()["version"]  # from the test above
    second = build_recommender(shop, LAST, settings(min_lift=-1.0))["version"]
    assert registry.production()["version"] == second
    listed = models_command(shop, "list")
    assert [v["live"] for v in listed] == [False, False, True] and listed[0]["gate"]["passed"] is False

    restored = models_command(shop, "rollback")
    assert restored["version"] == first and restored["rolled_back_from"] == second
    assert query(shop, "select distinct model_version from v_recommendations_latest") == [(first,)]
    with pytest.raises(RegistryError, match="no earlier production version"):
        models_command(shop, "rollback")
    models_command(shop, "promote", second, "back to the newest")
    assert query(shop, "select distinct model_version from v_recommendations_latest") == [(second,)]
    with pytest.raises(ModelGateError, match="never passed the gate"):
        models_command(shop, "promote", listed[0]["version"])

    env = {
        "MKT_RECOMMENDER__REGISTRY_ROOT": shop.recommender.registry_root,
        "MKT_WAREHOUSE__URL": shop.warehouse.url,
    }
    proc = marketing("models", "list", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert [v["version"] for v in json.loads(proc.stdout)] == [v["version"] for v in listed]
    assert_one_line_error(marketing("models", "promote", "nope", cwd=tmp_path, **env), "no version 'nope'")
