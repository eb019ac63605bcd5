"""Benchmark (not a test): campaign allocation and measurement at scale.

    .venv/bin/python benchmarks/bench_campaigns.py [--customers 1000000] [--out FILE]

Builds a customer frame with every audience field the shipped campaigns use (lifecycle stage,
RFM group, scores, tags, derived fields; values drawn to realistic shares), a 6-day contact
history, a suppression list and each campaign's recently contacted customers, then times the
campaigns of ``config/campaigns.yaml`` active on a Monday (all eight) through
:func:`jobs.activation.allocate.allocate` (audience, suppression, re-contact interval,
priority, cap, md5 holdout) and the measurement of every resulting cohort through
:func:`jobs.activation.measure.cohort_results` on simulated orders. Pure in-process work: the
warehouse reads and writes around it are not included. Reports wall time per step and the
process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.activation.allocate import allocate
from jobs.activation.campaigns_config import audience_fields, load_campaigns
from jobs.activation.measure import cohort_results, per_customer

DAY = date(2026, 6, 1)


def customers(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stages = ["prospect", "new", "growing", "loyal", "at_risk", "churned", "reactivated"]
    groups = ["Champions", "Loyal", "Potential Loyalist", "New", "At Risk", "Hibernating", "Lost"]
    first = rng.integers(0, 700, n)
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1),
            "has_email_consent": rng.random(n) < 0.7,
            "has_sms_consent": rng.random(n) < 0.4,
            "has_push_consent": rng.random(n) < 0.5,
            "lifecycle_stage": rng.choice(stages, n, p=[0.3, 0.05, 0.2, 0.1, 0.15, 0.15, 0.05]),
            "rfm_group": rng.choice(groups, n),
            "churn_risk": rng.random(n),
            "churn_risk_band": rng.choice(["low", "medium", "high"], n, p=[0.5, 0.3, 0.2]),
            "predicted_value_12m": rng.gamma(1.0, 200, n),
            "monetary": rng.gamma(1.0, 300, n),
            "tag_spending_power": rng.choice(["low", "medium", "high", "premium", None], n),
            "days_since_first_order": first,
            "days_since_last_order": rng.integers(0, 400, n),
            "days_until_expected_order": rng.integers(-30, 60, n),
            "abandoned_cart": rng.random(n) < 0.01,
        }
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/campaigns.json"))
    args = parser.parse_args()

    settings = load_campaigns()
    kinds = {name: kind for name, (kind, _) in audience_fields().items()}
    timings: dict[str, float] = {}
    started = time.perf_counter()
    frame = customers(args.customers)
    rng = np.random.default_rng(8)
    history = pd.Series(
        rng.integers(1, 3, args.customers // 10), index=rng.choice(frame["user_id"], args.customers // 10)
    )
    history = history.groupby(level=0).sum()
    suppressed = {ch: set(rng.choice(frame["user_id"], args.customers // 100)) for ch in ("email", "sms", "push")}
    recent = {c.id: set(rng.choice(frame["user_id"], args.customers // 50)) for c in settings.campaigns}
    timings["build_inputs_s"] = time.perf_counter() - started

    started = time.perf_counter()
    chosen, funnel = allocate(frame, settings, DAY, kinds, history, suppressed, recent)
    timings["allocate_s"] = time.perf_counter() - started

    # orders of the allocated customers around their contact date: ~8% buy in a 14-day window
    started = time.perf_counter()
    members = chosen[["campaign_id", "user_id", "arm"]]
    buyers = members.sample(frac=0.12, random_state=1)
    orders = pd.DataFrame(
        {
            "user_id": buyers["user_id"].to_numpy(),
            "order_date": [DAY + timedelta(days=int(d)) for d in rng.integers(-29, 22, len(buyers))],
            "total_amount": rng.gamma(2, 60, len(buyers)),
        }
    )
    rows = 0
    for campaign in settings.campaigns:
        cohort = members[members["campaign_id"] == campaign.id][["user_id", "arm"]]
        if len(cohort) < 4:
            continue
        mine = orders[orders["user_id"].isin(cohort["user_id"])]
        per = per_customer(cohort, mine, DAY, settings.window_days(campaign), settings.measurement.pre_period_days)
        rows += len(cohort_results(per, settings.holdout_share(campaign), settings))
    timings["measure_s"] = time.perf_counter() - started

    result = {
        "customers": args.customers,
        "campaigns": len(settings.active(DAY)),
        "allocated": len(chosen),
        "result_rows": rows,
        **{k: round(v, 2) for k, v in timings.items()},
        "peak_rss_mb": round(peak_mb()),
        "funnel": funnel.set_index("campaign_id")[["eligible", "capped", "control", "target"]].to_dict(orient="index"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=int))
    print(json.dumps({k: v for k, v in result.items() if k != "funnel"}, indent=2))


if __name__ == "__main__":
    main()
