"""Churn risk: the probability that a customer makes no purchase in the next ``horizon`` days.

scikit-learn shape: hyper-parameters in ``__init__``, learning in ``fit``, results in
``predict_proba``, learned state in attributes ending with ``_``. :class:`FeatureBaseline` has
the same interface, so evaluation treats both alike.

Learning is by backtest: features are computed as of an earlier cutoff date and the label is
what happened in the ``horizon`` days after it (see :func:`backtest_frame` in jobs.customers.scores).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "order_count",
    "tenure_days",
    "overdue_ratio",
    "orders_90d",
)


class ChurnModel:
    """Regularised logistic regression on log-scaled behaviour features, calibrated with
    Platt scaling (cross-validated; keeps the ranking), so probabilities mean what they say. Trees
    overfit the few thousand customers a nightly backtest has; this stays robust."""

    def __init__(self, C: float = 1.0, cv: int = 3, random_state: int = 0):
        self.C, self.cv, self.random_state = C, cv, random_state

    @staticmethod
    def _design(X: pd.DataFrame) -> np.ndarray:
        return np.log1p(X[list(FEATURES)].astype(float).clip(lower=0).to_numpy())

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ChurnModel:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        base = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        self.model_ = CalibratedClassifierCV(base, method="sigmoid", cv=self.cv).fit(self._design(X), y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._design(X))[:, 1]


class FeatureBaseline:
    """Churn probability from one feature alone: logistic regression on its log (a baseline
    any shop has: recency, frequency, past spend, or BG/NBD's expected purchases)."""

    def __init__(self, feature: str):
        self.feature = feature

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        return np.log1p(X[[self.feature]].astype(float).clip(lower=0).to_numpy())

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> FeatureBaseline:
        self.model_ = LogisticRegression().fit(self._design(X), y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._design(X))[:, 1]


class RecencyBaseline(FeatureBaseline):
    """Churn probability from recency alone (logistic regression on log recency)."""

    def __init__(self):
        super().__init__("recency_days")


# the baselines the nightly backtest reports beside the model: name -> the feature alone
BASELINES = {
    "recency_baseline": "recency_days",
    "frequency_baseline": "frequency",
    "past_spend_baseline": "monetary",
    "bgnbd_baseline": "bgnbd_purchases",
}


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn per probability bin (empty bins left out)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "p": p, "y": y})
    table = frame.groupby("bin").agg(customers=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"))
    table["bin_low"], table["bin_high"] = edges[table.index], edges[table.index + 1]
    return table.reset_index(drop=True)


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC (ranking) and Brier score (calibration + sharpness) of churn probabilities."""
    return {"auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p))}
