"""The nightly recommender stage on a small simulated shop (real Spark, DuckDB, a local
registry): a gate the night cannot pass (a live model far better) keeps everything unpublished
and says why; a gate it passes publishes the competition's published model's lists for every
registered customer and similar items, and promotes the version in the registry."""

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


def settings(max_drop: float = 0.10, **competition):
    base = load_recommender()
    return base.model_copy(
        update={
            "gate": base.gate.model_copy(update={"max_drop_vs_production": max_drop}),
            "tuning": base.tuning.model_copy(update={"max_trials": 1}),  # tuning: see evaluate-recommender
            "competition": base.competition.model_copy(
                update={
                    "ease_l2": (200.0,),
                    "knn_neighbours": (50,),
                    "popularity_half_life_days": (None,),
                    **competition,
                }
            ),
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


def test_a_failed_gate_publishes_nothing_and_a_passed_one_publishes_and_promotes(shop, tmp_path):
    # a registry whose live model scored 1.0: tonight's best falls more than 10 % below it
    rivalled = shop.model_copy(update={"recommender": shop.recommender.model_copy(
        update={"registry_root": str(tmp_path / "registry")})})  # fmt: skip
    rival = Registry(LocalStorage(rivalled.recommender.registry_root), "recommender")
    rival.save("00000000-000000", {"published_model": "ease", "metrics": {"ease": {"metrics": {"ndcg@10": 1.0}}}}, {})
    rival.promote("00000000-000000")
    with pytest.raises(ModelGateError, match=r"below the live model 00000000-000000 \(ease 1.0000\)"):
        build_recommender(rivalled, LAST, settings())
    assert query(shop, "select count(*) from mart_recommendations") == [(0,)]
    rejected = rival.versions()[-1]
    assert rejected["gate"]["passed"] is False and rival.production()["version"] == "00000000-000000"
    evaluated = dict(query(shop, "select model, count(*) from mart_model_evaluation group by 1"))
    assert set(evaluated) == {"als", "ease", "item_knn", "popularity", "buy_again", "most_bought"}
    ((status,),) = query(shop, "select status from ops_pipeline_runs where stage = 'recommender'")
    assert status == "failed"

    registry = Registry(LocalStorage(shop.recommender.registry_root), "recommender")
    result = build_recommender(shop, LAST, settings(max_drop=1.0))
    meta = registry.meta(result["version"])
    assert registry.production()["version"] == result["version"] and result["model"] == meta["published_model"]
    assert meta["tuned_on"] == LAST.isoformat() and meta["chosen"] in meta["metrics"]
    assert registry.load(result["version"], "interactions").num_rows > 0
    if result["model"] == "als":  # only ALS has factors
        assert registry.load(result["version"], "user_factors").num_rows > 0  # written by the executors

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
    assert lists.groupby("user_id")["rank"].max().max() <= 20 and set(lists["reason_code"]) >= {result["model"]}
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

    # buy again: only products the customer bought, the night's method against its baseline
    again = pd.DataFrame(
        query(shop, "select user_id, product_id, rank, times_bought, last_bought, due_date, method "
                    "from v_buy_again_latest"),
        columns=["user_id", "product_id", "rank", "times_bought", "last_bought", "due_date", "method"],
    )  # fmt: skip
    assert len(again) > 0 and again["rank"].max() <= 10 and (again["due_date"] > again["last_bought"]).all()
    purchased = set(query(
        shop, "select o.user_id, i.product_id from fct_order_items i join fct_orders o using (order_id) "
              "where o.status in ('paid', 'shipped', 'completed') and o.order_date <= :d", d=LAST))  # fmt: skip
    assert set(zip(again["user_id"], again["product_id"], strict=True)) <= purchased
    assert set(again["method"]) == {meta["buy_again"]["method"]}
    repeat = dict(query(shop, "select model, value from mart_model_evaluation where metric = 'repeat_ndcg@10' "
                              "and model_version = :v", v=result["version"]))  # fmt: skip
    assert set(repeat) == {"buy_again", "most_bought"}


def test_models_can_be_listed_promoted_and_rolled_back(shop, tmp_path):
    import json

    from jobs.recommender.stage import models_command
    from models.registry import RegistryError
    from tests.unit.test_cli import assert_one_line_error, marketing

    registry = Registry(LocalStorage(shop.recommender.registry_root), "recommender")
    first = registry.production()["version"]  # from the test above
    second = build_recommender(shop, LAST, settings(max_drop=1.0))["version"]
    assert registry.production()["version"] == second
    listed = models_command(shop, "list")
    assert [v["live"] for v in listed] == [False, True]

    restored = models_command(shop, "rollback")
    assert restored["version"] == first and restored["rolled_back_from"] == second
    assert query(shop, "select distinct model_version from v_recommendations_latest") == [(first,)]
    with pytest.raises(RegistryError, match="no earlier production version"):
        models_command(shop, "rollback")
    models_command(shop, "promote", second, "back to the newest")
    assert query(shop, "select distinct model_version from v_recommendations_latest") == [(second,)]

    env = {
        "MKT_RECOMMENDER__REGISTRY_ROOT": shop.recommender.registry_root,
        "MKT_WAREHOUSE__URL": shop.warehouse.url,
    }
    proc = marketing("models", "list", cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert [v["version"] for v in json.loads(proc.stdout)] == [v["version"] for v in listed]
    assert_one_line_error(marketing("models", "promote", "nope", cwd=tmp_path, **env), "no version 'nope'")
    never = "20000101-000000"  # a version registered by a night whose gate failed
    registry.save(never, {"snapshot_date": "2000-01-01", "gate": {"passed": False}}, {})
    with pytest.raises(ModelGateError, match="never passed the gate"):
        models_command(shop, "promote", never)
