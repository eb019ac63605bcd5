"""Recommender building blocks on cases small enough to check by hand: interaction weights,
splits, top-N filters, baselines, the tuner's search plan, and ALS on planted tastes."""

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from jobs.platform.daily import user_item_days
from jobs.recommender.evaluation import model_maker
from jobs.recommender.interactions import (
    IdIndex,
    event_signals,
    held_out,
    pairs,
    purchase_signals,
    random_split,
    temporal_split,
)
from jobs.recommender.settings import load_recommender
from models.recommenders import (
    AlsRecommender,
    EaseRecommender,
    Interactions,
    ItemKnnRecommender,
    ModelTooLarge,
    PopularityRecommender,
    candidate_params,
    recommend,
    similar_items,
    top_n,
    top_n_spark,
    tune,
)

SETTINGS = load_recommender()
DAY = datetime(2026, 10, 1, 12)


def test_event_signals_weigh_by_type_and_cap_bursts_per_day(spark):
    rows = [(1, 10, "product_view", DAY + timedelta(minutes=m)) for m in range(9)]  # 9 views, capped at 5
    rows += [(1, 10, "add_to_cart", DAY), (1, 10, "page_view", DAY), (None, 10, "add_to_cart", DAY)]
    events = spark.createDataFrame(
        [(*row, row[-1].date()) for row in rows],
        "user_id long, product_id long, event_type string, event_at timestamp, event_date date",
    )
    got = event_signals(user_item_days(events), {"product_view": 1.0, "add_to_cart": 3.0}, max_per_day=5)
    assert sorted(r["weight"] for r in got.collect()) == [3.0, 5.0]  # anonymous and untyped events carry nothing


def test_purchase_signals_follow_the_order_status(spark):
    items = spark.createDataFrame([(1, 10, 1), (2, 11, 3), (3, 12, 1)], "order_id long, product_id long, quantity int")
    orders = spark.createDataFrame(
        [(1, 7, "completed", DAY), (2, 7, "cancelled", DAY), (3, 7, "refunded", DAY)],
        "order_id long, user_id long, status string, created_at timestamp",
    )
    weights = SETTINGS.interactions.purchase_weights
    got = {r["item_id"]: r["weight"] for r in purchase_signals(items, orders, weights).collect()}
    assert got == {10: weights["completed"], 11: weights["cancelled"]}  # refunded lines are dropped


def test_pairs_decay_with_the_half_life_and_cap(spark):
    signals = spark.createDataFrame(
        [(1, 10, DAY, 4.0), (1, 10, DAY - timedelta(days=30), 4.0), (2, 10, DAY, 100.0)],
        "user_id long, item_id long, ts timestamp, weight double",
    )
    got = {r["user_id"]: r["weight"] for r in pairs(signals, DAY.date(), 30, 50).collect()}
    assert got == {1: pytest.approx(4 + 2), 2: 50.0}


def test_splits_hold_out_without_leaking(spark):
    rows = [(u, i, DAY + timedelta(days=i), 1.0) for u in range(1, 21) for i in range(u % 5 + 1)]
    signals = spark.createDataFrame(rows, "user_id long, item_id long, ts timestamp, weight double")
    train, test = temporal_split(signals, DAY.date() + timedelta(days=2))
    assert train.count() + test.count() == len(rows)
    assert test.agg({"ts": "min"}).first()[0] > DAY + timedelta(days=2)

    all_pairs = pairs(signals, None, None, None)
    train, test = random_split(all_pairs, 0.25, seed=3)
    again_train, _ = random_split(all_pairs.repartition(7), 0.25, seed=3)
    train_rows = {(r.user_id, r.item_id) for r in train.collect()}
    assert train_rows == {(r.user_id, r.item_id) for r in again_train.collect()}  # same split, any partitioning
    test_rows = {(r.user_id, r.item_id) for r in test.collect()}
    assert not train_rows & test_rows and len(train_rows) + len(test_rows) == all_pairs.count()
    per_user = pd.DataFrame(list(test_rows), columns=["u", "i"]).groupby("u").size()
    sizes = all_pairs.groupBy("user_id").count().toPandas().set_index("user_id")["count"]
    assert (sizes[sizes == 1].index.isin(per_user.index)).sum() == 0  # a single item always trains
    assert all(per_user[u] == max(1, round(0.25 * sizes[u])) for u in per_user.index)
    assert held_out(all_pairs, all_pairs).count() == 0


def test_top_n_excludes_seen_and_disallowed_items_and_caps_categories():
    scores = np.array([[9, 8, 7, 6, 5, 4], [1, 2, 3, 4, 5, 6]], dtype=np.float32)
    seen = sp.csr_matrix(([1.0], ([0], [0])), shape=(2, 6))
    allowed = np.array([True, True, True, True, False, True])
    categories = np.array(["a", "a", "a", "b", "b", "c"])
    got = top_n(
        lambda rows: scores[rows],
        np.array([0, 1]),
        6,
        3,
        exclude=seen,
        allowed=allowed,
        categories=categories,
        per_category=1,
    )
    lists = got.groupby("row")["column"].apply(list).to_dict()
    assert lists == {0: [1, 3, 5], 1: [5, 3, 2]}  # row 0: item 0 seen, one per category; item 4 inactive
    assert got.groupby("row")["rank"].apply(list).to_dict() == {0: [1, 2, 3], 1: [1, 2, 3]}


def test_top_n_scores_in_blocks_with_the_same_result(monkeypatch):
    import models.recommenders as r

    rng = np.random.default_rng(0)
    scores = rng.random((50, 40)).astype(np.float32)
    whole = top_n(lambda rows: scores[rows], np.arange(50), 40, 5)
    monkeypatch.setattr(r, "SCORE_CELLS_PER_BLOCK", 80)  # two rows per block
    blocked = top_n(lambda rows: scores[rows], np.arange(50), 40, 5)
    pd.testing.assert_frame_equal(whole, blocked)


def test_scoring_in_spark_gives_the_drivers_lists(spark):
    """Every user of several partitions and Arrow batches: the same lists, ranks and scores as
    scoring on the driver, with exclusions, inactive items and a per-category cap."""
    rng = np.random.default_rng(1)
    users, items, n = 700, 60, 6
    user_vectors = rng.normal(size=(users, 4)).astype(np.float32)
    item_vectors = rng.normal(size=(items, 4)).astype(np.float32)
    exclude = [sorted(rng.choice(items, rng.integers(0, 5), replace=False).tolist()) or None for _ in range(users)]
    allowed = rng.random(items) > 0.1
    categories = rng.integers(0, 5, items)
    rows = spark.createDataFrame(
        pd.DataFrame({"user_id": [f"u{k}" for k in range(users)], "k": np.arange(users), "exclude": exclude})
    ).repartition(3)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
    try:
        got = top_n_spark(
            rows, lambda batch: user_vectors[batch["k"].to_numpy()], item_vectors, n, "user_id", allowed, categories, 2
        ).toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    mask = sp.lil_matrix((users, items), dtype=np.float32)
    for row, columns in enumerate(exclude):
        for column in columns or []:
            mask[row, column] = 1
    expected = top_n(
        lambda r: user_vectors[r] @ item_vectors.T, np.arange(users), items, n, mask.tocsr(), allowed, categories, 2
    )
    expected["user_id"] = [f"u{k}" for k in expected["row"]]
    key = ["user_id", "rank"]
    got, expected = got.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True)
    assert len(got) == users * n and got["column"].tolist() == expected["column"].tolist()
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-6)


def test_similar_items_are_the_nearest_factors(spark):
    factors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0, 0]], dtype=np.float32)
    got = similar_items(spark, factors, 1).toPandas()
    assert dict(zip(got["i"], got["similar_i"], strict=True)) == {0: 1, 1: 0, 2: 3, 3: 2}  # item 4 has no factors


def interactions(spark, rows, n_users, n_items):
    frame = spark.createDataFrame(rows, "u int, i int, weight double, last_day date")
    return Interactions(frame, n_users, n_items)


def test_popularity_counts_recent_users_and_item_knn_follows_co_occurrence(spark):
    recent, old = date(2026, 10, 1), date(2026, 7, 1)
    rows = [
        (0, 0, 1.0, recent),
        (1, 0, 1.0, recent),
        (2, 1, 1.0, recent),
        (0, 2, 1.0, old),
        (1, 2, 1.0, old),
        (2, 2, 1.0, old),
    ]
    data = interactions(spark, rows, 3, 3)
    popularity = PopularityRecommender(days=30).fit(data)
    assert popularity.popularity.tolist() == [2, 1, 0]  # item 2 was popular long ago
    knn = ItemKnnRecommender(neighbours=5).fit(data)
    # user 0 has items 0 and 2; item 1 shares no user with item 0 and user 2 with item 2:
    # cosine(1, 2) = 1 / sqrt(1 x 3)
    recs = recommend(knn, np.array([0]), data, 2)
    assert recs["i"].tolist() == [1] and recs["score"].iloc[0] == pytest.approx(1 / np.sqrt(3))


def test_candidate_params_start_with_the_default_and_are_distinct_and_seeded():
    plan = candidate_params(SETTINGS.tuning)
    assert plan[0] == SETTINGS.tuning.default and len(plan) == SETTINGS.tuning.max_trials
    assert len({p.model_dump_json() for p in plan}) == len(plan)
    assert plan == candidate_params(SETTINGS.tuning)


@pytest.mark.parametrize("iterations", [10, 30])
def test_als_recovers_planted_tastes(spark, iterations):
    """Users of cluster c interact only with items of cluster c: the top recommendation of
    almost every user comes from their own cluster (chance: 1 in 4). 30 iterations need the
    checkpoints that cut ALS's lineage (without them the JVM stack overflows)."""
    rng = np.random.default_rng(1)
    clusters, per_cluster, users = 4, 10, 80
    rows = []
    for user in range(users):
        cluster = user % clusters
        for item in rng.choice(per_cluster, 5, replace=False):
            rows.append((user, int(cluster * per_cluster + item), 1.0, date(2026, 10, 1)))
    data = interactions(spark, rows, users, clusters * per_cluster)
    params = SETTINGS.tuning.default.model_copy(update={"rank": 8, "max_iter": iterations})
    model = AlsRecommender(params, seed=0).fit(data)
    recs = recommend(model, np.arange(users), data, 1)
    same = (recs["i"] // per_cluster == recs["u"] % clusters).mean()
    assert same > 0.9, same


def test_id_index_maps_any_ids_densely(spark):
    frame = spark.createDataFrame(
        [("b", "x", 1.0), ("a", "y", 2.0), ("a", "x", 1.0)], "user_id string, item_id string, weight double"
    )
    index = IdIndex(frame)
    assert index.user_ids().tolist() == ["a", "b"] and index.item_ids().tolist() == ["x", "y"]
    assert sorted((r.u, r.i) for r in index.indexed(frame).collect()) == [(0, 0), (0, 1), (1, 0)]


def test_ease_is_the_closed_form_of_its_constrained_ridge_regression(spark):
    """B minimises ||X - XB||^2 + l2 ||B||^2 with a zero diagonal: its stationarity condition
    is (X'X + l2 I) B - X'X = -diag(m) for some m, so off the diagonal that product is 0."""
    rng = np.random.default_rng(3)
    dense = (rng.random((30, 6)) < 0.4).astype(float)
    rows = [(int(u), int(i), 2.0, date(2026, 10, 1)) for u, i in zip(*np.nonzero(dense), strict=True)]
    model = EaseRecommender(l2=5.0).fit(interactions(spark, rows, 30, 6))
    weights = model.weights.astype(float)
    assert np.allclose(np.diag(weights), 0.0)
    gram = dense.T @ dense  # binary: the weight of 2 does not count
    residual = (gram + 5.0 * np.eye(6)) @ weights - gram
    off_diagonal = residual[~np.eye(6, dtype=bool)]
    assert np.allclose(off_diagonal, 0.0, atol=1e-4), residual
    # the scores are the history rows times B
    assert np.allclose(model.scores(np.array([0, 1])), dense[[0, 1]] @ weights, atol=1e-5)


def test_ease_recommends_what_co_occurs_and_refuses_a_catalogue_too_large(spark):
    # items 0 and 1 are bought together, 2 and 3 together; user 0 has only item 0
    rows = [(u, i, 1.0, date(2026, 10, 1)) for u in range(1, 9) for i in ((0, 1) if u % 2 else (2, 3))]
    data = interactions(spark, rows + [(0, 0, 1.0, date(2026, 10, 1))], 9, 4)
    recs = recommend(EaseRecommender(l2=1.0).fit(data), np.array([0]), data, 1)
    assert recs["i"].tolist() == [1]
    with pytest.raises(ModelTooLarge, match="4 items > max_items 3"):
        EaseRecommender(max_items=3).fit(data)


def test_recent_popularity_weighs_by_half_life(spark):
    today = date(2026, 10, 1)
    rows = [(0, 0, 1.0, today), (1, 1, 1.0, today - timedelta(days=7)), (2, 1, 1.0, today - timedelta(days=7))]
    data = interactions(spark, rows, 3, 2)
    assert PopularityRecommender(days=30).fit(data).popularity.tolist() == [1, 2]
    assert PopularityRecommender(days=30, half_life_days=7).fit(data).popularity.tolist() == [1, 1]  # 2 x 0.5
    assert PopularityRecommender(days=5).fit(data).popularity.tolist() == [1, 0]


def test_the_competition_keeps_each_models_best_and_skips_what_cannot_fit(spark):
    # two tastes, items 0-4 and 5-9; each user holds out one item of their taste for validation
    rng = np.random.default_rng(5)
    rows, held = [], []
    for user in range(40):
        taste = (user % 2) * 5
        items = rng.permutation(5)[:4] + taste
        rows += [(user, int(i), 1.0, date(2026, 10, 1)) for i in items[:3]]
        held.append((user, int(items[3])))
    # item 9 is popular with the second taste only: popularity cannot be personal
    data = interactions(spark, rows, 40, 10)
    validation = pd.DataFrame(held, columns=["u", "i"])
    plan = [("popularity", {"days": 30, "half_life_days": None}), ("ease", {"l2": 1.0}), ("ease", {"l2": 100.0}),
            ("item_knn", {"neighbours": 5})]  # fmt: skip
    make = model_maker(SETTINGS.model_copy(update={"competition": SETTINGS.competition.model_copy(
        update={"ease_max_items": 10})}), 0)  # fmt: skip
    result = tune(data, validation, 3, plan, make)
    assert set(result.best) == {"popularity", "ease", "item_knn"} and len(result.trials) == 4
    scores = {(t["model"], t.get("l2")): t["ndcg@3"] for t in result.trials}
    assert result.best["ease"]["l2"] == max((1.0, 100.0), key=lambda l2: scores[("ease", l2)])
    assert result.winner != "popularity"  # tastes are personal
    small = model_maker(SETTINGS.model_copy(update={"competition": SETTINGS.competition.model_copy(
        update={"ease_max_items": 5})}), 0)  # fmt: skip
    skipped = tune(data, validation, 3, plan, small)
    assert "ease" not in skipped.best and sum("max_items 5" in t.get("skipped", "") for t in skipped.trials) == 2


def test_paired_bootstrap_interval():
    from models.rec_metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    better = rng.normal(0.05, 0.1, 2000)
    mean, low, high = paired_bootstrap(better, samples=500, confidence=0.9, seed=1)
    assert low > 0.04 and high < 0.06 and low < mean < high
    noise = rng.normal(0.0, 0.1, 2000)
    assert paired_bootstrap(noise, 500, 0.9, 1)[1] < 0 < paired_bootstrap(noise, 500, 0.9, 1)[2]
    assert paired_bootstrap(noise, 500, 0.9, 1) == paired_bootstrap(noise, 500, 0.9, 1)  # seeded
    assert paired_bootstrap(np.array([]), 500) == (0.0, 0.0, 0.0)
