"""``marketing evaluate-customers`` on a shop whose future is known by construction: regular
customers keep buying every 10 days, one-off customers never come back. Every ranking that
sees frequency or spend separates them perfectly, past spend predicts the horizon's total,
and bad arguments get one line."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

pytestmark = pytest.mark.integration
AS_OF = date(2026, 6, 30)


def shop_orders() -> pd.DataFrame:
    rows = []
    for user in range(1, 301):
        if user % 2:  # regular: every 10 days from 300 days before the cut to 60 days after, 50 each
            days = range(-300, 61, 10)
            amount = 50.0
        else:  # one-off: one order somewhere in the history, never again
            days = [-((user * 7) % 280) - 5]
            amount = 20.0 + user % 30
        rows += [(user, f"o{user}-{day}", AS_OF + timedelta(days=day), amount) for day in days]
    frame = pd.DataFrame(rows, columns=["user_id", "order_id", "day", "amount"])
    frame["order_ts"] = pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d 12:00:00")
    return frame[["user_id", "order_id", "order_ts", "amount"]]


@pytest.fixture(scope="module")
def report(tmp_path_factory, spark):
    from jobs.cli.main import main

    folder = tmp_path_factory.mktemp("evaluate_customers")
    shop_orders().to_csv(folder / "orders.csv", index=False)
    code = main(["evaluate-customers", "--orders", str(folder / "orders.csv"), "--as-of", AS_OF.isoformat(),
                 "--horizon-days", "60", "--out", str(folder / "report.json")])  # fmt: skip
    assert code == 0
    return json.loads((folder / "report.json").read_text()), folder


def test_every_model_is_measured_beside_the_baselines(report):
    result, _ = report
    assert result["customers"] == 300 and result["bought_again"] == 150
    models = {row["model"]: row for row in result["models"]}
    assert set(models) == {"nightly", "recency", "frequency", "past_spend", "bgnbd"}
    assert result["nightly_method"] in ("churn_model", "recency_baseline")  # learnt, not rules
    for name in ("nightly", "frequency", "past_spend", "bgnbd"):
        assert models[name]["repurchase_auc"] == 1.0, models[name]
    # past spend as a rate over the days observed (a regular: 1,550 over 301 days), times 60 days;
    # the next 60 days bring each regular 6 orders of 50
    orders = shop_orders().assign(day=lambda f: pd.to_datetime(f["order_ts"]).dt.date)
    past = orders[orders["day"] <= AS_OF].groupby("user_id").agg(spend=("amount", "sum"), first=("day", "min"))
    observed = past["first"].map(lambda first: min((AS_OF - first).days, 364) + 1)
    assert result["actual_total"] == 150 * 300
    expected = (past["spend"] / observed * 60).sum() / result["actual_total"]
    assert models["past_spend"]["total_ratio"] == pytest.approx(expected, abs=1e-3)
    assert models["bgnbd"]["predicted_total"] > 0 and "at_boundary" in result["bgnbd_fit"]
    deciles = pd.DataFrame(result["value_by_decile"])
    assert deciles["decile"].tolist() == list(range(1, 11)) and deciles["customers"].sum() == 300
    # the top half of predicted value is the regulars: all the actual spend is there
    assert deciles.loc[deciles["decile"] <= 5, "actual_mean"].sum() == 0


@pytest.mark.parametrize(
    "as_of, horizon, message",
    [
        ("2026-08-15", "60", "ends on 2026-08-29: the outcome of --as-of 2026-08-15 needs orders to 2026-10-14"),
        ("2025-01-01", "30", "starts on 2025-09-03, after --as-of 2025-01-01"),
    ],
)
def test_a_horizon_the_export_does_not_cover_is_one_line(report, capsys, as_of, horizon, message):
    from jobs.cli.main import main

    _, folder = report
    code = main(["evaluate-customers", "--orders", str(folder / "orders.csv"), "--as-of", as_of,
                 "--horizon-days", horizon])  # fmt: skip
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0], stderr[-2000:]


def test_a_horizon_of_zero_days_is_refused_by_the_arguments(capsys):
    from jobs.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["evaluate-customers", "--orders", "x.csv", "--as-of", "2026-06-30", "--horizon-days", "0"])
    assert exit_.value.code == 2 and "--horizon-days: must be positive: 0" in capsys.readouterr().err
