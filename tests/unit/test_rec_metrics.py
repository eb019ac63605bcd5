"""Recommendation metrics against values computed by hand (see the comments)."""

import math

import pandas as pd
import pytest

from models import rec_metrics as m

# user 1: A B C D, relevant {B, D, X}; user 2: E F, relevant {E}; user 3: nothing, relevant {A}
RECS = pd.DataFrame(
    [(1, 1, "A"), (1, 2, "B"), (1, 3, "C"), (1, 4, "D"), (2, 1, "E"), (2, 2, "F")],
    columns=["user_id", "rank", "item_id"],
)
TRUTH = pd.DataFrame([(1, "B"), (1, "D"), (1, "X"), (2, "E"), (3, "A")], columns=["user_id", "item_id"])
K = 3
LOG3 = 1 / math.log2(3)


def test_precision_recall_and_hit_rate():
    assert m.precision_at_k(RECS, TRUTH, K).to_dict() == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 0.0})
    assert m.recall_at_k(RECS, TRUTH, K).to_dict() == pytest.approx({1: 1 / 3, 2: 1.0, 3: 0.0})
    assert m.hit_rate_at_k(RECS, TRUTH, K).to_dict() == {1: 1.0, 2: 1.0, 3: 0.0}


def test_ndcg_discounts_by_rank_against_the_ideal_list():
    # user 1: one hit at rank 2 -> 1/log2(3); ideal: 3 hits -> 1 + 1/log2(3) + 1/2
    expected = {1: LOG3 / (1 + LOG3 + 0.5), 2: 1.0, 3: 0.0}
    assert m.ndcg_at_k(RECS, TRUTH, K).to_dict() == pytest.approx(expected)


def test_average_precision_divides_by_the_reachable_number_of_hits():
    # user 1: precision at the hit's rank 2 is 1/2, over min(3, 3) relevant
    assert m.average_precision_at_k(RECS, TRUTH, K).to_dict() == pytest.approx({1: 1 / 6, 2: 1.0, 3: 0.0})
    two_hits = pd.DataFrame([(1, 1, "B"), (1, 2, "A"), (1, 3, "D")], columns=["user_id", "rank", "item_id"])
    # hits at ranks 1 and 3: (1/1 + 2/3) / min(3, 3)
    assert m.average_precision_at_k(two_hits, TRUTH[TRUTH.user_id == 1], K)[1] == pytest.approx((1 + 2 / 3) / 3)


def test_only_the_top_k_count():
    assert m.recall_at_k(RECS, TRUTH, 4)[1] == pytest.approx(2 / 3)  # D at rank 4 now counts
    assert m.recall_at_k(RECS, TRUTH, 1)[1] == 0.0


def test_beyond_accuracy_metrics():
    categories = pd.Series({"A": "x", "B": "x", "C": "y", "D": "y", "E": "y", "F": "y"})
    train = pd.DataFrame(
        [("u1", "A"), ("u2", "A"), ("u1", "B"), ("u1", "C"), ("u2", "C"), ("u3", "C"), ("u4", "C"), ("u4", "E")],
        columns=["user_id", "item_id"],
    )
    popularity = m.item_popularity(train)  # A .5, B .25, C 1, E .25 (4 users)
    top = RECS[RECS["user_id"].isin([1, 2])]
    assert m.catalogue_coverage(top, 10, K) == 0.5  # A B C E F of 10
    # user 1: pairs AB (same), AC, BC -> 2/3 differ; user 2: EF same -> 0
    assert m.intra_list_diversity(top, categories, K) == pytest.approx(1 / 3)
    # -log2 p: A 1, B 2, C 0, E 2, F unseen -> 1/4 -> 2
    assert m.novelty(top, popularity, 4, K) == pytest.approx(7 / 5)
    assert m.popularity_bias(top, popularity, K) == pytest.approx((0.5 + 0.25 + 1 + 0.25 + 0) / 5)


def test_evaluate_reports_every_metric_overall_and_per_user_group():
    train = pd.DataFrame([(1, "A"), (2, "B"), (3, "C")], columns=["user_id", "item_id"])
    rows = m.evaluate(
        RECS, TRUTH, train, K, catalogue_size=6, groups={"tenure": pd.Series({1: "returning", 2: "new", 3: "new"})}
    )
    overall = {r["metric"]: r["value"] for r in rows if r["group"] == "all"}
    assert overall["precision@3"] == pytest.approx(2 / 9)
    assert overall["recall@3"] == pytest.approx((1 / 3 + 1) / 3)
    assert overall["hit_rate@3"] == pytest.approx(2 / 3)
    assert {"coverage@3", "novelty@3", "popularity_bias@3", "ndcg@3", "map@3"} <= set(overall)
    new = {r["metric"]: (r["value"], r["users"]) for r in rows if r["group"] == "tenure=new"}
    assert new["recall@3"] == (pytest.approx(0.5), 2)
