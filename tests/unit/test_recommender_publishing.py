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


def report(chosen: str, scores: dict, users: int = 500, low: float = 0.01) -> dict:
    """A competition report: each model's nDCG@10, the validation winner and its comparison
    with the strongest cheap baseline (``low``: the interval's lower end)."""
    baseline = max(("popularity", "item_knn"), key=lambda name: scores.get(name, -1))
    versus = None if chosen == baseline else {
        "model": chosen, "baseline": baseline, "users": users, "difference": scores[chosen] - scores[baseline],
        "low": low, "high": 2 * (scores[chosen] - scores[baseline]) - low, "confidence": 0.9,
    }  # fmt: skip
    return {"chosen": chosen, "versus_baseline": versus,
            "models": {name: {"metrics": {"ndcg@10": value}} for name, value in scores.items()}}  # fmt: skip


def test_the_gate_publishes_a_learned_model_only_on_evidence_else_the_strongest_cheap_baseline():
    scores = {"ease": 0.30, "als": 0.25, "popularity": 0.20, "item_knn": 0.22}
    published, passed, reason = gate(report("ease", scores), None, SETTINGS, 10)
    assert (published, passed) == ("ease", True) and "better on evidence" in reason
    # the interval reaches 0: item-kNN (the strongest cheap baseline) is published instead
    published, passed, reason = gate(report("ease", scores, low=-0.001), None, SETTINGS, 10)
    assert (published, passed) == ("item_knn", True) and "not shown better" in reason
    # too few users for evidence, however wide the gap
    published, passed, reason = gate(report("als", scores, users=SETTINGS.gate.min_eval_users - 1), None, SETTINGS, 10)
    assert (published, passed) == ("item_knn", True) and "min_eval_users" in reason
    # a cheap model best on validation is published as it is
    assert gate(report("popularity", scores), None, SETTINGS, 10)[:2] == ("popularity", True)


def test_the_gate_refuses_what_falls_too_far_below_the_live_model():
    scores = {"ease": 0.30, "popularity": 0.20, "item_knn": 0.22}
    live = {"version": "v1", "published_model": "als", "metrics": {"als": {"metrics": {"ndcg@10": 0.40}}}}
    published, passed, reason = gate(report("ease", scores), live, SETTINGS, 10)  # 25 % below the live model
    assert (published, passed) == ("ease", False) and "below the live model v1 (als 0.4000)" in reason
    # a record from before the competition names no published model: it was ALS
    older = {"version": "v0", "metrics": {"als": {"metrics": {"ndcg@10": 0.32}}}}
    assert gate(report("ease", scores), older, SETTINGS, 10)[1]  # within the 10 % tolerance


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

    name = "als"

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


@pytest.mark.parametrize("name", ["ease", "item_knn", "popularity"])
def test_every_model_of_the_competition_publishes_the_drivers_lists(spark, name):
    """Scored in the executors from each model's user and item sides, a warm user's list is
    the one the driver's scoring gives under the same rules."""
    from jobs.recommender.evaluation import model_maker
    from models.recommenders import top_n

    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"p{i}", 1.0) for u in range(12) for i in rng.choice(8, 4, replace=False)]
    frame = spark.createDataFrame(rows, "user_id string, item_id string, weight double")
    index = IdIndex(frame)
    data = index.interactions(frame.withColumn("last_day", frame.weight.cast("string").cast("date")))
    items = index.item_ids()
    catalogue = pd.DataFrame({"product_id": items, "category": ["a", "b"] * 4, "active": [True] * 7 + [False]})
    params = {"ease": {"l2": 2.0}, "item_knn": {"neighbours": 3}, "popularity": {"days": 30, "half_life_days": None}}
    model = model_maker(SETTINGS, 0)(name, params[name]).fit(data)
    settings = SETTINGS.model_copy(update={"publishing": SETTINGS.publishing.model_copy(update={
        "top_n": 3, "max_per_category": 2, "repurchasable_categories": (), "min_history_items": 3})})  # fmt: skip
    users = spark.createDataFrame([(f"u{u}",) for u in range(12)], "user_id string")
    owned = frame.select("user_id", "item_id")  # everything they had counts as bought
    lists = publish_lists(model, index, data, users, owned, catalogue, settings).toPandas()
    assert set(lists["reason_code"]) == {name}  # four items each: every user is warm
    codes = pd.Categorical(catalogue["category"]).codes
    expected = top_n(model.scores, np.arange(12), len(items), 3, data.to_csr(), catalogue["active"].to_numpy(),
                     np.asarray(codes), 2)  # fmt: skip
    want = expected.groupby("row")["column"].apply(lambda c: [items[i] for i in c]).to_dict()
    got = lists.sort_values("rank").groupby("user_id")["product_id"].apply(list).to_dict()
    assert got == {index.user_ids()[row]: products for row, products in want.items()}
