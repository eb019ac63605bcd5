"""Churn risk and value scores: hand-computed pieces, the short-history fallback, and the
learned model against the simulator's behaviour and a recency-only baseline."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from jobs.customers.scores import ScoreSettings, score_customers_frame
from models.churn import calibration_table, evaluate

AS_OF = date(2026, 10, 31)


def bought_frame(spark, rows):
    """rows: (user_id, days_before_as_of, amount)"""
    return spark.createDataFrame(
        [(u, 1000 + i, AS_OF - timedelta(days=d), float(a)) for i, (u, d, a) in enumerate(rows)],
        "user_id long, order_id long, order_date date, amount double",
    )


def test_evaluate_and_calibration_on_a_hand_computed_case():
    y = np.array([0, 0, 1, 1])
    assert evaluate(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(
        {"auc": 1.0, "brier": (0.01 + 0.04 + 0.04 + 0.01) / 4}
    )
    table = calibration_table(y, np.array([0.05, 0.15, 0.85, 0.95]), bins=2)
    assert table[["customers", "observed_rate"]].values.tolist() == [[2, 0.0], [2, 1.0]]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9])


def test_short_history_publishes_rule_based_fields_and_says_why(spark):
    rows = [(1, 90, 100), (1, 60, 100), (1, 30, 100), (2, 10, 50)]
    result = score_customers_frame(bought_frame(spark, rows), AS_OF, ScoreSettings())
    assert result.method == "rules" and "shorter than" in result.reason
    scores = result.scores.set_index("user_id")
    assert scores["churn_risk"].isna().all() and scores["churn_risk_band"].isna().all()
    # user 1 buys every 30 days: next order 30 days after the last one
    assert scores.loc[1, "expected_next_order_date"] == AS_OF
    # one-time buyer: the shop's median gap (30 days) is assumed
    assert scores.loc[2, "expected_next_order_date"] == AS_OF + timedelta(days=20)
    # one repeat buyer is too few for Gamma-Gamma: value is the shrunk purchase rate x the shrunk
    # order value. Exposure: user 1 91 days, user 2 11 days; the shop's rate 4 purchases / (102 / 365) years.
    shop_rate = 4 / (102 / 365)
    rate = (3 + shop_rate) / (91 / 365 + 1)
    value = (3 * 100 + 75) / 4  # the shop's median order value is 75 (100 and 50)
    assert scores.loc[1, "predicted_value_12m"] == pytest.approx(round(rate * value, 2))
    assert result.value["weight"] == 0.5 and result.value["amounts"].startswith("shrunk rate")


def test_predicted_value_stays_bounded_for_a_brand_new_big_spender_and_a_bursty_wholesaler():
    from jobs.customers.scores import expected_order_value, expected_purchases

    frame = pd.DataFrame({
        "user_id": [1, 2, 3], "frequency": [1, 10, 4], "order_count": [1, 10, 4],
        "tenure_days": [2, 30, 364], "avg_order_value": [11_000.0, 1_100.0, 300.0],
    })  # fmt: skip
    rate, value = expected_purchases(frame), expected_order_value(frame)
    shop_rate = 15 / ((3 + 31 + 365) / 365)
    assert rate[0] == pytest.approx((1 + shop_rate) / (3 / 365 + 1))  # not 365 / 60 days: about the shop's
    assert rate[1] < 1.2 * (10 + shop_rate)  # ten orders in a month is not 120 a year
    assert value[0] == pytest.approx((11_000 + 1_100) / 2)  # one large order is pulled to the median
    assert (rate * value)[0] < 20 * 11_000  # the 444,000 a 2-day-old customer once got is gone


def test_the_learned_churn_model_beats_recency_alone_on_the_simulated_shop(spark):
    from jobs.simulator import SimulationSpec, generate

    spec = SimulationSpec(days=300, users=8000, seed=5, dirt_rate=0.0)
    world = generate(spec)
    orders = world.orders[world.orders["final_status"].isin(["paid", "shipped", "completed"])]
    frame = pd.DataFrame(
        {
            "user_id": orders["user_id"].astype("int64"),
            "order_id": orders["order_id"].astype("int64"),
            "order_date": orders["created_at"].dt.tz_convert(spec.timezone).dt.date,
            "amount": orders["total_amount"].astype(float),
        }
    )
    as_of = spec.start_date + timedelta(days=spec.days - 1)
    result = score_customers_frame(spark.createDataFrame(frame), as_of)
    quality = {row["model"]: row for row in result.quality}
    assert result.method == "churn_model"
    assert set(quality) == {
        "churn_model",
        "recency_baseline",
        "frequency_baseline",
        "past_spend_baseline",
        "bgnbd_baseline",
    }
    assert all(quality["churn_model"]["auc"] >= row["auc"] for row in quality.values())
    assert quality["churn_model"]["auc"] > quality["recency_baseline"]["auc"]
    assert quality["churn_model"]["brier"] < quality["recency_baseline"]["brier"]
    assert quality["churn_model"]["auc"] > 0.65
    # calibrated: in every well-populated bin the prediction is near the observed rate
    populated = result.calibration[result.calibration["customers"] >= 50]
    assert (populated["mean_predicted"] - populated["observed_rate"]).abs().max() < 0.15
    scores = result.scores
    assert scores["churn_risk"].between(0, 1).all()
    assert set(scores["churn_risk_band"]) <= {"low", "medium", "high"}
    # customers the simulator made churn carry a higher risk than those it kept habitual
    truth = world.truth["users"].set_index("user_id")["trajectory"]
    risk = scores.set_index("user_id")["churn_risk"]
    by_trajectory = risk.groupby(truth.reindex(risk.index)).mean()
    assert by_trajectory["churned"] > by_trajectory["habitual"]


def test_predicted_value_hands_the_models_amounts_out_in_the_ranking_order():
    from jobs.customers.scores import choose_value_weight, predicted_value, value_ranking

    frame = pd.DataFrame({"user_id": [1, 2, 3, 4], "monetary": [900.0, 100.0, 500.0, 50.0], "frequency": [1, 8, 4, 2]})
    # spend alone: 0, 2, 1, 3; purchases alone: 1, 2, 0, 3 (best first)
    assert value_ranking(frame, 1.0).sort_values(ascending=False).index.tolist() == [0, 2, 1, 3]
    assert value_ranking(frame, 0.0).sort_values(ascending=False).index.tolist() == [1, 2, 3, 0]
    amounts = pd.Series([10.0, 40.0, 30.0, 20.0])
    value = predicted_value(frame, amounts, 1.0)
    assert value.tolist() == [40.0, 20.0, 30.0, 10.0] and value.sum() == amounts.sum()
    # the backtest decides the weight: here future spend follows purchases exactly
    train = frame.assign(future_spend=frame["frequency"] * 10.0)
    weight, by_weight = choose_value_weight(train)
    assert weight == 0.0 and by_weight[0.0] == 1.0 and by_weight[1.0] < 0
    # ties in the ranking and the amounts go by customer id, whatever the row order: 9 ranks
    # first and takes a 5; 3 and 7 tie in both, so the other 5 goes to the smaller id
    tied = pd.DataFrame({"user_id": [9, 7, 3], "monetary": [100.0, 10.0, 10.0], "frequency": [5, 1, 1]})
    amounts = {9: 1.0, 7: 5.0, 3: 5.0}
    for rows in (tied, tied.iloc[[2, 0, 1]]):
        given = predicted_value(rows, rows["user_id"].map(amounts).astype(float), 0.5)
        assert dict(zip(rows["user_id"], given, strict=True)) == {9: 5.0, 3: 5.0, 7: 1.0}
