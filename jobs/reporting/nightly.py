"""The nightly report: what happened last night, at a glance.

``marketing report --date D`` (and the ``report`` task closing the campaigns DAG) reads the
warehouse for D and writes, under the reports root (local or S3)::

    nightly/date=D/plots/<name>.png   one file per plot
    nightly/date=D/report.html        self-contained: styles and plots inline, no network needed
    nightly/date=D/report.json        the same numbers, written last

Re-running D replaces each file whole (object writes are atomic) and the JSON last, so a reader
that sees the new JSON sees the new HTML too. Sections: pipeline runs and durations per stage;
reconciliation and quarantine by reason; data-quality results with a link into Data Docs; KPIs
with 30-day trends; customers by RFM group and lifecycle stage with the transition heatmap; tag
coverage; churn model quality and calibration over time; the recommender against both
baselines over time with the gate decisions; every campaign's funnel and the lift of the
cohorts measured, as a forest plot, sample-ratio warnings in red. A section without data says
so (a first night, a date without campaigns, a night whose gate refused the model).
"""

from __future__ import annotations

import base64
import json
import logging
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd

from jobs.platform.config import PipelineConfig
from jobs.platform.ops import warehouse_engine
from jobs.platform.provenance import code_version
from jobs.platform.storage import open_storage
from jobs.platform.warehouse import query_frame

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).with_name("templates") / "nightly.html"
TREND_DAYS = 30
KPI_TRENDS = (  # column, label, kind
    ("net_sales_amount", "Net sales", "money"),
    ("order_count", "Orders", "count"),
    ("avg_order_amount", "Average order value", "money"),
    ("active_customer_count", "Active customers", "count"),
    ("session_conversion_rate", "Session-to-order conversion", "percent"),
    ("cart_abandonment_rate", "Cart abandonment", "percent"),
)


def report_prefix(day: date) -> str:
    return f"nightly/date={day.isoformat()}/"


def _plain(value):
    """A warehouse value as JSON has it: dates as ISO text, decimals and numpy numbers as
    numbers, every kind of missing as null."""
    if isinstance(value, (list, tuple, dict)):
        return value
    if value is None or pd.isna(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{key: _plain(value) for key, value in row.items()} for row in frame.to_dict(orient="records")]


def report_numbers(config: PipelineConfig, day: date) -> dict:
    """Every number of the report for ``day`` (the JSON file), read from the warehouse."""
    s = config.warehouse.schema_name
    first = day - timedelta(days=TREND_DAYS - 1)
    with warehouse_engine(config).connect() as conn:
        runs = query_frame(conn, f"select stage, status, started_at, duration_s, error from {s}.ops_stage_runs "
                            "where logical_date = :d and stage <> 'report' order by started_at", d=day)  # fmt: skip
        reconciliation = query_frame(
            conn,
            f"select stage, dataset, status, rows_in, rows_out, rows_quarantined, rows_duplicate "
            f"from {s}.ops_pipeline_runs where logical_date = :d and stage in ('collect', 'clean') "
            "order by stage, dataset",
            d=day,
        )
        quarantine = query_frame(conn, f"select dataset, reason, row_count from {s}.ops_quarantine_daily "
                                  "where logical_date = :d order by dataset, reason", d=day)  # fmt: skip
        quality = query_frame(
            conn,
            f"select dataset, check_name, severity, is_success, unexpected_count, observed_value "
            f"from {s}.ops_data_quality where logical_date = :d order by dataset, check_name",
            d=day,
        )
        kpis = query_frame(conn, f"select * from {s}.v_kpi_daily where kpi_date between :a and :d order by kpi_date",
                      a=first, d=day)  # fmt: skip
        rfm = query_frame(conn, f"select rfm_group, count(*) as customers from {s}.mart_user_rfm "
                           "where snapshot_date = :d group by rfm_group order by customers desc", d=day)  # fmt: skip
        stages = query_frame(conn, f"select lifecycle_stage, count(*) as customers from {s}.mart_user_lifecycle "
                              "where snapshot_date = :d group by lifecycle_stage order by customers desc",
                        d=day)  # fmt: skip
        transitions = query_frame(conn, f"select from_stage, to_stage, user_count from {s}.mart_lifecycle_transitions "
                                   "where snapshot_date = :d order by from_stage, to_stage", d=day)  # fmt: skip
        profiles = query_frame(conn, f"select count(*) as n from {s}.mart_user_profile where snapshot_date = :d", d=day)
        tags = query_frame(conn, f"select tag, count(distinct user_id) as customers from {s}.mart_user_tags "
                            "where snapshot_date = :d group by tag order by tag", d=day)  # fmt: skip
        churn = query_frame(conn, f"select snapshot_date, model, auc, brier, n_train, n_test, is_selected "
                             f"from {s}.mart_churn_model_quality where snapshot_date between :a and :d "
                             "order by snapshot_date, model", a=first, d=day)  # fmt: skip
        calibration = query_frame(
            conn,
            f"select snapshot_date, bin_low, bin_high, customers, mean_predicted, observed_rate "
            f"from {s}.mart_churn_calibration where snapshot_date = (select max(snapshot_date) "
            f"from {s}.mart_churn_calibration where snapshot_date <= :d) order by bin_low",
            d=day,
        )
        recommender = query_frame(
            conn,
            f"select snapshot_date, model_version, model, value as ndcg_at_10, is_published "
            f"from {s}.mart_model_evaluation where user_group = 'all' and metric = 'ndcg@10' "
            "and snapshot_date between :a and :d order by snapshot_date, model_version, model",
            a=first,
            d=day,
        )
        gates = query_frame(conn, f"select logical_date, status, details_json from {s}.ops_pipeline_runs "
                             "where stage = 'recommender' and logical_date between :a and :d order by logical_date",
                       a=first, d=day)  # fmt: skip
        funnel = query_frame(conn, f"select * from {s}.mart_campaign_funnel where snapshot_date = :d order by priority",
                        d=day)  # fmt: skip
        results = query_frame(
            conn,
            f"select campaign_id, cohort_date, metric, adjustment, n_target, n_control, mean_target, mean_control, "
            f"abs_lift, abs_ci_low, abs_ci_high, rel_lift, rel_ci_low, rel_ci_high, p_value, srm_p_value, "
            f"is_srm_mismatch, is_valid, note, measured_on from {s}.mart_campaign_results "
            "where measured_on between :a and :d and adjustment = 'none' order by measured_on, campaign_id, metric",
            a=first,
            d=day,
        )
    customers = int(profiles["n"].iloc[0]) if len(profiles) else 0
    tags["coverage"] = tags["customers"] / customers if customers else None
    gate_rows = []
    for row in gates.itertuples():
        details = json.loads(row.details_json or "{}")
        gate_rows.append({"date": row.logical_date.isoformat() if hasattr(row.logical_date, "isoformat")
                          else str(row.logical_date), "status": row.status,
                          "reason": details.get("gate") or details.get("reason")})  # fmt: skip
    failed = quality[~quality["is_success"].astype(bool)]
    return {
        "date": day.isoformat(),
        "shop": config.shop.name,
        "currency": config.shop.currency,
        "behaviour_data": config.source.events,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "runs": _records(runs),
        "reconciliation": _records(reconciliation),
        "quarantine": _records(quarantine),
        "data_quality": {
            "checks": len(quality),
            "passed": int(quality["is_success"].astype(bool).sum()) if len(quality) else 0,
            "not_passed": _records(failed),
            "data_docs": "../../data_docs/index.html",
        },
        "kpis": {
            "today": (_records(kpis[pd.to_datetime(kpis["kpi_date"]).dt.date == day]) or [None])[0],
            "trend": _records(kpis),
        },  # fmt: skip
        "customers": {
            "profiles": customers,
            "rfm_groups": dict(zip(rfm["rfm_group"], rfm["customers"].astype(int), strict=True)),
            "lifecycle_stages": dict(zip(stages["lifecycle_stage"], stages["customers"].astype(int), strict=True)),
            "transitions": _records(transitions),
        },
        "tags": _records(tags),
        "churn": {"quality": _records(churn), "calibration": _records(calibration)},
        "recommender": {"ndcg_at_10": _records(recommender), "gate": gate_rows},
        "campaigns": {
            "funnel": _records(funnel.drop(columns=["loaded_at"], errors="ignore")),
            "results": _records(results),
        },  # fmt: skip
    }


# --------------------------------------------------------------------------------------------
# Plots (matplotlib, PNG)
# --------------------------------------------------------------------------------------------


def _png(figure) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _by_day(ax, dates) -> None:
    """Date ticks at whole days (month-day), at most about eight of them."""
    import matplotlib.dates as mdates

    span = (pd.to_datetime(pd.Series(dates)).max() - pd.to_datetime(pd.Series(dates)).min()).days + 1
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, span // 7)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))


def _by_model_over_time(frame: pd.DataFrame, value: str, label: str) -> bytes:
    """One line per ``model`` of ``value`` by ``snapshot_date``."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 3))
    for model, rows in frame.groupby("model"):
        ax.plot(pd.to_datetime(rows["snapshot_date"]), rows[value], marker="o", label=model)
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _by_day(ax, frame["snapshot_date"])
    figure.autofmt_xdate()
    return _png(figure)


def report_plots(numbers: dict) -> dict[str, bytes]:
    """The report's plots as PNG bytes, by name; a plot without data is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plots: dict[str, bytes] = {}
    trend = pd.DataFrame(numbers["kpis"]["trend"])
    if len(trend):
        figure, axes = plt.subplots(2, 3, figsize=(11, 5), sharex=True)
        days = pd.to_datetime(trend["kpi_date"])
        for ax, (column, label, kind) in zip(axes.ravel(), KPI_TRENDS, strict=True):
            values = pd.to_numeric(trend.get(column), errors="coerce") if column in trend else pd.Series(dtype=float)
            ax.plot(days, values * (100 if kind == "percent" else 1), marker="o", markersize=3, color="#2b6cb0")
            ax.set_title(label + (" (%)" if kind == "percent" else ""), fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            _by_day(ax, days)
        figure.autofmt_xdate()
        plots["kpi_trends"] = _png(figure)
    moves = pd.DataFrame(numbers["customers"]["transitions"])
    if len(moves):
        matrix = moves.pivot_table(index="from_stage", columns="to_stage", values="user_count", aggfunc="sum",
                                   fill_value=0)  # fmt: skip
        figure, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.imshow(np.log1p(matrix.to_numpy()), cmap="Blues")
        ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(matrix.index)), matrix.index, fontsize=8)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, f"{int(matrix.iat[i, j]):,}", ha="center", va="center", fontsize=7)
        ax.set_xlabel("stage today")
        ax.set_ylabel("stage the day before")
        plots["lifecycle_transitions"] = _png(figure)
    calibration = pd.DataFrame(numbers["churn"]["calibration"])
    if len(calibration):
        figure, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        ax.plot(calibration["mean_predicted"], calibration["observed_rate"], marker="o", label="churn model")
        ax.set_xlabel("predicted churn risk")
        ax.set_ylabel("observed churn rate")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        plots["churn_calibration"] = _png(figure)
    quality = pd.DataFrame(numbers["churn"]["quality"])
    if len(quality):
        plots["churn_quality"] = _by_model_over_time(quality, "auc", "AUC on the backtest")
    ndcg = pd.DataFrame(numbers["recommender"]["ndcg_at_10"])
    if len(ndcg):
        plots["recommender_ndcg"] = _by_model_over_time(ndcg, "ndcg_at_10", "nDCG@10 on the holdout")
    lifts = pd.DataFrame(numbers["campaigns"]["results"])
    if len(lifts):
        lifts = lifts[(lifts["metric"] == "orders_per_customer") & lifts["abs_lift"].notna()]
    if len(lifts):
        figure, ax = plt.subplots(figsize=(7, 0.45 * len(lifts) + 1.2))
        labels = [f"{r.campaign_id} {r.cohort_date}" for r in lifts.itertuples()]
        colors = ["#c53030" if r.is_srm_mismatch else "#2b6cb0" for r in lifts.itertuples()]
        y = np.arange(len(lifts))
        for row, (r, color) in enumerate(zip(lifts.itertuples(), colors, strict=True)):
            ax.plot([r.abs_ci_low, r.abs_ci_high], [row, row], color=color, linewidth=2)
            ax.plot([r.abs_lift], [row], marker="o", color=color)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("lift in orders per customer, target - control (95% interval)")
        plots["campaign_lift"] = _png(figure)
    return plots


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


def _count(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


def _percent(value, digits: int = 1) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f}%"


def _signed_percent(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):+.1f}%"


def _p_value(value) -> str:
    return "–" if value is None or pd.isna(value) else ("< 0.001" if value < 0.001 else f"{float(value):.3f}")


def _number(value, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):,.{digits}f}"


def render_html(numbers: dict, plots: dict[str, bytes]) -> str:
    """The self-contained HTML page of ``numbers`` with ``plots`` inlined."""
    import jinja2

    currency = numbers["currency"]
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters.update(
        count=_count,
        percent=_percent,
        signed_percent=_signed_percent,
        number=_number,
        p_value=_p_value,
        money=lambda v: "–" if v is None or pd.isna(v) else f"{currency} {float(v):,.2f}",
        seconds=lambda v: "–" if v is None else f"{float(v):,.1f} s",
    )
    # a plot without data is missing: the page leaves its image out (the section says why)
    images = defaultdict(str, {name: "data:image/png;base64," + base64.b64encode(data).decode()
                               for name, data in plots.items()})  # fmt: skip
    template = environment.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(n=numbers, images=images, kpi_trends=KPI_TRENDS)


def build_report(config: PipelineConfig, day: date) -> dict:
    """Write D's report (plots, HTML, then JSON) under ``reports_root/nightly/date=D/``."""
    storage = open_storage(config.storage.reports_root, config.storage.s3_endpoint_url, config.storage.s3_region)
    numbers = report_numbers(config, day)
    plots = report_plots(numbers)
    prefix = report_prefix(day)
    stale = {info.key for info in storage.list(prefix + "plots/")} - {f"{prefix}plots/{name}.png" for name in plots}
    for name, data in plots.items():
        storage.write_bytes(f"{prefix}plots/{name}.png", data)
    for key in stale:  # a plot that has no data any more (re-run after a fix) must not linger
        storage.delete_prefix(key)
    numbers["plots"] = sorted(f"plots/{name}.png" for name in plots)
    storage.write_bytes(prefix + "report.html", render_html(numbers, plots).encode("utf-8"))
    storage.write_bytes(prefix + "report.json", json.dumps(numbers, indent=2, default=str).encode("utf-8"))
    log.info("%s report: %d plots, written to %s", day, len(plots), storage.uri(prefix))
    return {"snapshot_date": day.isoformat(), "report": storage.uri(prefix + "report.html"), "plots": len(plots)}
