"""Did it work? Target vs control for every campaign cohort whose attribution window closed.

A **cohort** is a campaign's customers of one contact date C (``fct_campaign_contacts``, both
groups, intention to treat: everyone assigned, whether or not a message arrived). Its window is
the days C+1 .. C+w (messages go out the morning after the night's allocation). A cohort is
measured once, on the first night its window is closed and published (fixed horizon: no
peeking every night), with per customer (zeros included):

- ``conversion_rate``        1 if the customer bought in the window, else 0;
- ``orders_per_customer``    purchases in the window;
- ``revenue_per_customer``   their total, winsorised at ``measurement.winsorize_percentile`` of
                             the pooled non-zero values; also CUPED-adjusted (``adjustment`` =
                             ``cuped``) on the customer's revenue in the ``pre_period_days``
                             before C, reported beside the unadjusted figure;
- ``average_order_value``    revenue / orders, a ratio metric (delta method).

Each row has absolute and relative lift with intervals (:mod:`jobs.activation.stats`), the
p-value, incremental revenue or orders with its interval, and the sample-ratio check of the
arm sizes against the campaign's holdout share: a flagged cohort is published with
``is_valid`` false. The **programme** row (``campaign_id`` = ``programme``) compares the global
holdout with every other customer of the profile of the date ``programme_window_days`` ago, over
the days since.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from jobs.activation import stats
from jobs.activation.allocate import buckets, in_share
from jobs.activation.campaigns_config import PROGRAMME, CampaignsConfig, load_campaigns
from jobs.platform.config import PipelineConfig
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.ops import warehouse_engine
from jobs.platform.publish import Output, publish
from jobs.platform.warehouse import frame_to_arrow, query_frame

log = logging.getLogger(__name__)
RESULT_COLUMNS = (
    "campaign_id", "cohort_date", "metric", "adjustment", "window_days", "window_end_date", "n_target", "n_control",
    "mean_target", "mean_control", "abs_lift", "abs_ci_low", "abs_ci_high", "rel_lift", "rel_ci_low", "rel_ci_high",
    "p_value", "incremental_value", "incremental_ci_low", "incremental_ci_high", "srm_p_value", "is_srm_mismatch",
    "is_valid", "note",
)  # fmt: skip


def per_customer(
    members: pd.DataFrame, orders: pd.DataFrame, cohort_date: date, window_days: int, pre_period_days: int
) -> pd.DataFrame:
    """One row per cohort member (``user_id``, ``arm``): ``orders`` and ``revenue`` in the window
    (C+1 .. C+window_days) and ``pre_revenue`` in the ``pre_period_days`` up to C; zeros for none."""
    day = pd.to_datetime(orders["order_date"])
    start, end = pd.Timestamp(cohort_date), pd.Timestamp(cohort_date + timedelta(days=window_days))
    in_window = orders[(day > start) & (day <= end)]
    before = orders[(day > start - pd.Timedelta(days=pre_period_days)) & (day <= start)]
    window = in_window.groupby("user_id")["total_amount"].agg(orders="count", revenue="sum")
    pre = before.groupby("user_id")["total_amount"].sum().rename("pre_revenue")
    frame = members.join(window, on="user_id").join(pre, on="user_id")
    return frame.fillna({"orders": 0, "revenue": 0.0, "pre_revenue": 0.0})


def cohort_results(frame: pd.DataFrame, control_share: float, settings: CampaignsConfig) -> list[dict]:
    """The result rows of one cohort (see the module docstring) from :func:`per_customer`."""
    m = settings.measurement
    target, control = frame[frame["arm"] == "target"], frame[frame["arm"] == "control"]
    srm_p, mismatch = stats.srm_check(len(target), len(control), control_share, m.srm_p_threshold)
    base = {"n_target": len(target), "n_control": len(control), "srm_p_value": srm_p, "is_srm_mismatch": mismatch}
    if min(len(target), len(control)) < 2:
        return [{**base, "metric": "conversion_rate", "adjustment": "none", "is_valid": False,
                 "note": "fewer than 2 customers in an arm"}]  # fmt: skip
    revenue_t, revenue_c, cap = stats.winsorize_arms(target["revenue"], control["revenue"], m.winsorize_percentile)
    capped = f"revenue capped at {cap:.2f}" if cap is not None else None
    measured = [
        ("conversion_rate", "none", lambda: stats.mean_lift(target["orders"] > 0, control["orders"] > 0,
                                                             metric="conversion_rate", alpha=m.alpha), None),
        ("orders_per_customer", "none", lambda: stats.mean_lift(target["orders"], control["orders"],
                                                                 metric="orders_per_customer", alpha=m.alpha), None),
        ("revenue_per_customer", "none", lambda: stats.mean_lift(revenue_t, revenue_c, metric="revenue_per_customer",
                                                                  alpha=m.alpha), capped),
        ("revenue_per_customer", "cuped", lambda: stats.cuped_lift(revenue_t, target["pre_revenue"], revenue_c,
                                                                    control["pre_revenue"], metric="revenue_per_customer",
                                                                    alpha=m.alpha), capped),
        ("average_order_value", "none", lambda: stats.ratio_lift(revenue_t, target["orders"], revenue_c,
                                                                  control["orders"], metric="average_order_value",
                                                                  alpha=m.alpha), capped),
    ]  # fmt: skip
    rows = []
    for metric, adjustment, compute, note in measured:
        row = {**base, "metric": metric, "adjustment": adjustment, "note": note}
        try:
            lift = compute()
        except ValueError as exc:  # e.g. no orders in an arm for a ratio metric, no pre-period variance
            rows.append({**row, "is_valid": False, "note": str(exc)})
            continue
        row.update({key: getattr(lift, key) for key in ("mean_target", "mean_control", "abs_lift", "abs_ci_low",
                                                         "abs_ci_high", "rel_lift", "rel_ci_low", "rel_ci_high",
                                                         "p_value")})  # fmt: skip
        if metric in ("orders_per_customer", "revenue_per_customer"):
            value, low, high = stats.incremental(lift)
            row.update({"incremental_value": value, "incremental_ci_low": low, "incremental_ci_high": high})
        row["is_valid"] = not mismatch
        if mismatch:
            row["note"] = "; ".join(filter(None, [note, f"sample ratio mismatch (p = {srm_p:.2g})"]))
        rows.append(row)
    return rows


def _purchases(conn: sa.Connection, schema: str, users: list[int], first: date, last: date) -> pd.DataFrame:
    query = sa.text(
        f"select user_id, order_date, cast(total_amount as double precision) as total_amount from {schema}.fct_orders "
        "where status in :statuses and order_date between :first and :last"
    ).bindparams(sa.bindparam("statuses", expanding=True))
    orders = query_frame(conn, query, statuses=list(PURCHASE_STATUSES), first=first, last=last)
    return orders[orders["user_id"].isin(users)]


def measure_campaigns(config: PipelineConfig, as_of: date, settings: CampaignsConfig | None = None) -> dict:
    """Measure the cohorts whose window closed by ``as_of`` and were not measured on an earlier
    date, and the programme; publish ``mart_campaign_results`` rows ``measured_on`` = ``as_of``."""
    settings = settings or load_campaigns(
        config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
    )
    m, schema = settings.measurement, config.warehouse.schema_name
    shares = {c.id: settings.holdout_share(c) for c in settings.campaigns}
    rows: list[dict] = []
    with warehouse_engine(config).connect() as conn:
        cohorts = query_frame(
            conn,
            f"select campaign_id, contact_date, max(attribution_window_days) as window_days, count(*) as customers "
            f"from {schema}.fct_campaign_contacts group by campaign_id, contact_date",
        )
        done = query_frame(
            conn,
            f"select distinct campaign_id, cohort_date from {schema}.mart_campaign_results where measured_on <> :d",
            d=as_of,
        )
        if len(cohorts):
            contacted = pd.to_datetime(cohorts["contact_date"])
            closed = contacted + pd.to_timedelta(cohorts["window_days"], unit="D") <= pd.Timestamp(as_of)
            cohorts["contact_date"] = contacted.dt.date
            measured = set(zip(done["campaign_id"], pd.to_datetime(done["cohort_date"]).dt.date, strict=True))
            todo = cohorts[closed.to_numpy()]
            todo = todo[[key not in measured for key in zip(todo["campaign_id"], todo["contact_date"], strict=True)]]
        else:
            todo = cohorts
        for cohort in todo.itertuples():
            members = query_frame(
                conn,
                f"select user_id, arm from {schema}.fct_campaign_contacts where campaign_id = :c and contact_date = :d",
                c=cohort.campaign_id,
                d=cohort.contact_date,
            )
            window = int(cohort.window_days)
            orders = _purchases(
                conn, schema, members["user_id"].tolist(),
                cohort.contact_date - timedelta(days=m.pre_period_days), cohort.contact_date + timedelta(days=window),
            )  # fmt: skip
            frame = per_customer(members, orders, cohort.contact_date, window, m.pre_period_days)
            share = shares.get(cohort.campaign_id, settings.defaults.holdout_share)
            rows += _keyed(cohort_results(frame, share, settings), cohort.campaign_id, cohort.contact_date, window)
        rows += _programme(conn, schema, as_of, settings)
    loaded_at = datetime.now(timezone.utc)
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).assign(measured_on=as_of, loaded_at=loaded_at)
    frame = frame.astype({"is_srm_mismatch": bool, "is_valid": bool, "n_target": "int64", "n_control": "int64"})
    published = publish(
        config, as_of, "measure", "campaign_results",
        [Output("mart_campaign_results", frame_to_arrow(frame), where="measured_on = :d")],
        rows_in=int(todo["customers"].sum()) if len(todo) else 0,
        details={"cohorts": len(todo)},
    )  # fmt: skip
    valid = frame[frame["is_valid"] & (frame["metric"] == "revenue_per_customer") & (frame["adjustment"] == "none")]
    return {
        "measured_on": as_of.isoformat(),
        "cohorts": len(todo),
        "rows_by_table": published,
        "revenue_lift": {
            f"{r.campaign_id}@{r.cohort_date}": [r.rel_lift, r.rel_ci_low, r.rel_ci_high] for r in valid.itertuples()
        },
    }


def _keyed(rows: list[dict], campaign_id: str, cohort_date: date, window: int) -> list[dict]:
    end = cohort_date + timedelta(days=window)
    return [{**row, "campaign_id": campaign_id, "cohort_date": cohort_date, "window_days": window,
             "window_end_date": end} for row in rows]  # fmt: skip


def _programme(conn: sa.Connection, schema: str, as_of: date, settings: CampaignsConfig) -> list[dict]:
    """The global holdout against every other customer of the profile ``programme_window_days``
    before ``as_of``, over the days since."""
    m, holdout = settings.measurement, settings.global_holdout
    start = as_of - timedelta(days=m.programme_window_days)
    users = query_frame(conn, f"select user_id from {schema}.mart_user_profile where snapshot_date = :d", d=start)
    if users.empty or holdout.share == 0:
        return []
    control = in_share(buckets(holdout.salt, users["user_id"].to_numpy()), holdout.share)
    members = users.assign(arm=np.where(control, "control", "target"))
    orders = _purchases(conn, schema, members["user_id"].tolist(), start - timedelta(days=m.pre_period_days), as_of)
    frame = per_customer(members, orders, start, m.programme_window_days, m.pre_period_days)
    return _keyed(cohort_results(frame, holdout.share, settings), PROGRAMME, start, m.programme_window_days)
