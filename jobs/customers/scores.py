"""Predictive customer scores: churn risk (learned nightly by backtest), expected next order
date and predicted 12-month value.

Features per customer are computed in Spark from purchases (bounded: one row per customer)
and handed to scikit-learn. The model learns from the shop's own history: features as of
``D - horizon`` and the label "no purchase in the following ``horizon`` days". Customers are
split 70/30 to measure the model against one-feature baselines (recency, frequency, past
spend, BG/NBD expected purchases; AUC, Brier score, calibration); the best, refit on all
customers, scores everybody as of D. When
the history is too short (or too few customers), the stage says so and publishes only the
rule-based fields (``method = 'rules'``).

- ``expected_next_order_date`` = last purchase + the customer's median gap (the shop's median
  gap for one-time buyers);
- ``predicted_value_12m``: the spend expected in the next 365 days. The amounts are BG/NBD's
  expected purchases times Gamma-Gamma's expected spend per purchase (``models/clv.py``,
  fitted nightly on the histories up to D; with too few repeat buyers, a purchase rate and an
  order value both shrunk towards the shop's); who gets which amount is decided by a ranking
  that blends the percentiles of the last year's spend and purchases, with the weight that
  ranked the backtest's next-90-day spend best (:func:`predicted_value`). On real shops past
  spend alone, and BG/NBD x Gamma-Gamma alone, rank future spend worse than the blend.
  Returned orders are no purchases and returns reduce order values (the published reader
  applies credit notes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.interface import PURCHASE_STATUSES

log = logging.getLogger(__name__)
PRIOR_YEARS = 1.0  # prior exposure, in customer-years at the shop's purchase rate
PRIOR_ORDERS = 1.0  # prior orders at the shop's median order value
VALUE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # of past spend against purchases in the value ranking


@dataclass(frozen=True)
class ScoreSettings:
    horizon_days: int = 90
    min_history_days: int = 180  # horizon + at least 90 days of behaviour before the cutoff
    min_customers: int = 200
    min_per_class: int = 20
    low_below: float = 0.4
    high_from: float = 0.7
    default_gap_days: int = 60
    random_state: int = 0


@dataclass
class ScoreResult:
    scores: pd.DataFrame
    method: str
    reason: str
    quality: list[dict] = field(default_factory=list)
    calibration: pd.DataFrame | None = None
    value: dict = field(default_factory=dict)  # how predicted value was made: ranking weight, amounts


def customer_features(bought: DataFrame, as_of: date) -> DataFrame:
    """One row per customer with a purchase by ``as_of``; see models.churn.FEATURES."""
    from jobs.customers.segments import purchase_gaps

    history = bought.where(F.col("order_date") <= F.lit(as_of))
    gap_stats = purchase_gaps(history).select("user_id", "typical_gap_days")
    since = F.datediff(F.lit(as_of), F.col("order_date"))
    per_user = history.groupBy("user_id").agg(
        F.max("order_date").alias("last_order_date"),
        F.datediff(F.lit(as_of), F.max("order_date")).alias("recency_days"),
        F.datediff(F.lit(as_of), F.min("order_date")).alias("tenure_days"),
        F.count("*").alias("order_count"),
        F.count(F.when(since < 365, 1)).alias("frequency"),
        F.coalesce(F.sum(F.when(since < 365, F.col("amount"))), F.lit(0.0)).alias("monetary"),
        F.avg("amount").alias("avg_order_value"),
        F.count(F.when(since < 90, 1)).alias("orders_90d"),
    )
    return per_user.join(gap_stats, "user_id", "left")


def purchase_summary(bought: DataFrame, as_of: date) -> DataFrame:
    """Per customer with a purchase by ``as_of``: BG/NBD's ``x`` (purchase days after the
    first), ``t_x`` and ``T`` (days), and ``m`` (mean spend per purchase day)."""
    history = bought.where(F.col("order_date") <= F.lit(as_of))
    per_day = history.groupBy("user_id", "order_date").agg(F.sum("amount").alias("amount"))
    return per_day.groupBy("user_id").agg(
        (F.count("*") - 1).alias("x"),
        F.datediff(F.max("order_date"), F.min("order_date")).alias("t_x"),
        F.datediff(F.lit(as_of), F.min("order_date")).alias("T"),
        F.avg("amount").alias("m"),
    )


def with_bgnbd(frame: pd.DataFrame, bought: DataFrame, as_of: date, horizon_days: int) -> tuple[pd.DataFrame, dict]:
    """``frame`` with ``bgnbd_purchases``: BG/NBD's expected purchases in the ``horizon_days``
    after ``as_of``, fitted on the customers' histories up to ``as_of`` (NaN, with the
    reason, when it cannot be fitted); and the fit's summary."""
    from models.clv import BGNBD

    summary = purchase_summary(bought, as_of).toPandas().sort_values("user_id")  # the same fit every run
    try:
        model = BGNBD().fit(summary["x"], summary["t_x"], summary["T"])
    except ValueError as error:
        return frame.assign(bgnbd_purchases=np.nan), {"error": str(error)}
    summary["bgnbd_purchases"] = model.expected_purchases(horizon_days, summary["x"], summary["t_x"], summary["T"])
    fit = {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b, "at_boundary": model.at_boundary_}
    return frame.merge(summary[["user_id", "bgnbd_purchases"]], on="user_id", how="left"), fit


def _to_pandas(features: DataFrame, default_gap: int) -> pd.DataFrame:
    frame = features.toPandas()
    frame["typical_gap_days"] = frame["typical_gap_days"].astype("float")
    gap = frame["typical_gap_days"].fillna(default_gap)
    frame["overdue_ratio"] = frame["recency_days"] / gap.clip(lower=1)
    numeric = ["recency_days", "frequency", "monetary", "avg_order_value", "order_count", "tenure_days", "orders_90d"]
    frame[numeric] = frame[numeric].astype("float")
    return frame


def backtest_frame(bought: DataFrame, cutoff: date, horizon_days: int, default_gap: int) -> pd.DataFrame:
    """Features as of ``cutoff`` with ``churned`` = no purchase in (cutoff, cutoff + horizon]
    and ``future_spend``, what was spent then."""
    later = (
        bought.where(
            (F.col("order_date") > F.lit(cutoff))
            & (F.col("order_date") <= F.lit(cutoff + timedelta(days=horizon_days)))
        )
        .groupBy("user_id")
        .agg(F.lit(1).alias("bought_again"), F.sum("amount").alias("future_spend"))
    )
    frame = _to_pandas(customer_features(bought, cutoff).join(later, "user_id", "left"), default_gap)
    frame["churned"] = frame["bought_again"].isna().astype(int)
    frame["future_spend"] = frame["future_spend"].astype(float).fillna(0.0)
    return frame.drop(columns=["bought_again"])


def _bands(risk: pd.Series, settings: ScoreSettings) -> pd.Series:
    return pd.Series(
        np.select([risk < settings.low_below, risk < settings.high_from], ["low", "medium"], "high"), index=risk.index
    ).where(risk.notna())


def expected_purchases(frame: pd.DataFrame) -> pd.Series:
    """Purchases expected in the next 365 days: the customer's rate over the last year (or its
    tenure, if shorter) shrunk towards the shop's rate with :data:`PRIOR_YEARS` of exposure."""
    years = (frame["tenure_days"].clip(lower=0, upper=364) + 1) / 365.0
    shop_rate = frame["frequency"].sum() / years.sum() if years.sum() > 0 else 1.0
    return (frame["frequency"] + shop_rate * PRIOR_YEARS) / (years + PRIOR_YEARS)


def expected_order_value(frame: pd.DataFrame) -> pd.Series:
    """The customer's average order value shrunk towards the shop's median with
    :data:`PRIOR_ORDERS` orders."""
    median = frame["avg_order_value"].median() if len(frame) else 0.0
    n = frame["order_count"]
    return (n * frame["avg_order_value"] + PRIOR_ORDERS * median) / (n + PRIOR_ORDERS)


def value_ranking(frame: pd.DataFrame, weight: float) -> pd.Series:
    """Who will spend most: ``weight`` x the percentile of spend in the last year plus
    ``1 - weight`` x the percentile of purchases in it. On real shops neither past spend nor
    the probabilistic models rank future spend as well as this blend (README, Customer scores)."""
    spend = frame["monetary"].astype(float).rank(pct=True)
    purchases = frame["frequency"].astype(float).rank(pct=True)
    return weight * spend + (1 - weight) * purchases


def choose_value_weight(train: pd.DataFrame) -> tuple[float, dict[float, float]]:
    """The blend weight of :func:`value_ranking` that ranks the backtest's ``future_spend``
    best (Spearman), with every weight's correlation; ties go to the even blend."""
    from scipy.stats import spearmanr

    scores = {}
    for weight in VALUE_WEIGHTS:
        rho = spearmanr(value_ranking(train, weight), train["future_spend"]).statistic
        scores[weight] = round(float(rho), 4) if np.isfinite(rho) else -1.0
    best = max(VALUE_WEIGHTS, key=lambda w: (scores[w], -abs(w - 0.5)))
    return best, scores


def value_amounts(frame: pd.DataFrame, bought: DataFrame, as_of: date, days: int) -> tuple[pd.Series, str]:
    """Each customer's spend expected in the ``days`` after ``as_of``: BG/NBD's expected
    purchases times Gamma-Gamma's expected spend per purchase, both fitted on the histories
    up to ``as_of`` (purchase days as purchases); where they cannot be fitted (too few repeat
    buyers), the shrunk rate x shrunk order value of :func:`expected_purchases` and
    :func:`expected_order_value` over ``days``. Returns (amounts aligned with ``frame``, how)."""
    from models.clv import BGNBD, GammaGamma

    # fitted on the customers in id order: the same histories give the same fit, bit for bit
    summary = purchase_summary(bought, as_of).toPandas().sort_values("user_id")
    x, t_x, T = (summary[c].to_numpy(float) for c in ("x", "t_x", "T"))
    spend = summary["m"].to_numpy(float).clip(min=0.01)
    try:
        purchases = BGNBD().fit(x, t_x, T).expected_purchases(days, x, t_x, T)
        per_user = pd.Series(purchases * GammaGamma().fit(x, spend).expected_value(x, spend), index=summary["user_id"])
        amounts = per_user.reindex(frame["user_id"]).to_numpy()
        how = "BG/NBD x Gamma-Gamma"
    except ValueError as error:
        amounts = (expected_purchases(frame) * expected_order_value(frame) * days / 365).to_numpy()
        how = f"shrunk rate x order value ({error})"
    return pd.Series(np.nan_to_num(amounts), index=frame.index).clip(lower=0), how


def predicted_value(frame: pd.DataFrame, amounts: pd.Series, weight: float) -> pd.Series:
    """The amounts, handed out in the order of :func:`value_ranking`: the customer ranked
    first gets the largest amount, and so on. The shop's total (and the spread of amounts)
    is the probabilistic models'; who gets which is the ranking's."""
    order = pd.DataFrame(
        {"rank": value_ranking(frame, weight), "amount": amounts, "user": frame["user_id"]}, index=frame.index
    )
    order = order.sort_values(["rank", "amount", "user"], ascending=[False, False, True], kind="stable")
    return pd.Series(np.sort(amounts.to_numpy())[::-1], index=order.index).reindex(frame.index)


def _value_fields(frame: pd.DataFrame, value: pd.Series, default_gap: float) -> pd.DataFrame:
    gap = frame["typical_gap_days"].fillna(default_gap).clip(lower=1)
    out = pd.DataFrame({"user_id": frame["user_id"]})
    out["expected_next_order_date"] = pd.to_datetime(frame["last_order_date"]) + pd.to_timedelta(gap.round(), unit="D")
    out["expected_next_order_date"] = out["expected_next_order_date"].dt.date
    out["predicted_value_12m"] = value.clip(lower=0).round(2)
    return out


def score_customers_frame(bought: DataFrame, as_of: date, settings: ScoreSettings = ScoreSettings()) -> ScoreResult:
    """Learn (when possible) and score every customer with a purchase by ``as_of``."""
    from sklearn.model_selection import train_test_split

    from models.churn import BASELINES, ChurnModel, FeatureBaseline, calibration_table, evaluate

    current = _to_pandas(customer_features(bought, as_of), settings.default_gap_days)
    population_gap = float(current["typical_gap_days"].median()) if current["typical_gap_days"].notna().any() else None
    default_gap = population_gap or settings.default_gap_days
    first = bought.agg(F.min("order_date")).first()[0]
    history_days = (as_of - first).days if first else 0
    cutoff = as_of - timedelta(days=settings.horizon_days)

    reason = ""
    train = None
    if history_days < settings.min_history_days:
        reason = f"history of {history_days} days is shorter than the {settings.min_history_days} needed to learn"
    else:
        train = backtest_frame(bought, cutoff, settings.horizon_days, settings.default_gap_days)
        positives = int(train["churned"].sum())
        negatives = len(train) - positives
        if len(train) < settings.min_customers or min(positives, negatives) < settings.min_per_class:
            reason = (
                f"backtest at {cutoff} has {len(train)} customers ({positives} churned, {negatives} returned); "
                f"need {settings.min_customers} and {settings.min_per_class} of each"
            )
    if reason:
        log.warning("churn model not trained for %s: %s; publishing rule-based fields only", as_of, reason)
        risk = pd.Series(np.nan, index=current.index)
        amounts, how = value_amounts(current, bought, as_of, 365)
        scores = _value_fields(current, predicted_value(current, amounts, 0.5), default_gap)
        scores["churn_risk"], scores["churn_risk_band"] = risk, _bands(risk, settings)
        value = {"weight": 0.5, "amounts": how, "chosen_on": "no backtest: the even blend"}
        return ScoreResult(scores, "rules", reason, value=value)

    train, bgnbd_fit = with_bgnbd(train, bought, cutoff, settings.horizon_days)
    fit_part, test_part = train_test_split(
        train, test_size=0.3, random_state=settings.random_state, stratify=train["churned"]
    )

    def candidate(name: str):
        if name == "churn_model":
            return ChurnModel(random_state=settings.random_state)
        return FeatureBaseline(BASELINES[name])

    names = ["churn_model"] + [n for n, feature in BASELINES.items() if train[feature].notna().all()]
    quality, predictions = [], {}
    for name in names:
        model = candidate(name).fit(fit_part, fit_part["churned"].to_numpy())
        predictions[name] = model.predict_proba(test_part)
        metrics = evaluate(test_part["churned"].to_numpy(), predictions[name])
        quality.append(
            {
                "model": name,
                **metrics,
                "n_train": len(fit_part),
                "n_test": len(test_part),
                "churn_rate": float(train["churned"].mean()),
            }
        )
    best = max(quality, key=lambda row: row["auc"])["model"]  # ties: the model, then the listed order
    for row in quality:
        row["is_selected"] = row["model"] == best
    calibration = calibration_table(test_part["churned"].to_numpy(), predictions[best])
    final = candidate(best).fit(train, train["churned"].to_numpy())
    if best == "bgnbd_baseline":
        current, _ = with_bgnbd(current, bought, as_of, settings.horizon_days)
    risk = pd.Series(final.predict_proba(current), index=current.index).round(4)
    weight, by_weight = choose_value_weight(train)
    amounts, how = value_amounts(current, bought, as_of, 365)
    scores = _value_fields(current, predicted_value(current, amounts, weight), default_gap)
    scores["churn_risk"], scores["churn_risk_band"] = risk, _bands(risk, settings)
    value = {"weight": weight, "amounts": how, "chosen_on": f"backtest at {cutoff}", "spearman_by_weight": by_weight}
    note = f"trained at cutoff {cutoff} on {len(train)} customers; value ranking weight {weight} of spend"
    if bgnbd_fit.get("at_boundary"):
        note += "; BG/NBD fitted at its no-dropout boundary"
    elif "error" in bgnbd_fit:
        note += f"; no BG/NBD baseline: {bgnbd_fit['error']}"
    return ScoreResult(scores, best, note, quality, calibration, value)


def build_scores(config, as_of: date, settings: ScoreSettings = ScoreSettings()) -> dict:
    """Learn and publish ``mart_customer_scores`` (+ model quality and calibration) for D."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from jobs.customers.segments import published_customers
    from jobs.platform.publish import publish, snapshot

    _, bought = published_customers(config, as_of, PURCHASE_STATUSES)
    bought = bought.persist()
    result = score_customers_frame(bought, as_of, settings)
    bought.unpersist()
    loaded_at = datetime.now(timezone.utc)

    scores = result.scores.assign(snapshot_date=as_of, scoring_method=result.method, loaded_at=loaded_at)
    tables = {
        "mart_customer_scores": scores[
            ["snapshot_date", "user_id", "churn_risk", "churn_risk_band", "expected_next_order_date",
             "predicted_value_12m", "scoring_method", "loaded_at"]
        ],
        "mart_churn_model_quality": pd.DataFrame(
            result.quality, columns=["model", "auc", "brier", "n_train", "n_test", "churn_rate", "is_selected"]
        ).assign(snapshot_date=as_of, note=result.reason),
        "mart_churn_calibration": (
            result.calibration if result.calibration is not None
            else pd.DataFrame(columns=["customers", "mean_predicted", "observed_rate", "bin_low", "bin_high"])
        ).assign(snapshot_date=as_of),
    }  # fmt: skip
    publish(
        config,
        as_of,
        "scores",
        "customers",
        [
            snapshot(name, pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False))
            for name, frame in tables.items()
        ],
        rows_in=len(scores),
        details={"method": result.method, "reason": result.reason, "quality": result.quality},
    )
    return {
        "snapshot_date": as_of.isoformat(),
        "method": result.method,
        "reason": result.reason,
        "customers": len(scores),
        "quality": result.quality,
    }
