"""The recommender's quality gate, its registry (promote, roll back) and the published lists'
rules: active products only, bought items excluded unless repurchasable, a per-category cap,
and the cold-start fallback."""

import numpy as np
import pandas as pd
import pytest

from jobs.platform.storage import LocalStorage
from jobs.recommender.interactions import IdIndex
from jobs.recommender.settings import load_recommender
from jobs.recommender.stage import gate, publish_lists
from models.registry import Registry, RegistryError

SETTINGS = load_recommender()


def report(als: float, popularity: float) -> dict:
    return {"als": {"metrics": {"ndcg@10": als}}, "popularity": {"metrics": {"ndcg@10": popularity}}}


def test_the_gate_refuses_a_model_no_better_than_popularity_or_worse_than_production():
    assert gate(report(0.30, 0.20), None, SETTINGS, 10)[0]
    passed, reason = gate(report(0.21, 0.20), None, SETTINGS, 10)  # +5 % < the 10 % margin
    assert not passed and "does not beat popularity" in reason
    live = {"version": "v1", "metrics": report(0.40, 0.20)}
    passed, reason = gate(report(0.30, 0.20), live, SETTINGS, 10)  # 25 % below the live model
    assert not passed and "below the live model v1" in reason
    assert gate(report(0.37, 0.20), live, SETTINGS, 10)[0]  # within the 10 % tolerance


def test_the_parameter_search_runs_weekly_and_the_nights_between_refit_the_live_parameters():
    from datetime import date

    from jobs.recommender.stage import tuning_for

    live = {"version": "v1", "tuned_on": "2026-10-10", "params": {**SETTINGS.tuning.default.model_dump(), "rank": 64}}
    # the week after the live version's search: its parameters are the one trial
    settings, searched = tuning_for(SETTINGS, live, date(2026, 10, 16))
    assert settings.tuning.max_trials == 1 and settings.tuning.default.rank == 64 and searched == date(2026, 10, 10)
    assert settings.gate == SETTINGS.gate  # gated as every night
    # a week on, before it (a backfill), without a live version or an older one: a full search
    for production, night in ((live, date(2026, 10, 17)), (live, date(2026, 10, 9)), (None, date(2026, 10, 16)),
                              ({"version": "v0", "params": live["params"]}, date(2026, 10, 16))):  # fmt: skip
        settings, searched = tuning_for(SETTINGS, production, night)
        assert settings is SETTINGS and searched == night
    nightly = SETTINGS.model_copy(update={"tuning": SETTINGS.tuning.model_copy(update={"every_days": 0})})
    assert tuning_for(nightly, live, date(2026, 10, 11))[0] is nightly


def test_registry_saves_versions_and_promotes_and_rolls_back(tmp_path):
    import pyarrow as pa

    registry = Registry(LocalStorage(tmp_path), "recommender")
    assert registry.production() is None
    for version in ("v1", "v2", "v3"):
        registry.save(version, {"metrics": {"ndcg": version}}, {"item_factors": pa.table({"x": [1, 2]})})
    assert [m["version"] for m in registry.versions()] == ["v1", "v2", "v3"]
    assert registry.load("v2", "item_factors").num_rows == 2
    with pytest.raises(RegistryError, match="nothing is in production"):
        registry.rollback()
    registry.promote("v1")
    registry.promote("v2")
    registry.promote("v3")
    assert registry.production()["version"] == "v3"
    assert registry.rollback()["version"] == "v2"
    assert registry.rollback()["version"] == "v1"
    with pytest.raises(RegistryError, match="no earlier production version"):
        registry.rollback()
    assert [h["action"] for h in registry.history()] == ["promote", "promote", "promote", "rollback", "rollback"]
    with pytest.raises(RegistryError, match="no version 'v9'"):
        registry.promote("v9")


class Planted:
    """Factors under which every user prefers items in index order (item 0 best)."""

    def __init__(self, spark, n_users, n_items):
        self.user_frame = spark.createDataFrame([(u, [1.0]) for u in range(n_users)], "u int, features array<float>")
        self.item_factors = np.arange(n_items, 0, -1, dtype=np.float32)[:, None]


def test_published_lists_follow_the_rules(spark):
    # items 0..5: a a a b b c (categories); item 1 inactive; category c repurchasable
    products = ["p0", "p1", "p2", "p3", "p4", "p5"]
    catalogue = pd.DataFrame(
        {"product_id": products, "category": list("aaabbc"), "active": [True, False, True, True, True, True]}
    )
    # user "u1" has 4 items (warm), "u2" one item in category b (cold), "u3" nothing
    rows = [("u1", p, 1.0) for p in ("p0", "p2", "p3", "p5")] + [("u2", "p4", 1.0), ("u2", "p3", 0.0)]
    frame = spark.createDataFrame([r for r in rows if r[2] > 0], "user_id string, item_id string, weight double")
    index = IdIndex(frame)
    assert index.item_ids().tolist() == ["p0", "p2", "p3", "p4", "p5"]  # p1 never interacted
    data = index.interactions(frame.withColumn("last_day", frame.weight.cast("string").cast("date")))
    catalogue = catalogue.set_index("product_id").loc[index.item_ids()].reset_index()
    purchased = spark.createDataFrame([("u1", "p0"), ("u1", "p5")], "user_id string, item_id string")
    settings = SETTINGS.model_copy(
        update={"publishing": SETTINGS.publishing.model_copy(update={
            "top_n": 3, "max_per_category": 1, "repurchasable_categories": ("c",), "min_history_items": 3})}
    )  # fmt: skip
    users = spark.createDataFrame([("u1",), ("u2",), ("u3",)], "user_id string")
    lists = publish_lists(Planted(spark, 2, 5), index, data, users, purchased, catalogue, settings).toPandas()
    got = {
        u: list(zip(part["product_id"], part["reason_code"], strict=True))
        for u, part in lists.sort_values("rank").groupby("user_id")
    }
    # u1 (ALS): p0 bought -> out; p2 (a) first, p3 (b), then p5 (c: bought but repurchasable); one per category
    assert got["u1"] == [("p2", "als"), ("p3", "als"), ("p5", "als")]
    # u2: too little history -> popular in their category b first (p3, p4 tie on users: by index), then others
    assert got["u2"][0][1] == "fallback_category_popularity" and got["u2"][0][0] in ("p3", "p4")
    # u3: no history -> shop popularity
    assert {reason for _, reason in got["u3"]} == {"fallback_popularity"}
    assert "p1" not in set(lists["product_id"])  # inactive, and never interacted
    assert lists.sort_values("rank").groupby("user_id")["rank"].apply(list).to_dict() == {
        "u1": [1, 2, 3],
        "u2": [1, 2, 3],
        "u3": [1, 2, 3],
    }
