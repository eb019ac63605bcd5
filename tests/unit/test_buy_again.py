"""The buy-again list on cases small enough to check by hand: each method's score, the due
date by the customer's own cadence (else the product's), the repeat-purchase truth and the
choice of method."""

from datetime import date, timedelta

import numpy as np
import pytest

from jobs.recommender.settings import load_recommender
from models.buy_again import Method, best, evaluate, repeats, scores, top

DAY0 = date(2026, 9, 1)


def days_frame(spark, rows):
    return spark.createDataFrame(
        [(user, item, DAY0 + timedelta(days=day)) for user, item, day in rows],
        "user_id string, item_id string, day date",
    )


@pytest.fixture(scope="module")
def history(spark):
    # a: x every 10 days (1, 11, 21), y once (20); b: y twice, 30 days apart (0, 30), z after the cut
    rows = [("a", "x", 1), ("a", "x", 11), ("a", "x", 21), ("a", "y", 20), ("b", "y", 0), ("b", "y", 30)]
    rows += [("a", "x", 30), ("a", "z", 28), ("b", "y", 29)]  # after day 25: the period measured
    return days_frame(spark, rows)


def by_pair(frame):
    return {(r.user_id, r.item_id): r for r in frame.collect()}


def test_each_method_scores_by_hand(history):
    as_of = DAY0 + timedelta(days=25)
    most = by_pair(scores(history, as_of, Method("most_bought")))
    assert {pair: r.score for pair, r in most.items()} == {("a", "x"): 3, ("a", "y"): 1, ("b", "y"): 1}
    decayed = by_pair(scores(history, as_of, Method("decayed", 10)))
    assert decayed[("a", "x")].score == pytest.approx(0.5**2.4 + 0.5**1.4 + 0.5**0.4)
    assert decayed[("a", "y")].score == pytest.approx(0.5**0.5)
    cadence = by_pair(scores(history, as_of, Method("cadence", 10), horizon_days=30))
    # x: own interval 10, bought 4 days ago: (4 + 15) / 10 = 1.9 -> due factor 1 / 1.9
    assert cadence[("a", "x")].score == pytest.approx(decayed[("a", "x")].score / 1.9)
    assert cadence[("a", "x")].due_date == DAY0 + timedelta(days=31)
    # y, bought once by a: the product's interval (b's only purchase before day 25 was day 0: no
    # gap yet, so the default of 90 days) -> (5 + 15) / 90
    assert cadence[("a", "y")].score == pytest.approx(decayed[("a", "y")].score * 20 / 90)
    assert cadence[("a", "y")].due_date == DAY0 + timedelta(days=20 + 90)
    with pytest.raises(ValueError, match="unknown buy-again method 'often'"):
        scores(history, as_of, Method("often"))


def test_the_products_interval_serves_customers_who_bought_once(history):
    # by day 40, b bought y on days 0, 29 and 30: b's mean gap (30 / 2 = 15) is y's median
    cadence = by_pair(scores(history, DAY0 + timedelta(days=40), Method("cadence", 10)))
    assert cadence[("a", "y")].due_date == DAY0 + timedelta(days=20 + 15)
    assert cadence[("b", "y")].due_date == DAY0 + timedelta(days=30 + 15)


def test_lists_rank_ties_by_recency_and_truth_is_repeat_purchases_only(history, spark):
    as_of, end = DAY0 + timedelta(days=25), DAY0 + timedelta(days=35)
    ranked = top(scores(history, as_of, Method("most_bought")), 5).toPandas().sort_values(["user_id", "rank"])
    assert ranked[["user_id", "item_id", "rank"]].values.tolist() == [["a", "x", 1], ["a", "y", 2], ["b", "y", 1]]
    truth = sorted(map(tuple, repeats(history, as_of, end).toPandas().values.tolist()))
    assert truth == [("a", "x"), ("b", "y")]  # z is new to a: no buy-again list can hold it
    measured = evaluate(history, as_of, end, [Method("most_bought"), Method("decayed", 10)], k=1)
    assert measured.users == 2 and measured.metrics["most_bought"]["ndcg@1"] == 1.0
    assert measured.per_user["decayed(10d)"].to_dict() == {"a": 1.0, "b": 1.0}
    # ties go to the first method given: the baseline
    assert best(measured, [Method("most_bought"), Method("decayed", 10)], 1) == Method("most_bought")


def test_the_configured_candidates_start_with_the_baseline():
    settings = load_recommender().buy_again
    candidates = settings.candidates()
    assert candidates[0] == Method("most_bought") and len(candidates) == 1 + 2 * len(settings.half_life_days)
    assert {c.name for c in candidates} >= {"decayed(90d)", "cadence(180d)"}
    with pytest.raises(ValueError, match="most_bought"):
        type(settings).model_validate({"methods": ["decayed"]})
    assert np.isfinite([c.half_life_days or 0 for c in candidates]).all()
