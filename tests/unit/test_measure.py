"""Measurement of one cohort from per-customer orders (no warehouse): the window, zeros for
customers without orders, the pre-period covariate, and a broken split reported as invalid."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from jobs.activation.campaigns_config import CampaignsConfig
from jobs.activation.measure import cohort_results, per_customer

C = date(2026, 5, 1)
SETTINGS = CampaignsConfig.model_validate({"campaigns": []})


def test_per_customer_counts_only_the_window_and_fills_zeros():
    members = pd.DataFrame({"user_id": [1, 2, 3], "arm": ["target", "target", "control"]})
    orders = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3],
            "order_date": [
                C,
                C + timedelta(days=1),
                C + timedelta(days=8),
                C - timedelta(days=5),
                C + timedelta(days=7),
            ],
            "total_amount": [10.0, 20.0, 40.0, 5.0, 7.0],
        }
    )
    frame = per_customer(members, orders, C, window_days=7, pre_period_days=30).set_index("user_id")
    # the contact day itself belongs to the pre-period; day 8 is after the window
    assert frame.loc[1, ["orders", "revenue", "pre_revenue"]].tolist() == [1, 20.0, 10.0]
    assert frame.loc[2, ["orders", "revenue", "pre_revenue"]].tolist() == [0, 0.0, 5.0]
    assert frame.loc[3, ["orders", "revenue", "pre_revenue"]].tolist() == [1, 7.0, 0.0]


def _cohort(n: int, control_share: float, effect: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n) < control_share, "control", "target")
    pre = rng.gamma(0.5, 60, n) * (rng.random(n) < 0.4)
    buys = rng.random(n) < np.where(arm == "target", 0.10 * (1 + effect), 0.10)
    orders = buys * rng.integers(1, 3, n)
    revenue = orders * rng.gamma(2, 40, n) + 0.3 * pre * buys
    return pd.DataFrame({"user_id": np.arange(n), "arm": arm, "orders": orders, "revenue": revenue, "pre_revenue": pre})


def test_a_cohort_gets_every_metric_with_intervals_around_a_planted_lift():
    rows = {(r["metric"], r["adjustment"]): r for r in cohort_results(_cohort(40_000, 0.1, 0.3, 1), 0.1, SETTINGS)}
    assert set(rows) == {
        ("conversion_rate", "none"), ("orders_per_customer", "none"), ("revenue_per_customer", "none"),
        ("revenue_per_customer", "cuped"), ("average_order_value", "none"),
    }  # fmt: skip
    conversion = rows[("conversion_rate", "none")]
    assert conversion["is_valid"] and not conversion["is_srm_mismatch"]
    assert conversion["rel_ci_low"] < 0.3 < conversion["rel_ci_high"] and conversion["rel_ci_low"] > 0
    revenue, cuped = rows[("revenue_per_customer", "none")], rows[("revenue_per_customer", "cuped")]
    assert cuped["abs_ci_high"] - cuped["abs_ci_low"] < revenue["abs_ci_high"] - revenue["abs_ci_low"]
    assert revenue["incremental_value"] > 0 and "capped at" in revenue["note"]
    assert "incremental_value" not in rows[("average_order_value", "none")]  # a ratio has no total


def test_a_broken_split_is_flagged_and_its_lift_is_invalid():
    frame = _cohort(20_000, 0.2, 0.0, 2)  # 20% in control where 10% was configured
    rows = cohort_results(frame, 0.1, SETTINGS)
    assert all(r["is_srm_mismatch"] and not r["is_valid"] for r in rows)
    assert "sample ratio mismatch" in rows[0]["note"]


def test_an_arm_too_small_to_measure_gives_one_invalid_row():
    frame = _cohort(20, 0.1, 0.0, 3).assign(arm=["control"] + ["target"] * 19)
    (row,) = cohort_results(frame, 0.1, SETTINGS)
    assert not row["is_valid"] and "fewer than 2" in row["note"]
