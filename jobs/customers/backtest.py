"""``marketing evaluate-customers``: backtest the nightly customer scores on any order export.

The scores are computed exactly as the nightly stage does, from the orders on or before
``--as-of`` only (the churn model learns its own horizon, 90 days, by backtest); the outcome
is what each of those customers did in the ``--horizon-days`` after it, so the export must
reach that far. Beside the nightly scores stand the simple baselines every shop has and the
probabilistic model of repeat buying:

- ``recency``     fewer days since the last purchase ranks higher;
- ``frequency``   more purchases in the last 365 days;
- ``past_spend``  more spend in the last 365 days (its value: that spend per day observed of
                  them, times the horizon);
- ``bgnbd``       BG/NBD expected purchases in the horizon (purchase days as purchases),
                  times Gamma-Gamma's expected value per purchase for value.

The nightly value is measured over the horizon: the nightly amounts for those days, handed out
by the nightly ranking (its weight as chosen that night).

Measured per model: repurchase AUC (bought again in the horizon, against the score), value
Spearman (against the horizon's actual spend), and for the models that predict an amount the
predicted total against the actual total; and the nightly value by decile (customers,
predicted and actual mean). ``models.clv`` reports when BG/NBD fits at its no-dropout
boundary.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.errors import ConfigError, InputFileError
from jobs.platform.interface import PURCHASE_STATUSES


def outcomes(bought: DataFrame, as_of: date, horizon_days: int) -> DataFrame:
    """``user_id, bought_again, future_spend`` over ``(as_of, as_of + horizon]``."""
    end = as_of + timedelta(days=horizon_days)
    later = bought.where((F.col("order_date") > F.lit(as_of)) & (F.col("order_date") <= F.lit(end)))
    return later.groupBy("user_id").agg(F.lit(1).alias("bought_again"), F.sum("amount").alias("future_spend"))


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    keep = np.isfinite(score)
    if keep.sum() < 2 or len(np.unique(y[keep])) < 2:
        return None
    return round(float(roc_auc_score(y[keep], score[keep])), 4)


def _spearman(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    keep = np.isfinite(predicted)
    if keep.sum() < 3:
        return None
    return round(float(spearmanr(predicted[keep], actual[keep]).statistic), 4)


def bgnbd_predictions(summary: pd.DataFrame, horizon_days: int) -> tuple[pd.DataFrame, dict]:
    """(BG/NBD's expected purchases in the horizon per customer, the fit's parameters)."""
    from models.clv import BGNBD

    x, t_x, T = (summary[c].to_numpy(float) for c in ("x", "t_x", "T"))
    model = BGNBD().fit(x, t_x, T)
    fit = {
        "r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b,
        "at_boundary": model.at_boundary_, "log_likelihood": model.log_likelihood_,
    }  # fmt: skip
    purchases = model.expected_purchases(horizon_days, x, t_x, T)
    return pd.DataFrame({"user_id": summary["user_id"], "purchases": purchases}), {
        k: (round(v, 6) if isinstance(v, float) else v) for k, v in fit.items()
    }


def backtest(bought: DataFrame, as_of: date, horizon_days: int) -> dict:
    """Every model's repurchase AUC, value Spearman and total against what the customers with
    a purchase by ``as_of`` did in the next ``horizon_days`` (``bought``: ``user_id,
    order_date, amount`` of purchases)."""
    from jobs.customers.scores import (
        ScoreSettings,
        _to_pandas,
        customer_features,
        predicted_value,
        purchase_summary,
        score_customers_frame,
        value_amounts,
    )

    settings = ScoreSettings()  # the nightly's: its churn label horizon, whatever the backtest's
    past = bought.where(F.col("order_date") <= F.lit(as_of))
    nightly = score_customers_frame(past, as_of, settings)
    features = _to_pandas(customer_features(past, as_of), settings.default_gap_days)[
        ["user_id", "recency_days", "frequency", "monetary", "tenure_days", "avg_order_value", "order_count"]
    ]
    summary = purchase_summary(past, as_of).toPandas()
    truth = outcomes(bought, as_of, horizon_days).toPandas()
    frame = (
        features.merge(nightly.scores, on="user_id", how="left")
        .merge(summary, on="user_id", how="left")
        .merge(truth, on="user_id", how="left")
    )
    frame["bought_again"] = frame["bought_again"].fillna(0).astype(int)
    frame["future_spend"] = frame["future_spend"].fillna(0.0).astype(float)
    predictions, fit = bgnbd_predictions(frame[["user_id", "x", "t_x", "T", "m"]], horizon_days)
    frame = frame.merge(predictions, on="user_id")
    # BG/NBD x Gamma-Gamma over the horizon (the nightly's amounts, as the nightly fits them),
    # and the nightly value: those amounts handed out by its ranking
    frame["value"], _ = value_amounts(frame, past, as_of, horizon_days)
    frame["nightly_value"] = predicted_value(frame, frame["value"], nightly.value["weight"])
    # past spend as a rate: the last 365 days' spend over the days observed of them
    spend_rate = frame["monetary"].astype(float) / (frame["tenure_days"].astype(float).clip(upper=364) + 1)
    models = {
        # name: (repurchase score, value score, predicted amount or None)
        "nightly": (1 - frame["churn_risk"].astype(float), frame["nightly_value"], frame["nightly_value"]),
        "recency": (-frame["recency_days"].astype(float), -frame["recency_days"].astype(float), None),
        "frequency": (frame["frequency"].astype(float), frame["frequency"].astype(float), None),
        "past_spend": (frame["monetary"].astype(float), frame["monetary"].astype(float), spend_rate * horizon_days),
        "bgnbd": (frame["purchases"], frame["value"], frame["value"]),
    }  # fmt: skip
    y, actual = frame["bought_again"].to_numpy(), frame["future_spend"].to_numpy()
    actual_total = float(actual.sum())
    rows = []
    for name, (repurchase, value, amount) in models.items():
        row = {
            "model": name,
            "repurchase_auc": _auc(y, repurchase.to_numpy(float)),
            "value_spearman": _spearman(actual, value.to_numpy(float)),
        }
        if amount is not None:
            total = float(np.nansum(amount.to_numpy(float)))
            row |= {
                "predicted_total": round(total, 2),
                "total_ratio": round(total / actual_total, 4) if actual_total else None,
            }
        rows.append(row)
    predicted = frame["nightly_value"].to_numpy(float)
    deciles = pd.DataFrame({"predicted": predicted, "actual": actual}).dropna()
    deciles["decile"] = pd.qcut(deciles["predicted"].rank(method="first"), 10, labels=range(1, 11)).astype(int)
    by_decile = (
        deciles.groupby("decile")
        .agg(customers=("actual", "size"), predicted_mean=("predicted", "mean"), actual_mean=("actual", "mean"))
        .round(2)
        .reset_index()
    )
    return {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon_days,
        "customers": len(frame),
        "bought_again": int(y.sum()),
        "actual_total": round(actual_total, 2),
        "nightly_method": nightly.method,
        "nightly_note": nightly.reason,
        "nightly_value": nightly.value,
        "bgnbd_fit": fit,
        "models": rows,
        "value_by_decile": by_decile.to_dict(orient="records"),
    }


def evaluate_customers(config, orders_path: str, as_of: date, horizon_days: int, out_path: str | None = None) -> dict:
    """Read an order export (the ``score-customers`` format), backtest as of ``as_of``."""
    from jobs.customers.score_file import read_orders
    from jobs.platform.spark import get_spark

    if horizon_days < 1:
        raise ConfigError("--horizon-days must be at least 1")
    spark = get_spark(config)
    orders = read_orders(spark, Path(orders_path))
    counted = orders.where(F.col("status").isNull() | F.col("status").isin(*PURCHASE_STATUSES))
    bought = counted.select("user_id", F.to_date("order_ts").alias("order_date"), "amount").persist()
    first, last = bought.agg(F.min("order_date"), F.max("order_date")).first()
    end = as_of + timedelta(days=horizon_days)
    if last is None or last < end:
        raise InputFileError(
            f"--orders file {orders_path} ends on {last}: the outcome of --as-of {as_of} needs orders "
            f"to {end} (--horizon-days {horizon_days})"
        )
    if first > as_of:
        raise InputFileError(f"--orders file {orders_path} starts on {first}, after --as-of {as_of}: nothing to score")
    try:
        report = backtest(bought, as_of, horizon_days)
    finally:
        bought.unpersist()
    if out_path:
        Path(out_path).write_text(json.dumps(report, indent=2, default=str))
    return report
