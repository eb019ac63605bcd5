"""``top`` / ``bottom`` in the condition language: thresholds relative to the shop (the best fifth
of predicted values) instead of constants in one shop's currency; pandas (audiences) and Spark
(tags) agree, nulls never qualify, and a bad share is a one-line error."""

from __future__ import annotations

import pandas as pd
import pytest

from jobs.customers.tags import condition
from jobs.platform.conditions import check_condition, mask

VALUES = [5.0, 50.0, None, 500.0, 50.0, 1.0, 9.0, None, 120.0, 7.0]  # 8 present


def test_top_and_bottom_keep_a_share_of_the_present_values_in_pandas_and_spark(spark):
    frame = pd.DataFrame({"user_id": range(len(VALUES)), "value": VALUES})
    kinds = {"value": "number"}
    for when, expected in (
        ({"value": {"top": 0.25}}, {3, 8}),  # 2 of 8
        ({"value": {"top": 0.5}}, {1, 3, 4, 8}),  # the tie at 50 is in
        ({"value": {"bottom": 0.25}}, {0, 5}),
        ({"value": {"top": 0.5, "lt": 200}}, {1, 4, 8}),
    ):
        assert set(frame.loc[mask(frame, when, kinds), "user_id"]) == expected, when
        rows = spark.createDataFrame(frame.astype(object).where(frame.notna(), None), "user_id long, value double")
        got = {r["user_id"] for r in rows.withColumn("ok", condition(when)).where("ok").collect()}
        assert got == expected, when


@pytest.mark.parametrize("value", [0, 1.5, True, "20%"])
def test_a_share_outside_0_to_1_is_refused(value):
    with pytest.raises(ValueError, match="value: top needs a share of the customers, above 0 and at most 1"):
        check_condition({"value": {"top": value}}, {"value": "number"})
