"""Unusual order behaviour: scikit-learn's IsolationForest on one row per customer."""

from __future__ import annotations

import numpy as np
import pandas as pd


def anomaly_scores(features: pd.DataFrame, settings) -> pd.DataFrame:
    """IsolationForest on each customer's order behaviour (``settings``: tags.yaml anomaly).
    Returns ``user_id, anomaly_score, is_anomaly``; empty when there are too few customers."""
    from sklearn.ensemble import IsolationForest

    columns = ["user_id", "anomaly_score", "is_anomaly"]
    if len(features) < settings.min_customers:
        return pd.DataFrame(columns=columns)
    matrix = np.log1p(features[list(settings.features)].astype("float").fillna(0.0).clip(lower=0).to_numpy())
    forest = IsolationForest(
        n_estimators=settings.n_estimators,
        contamination=settings.contamination,
        random_state=settings.random_state,
    ).fit(matrix)
    return pd.DataFrame(
        {
            "user_id": features["user_id"].to_numpy(),
            "anomaly_score": np.round(-forest.score_samples(matrix), 4),  # (0, 1]; ~0.5 is ordinary
            "is_anomaly": forest.predict(matrix) == -1,
        }
    )
