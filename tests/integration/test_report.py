"""The nightly report (jobs/reporting/nightly.py) on the small shop's last night: every
section, the warehouse's own numbers in the JSON, non-empty plots, a page that needs no
network; and a correct page for a date without campaigns or history, and for a night whose
gate refused the model (with a cohort flagged for a sample-ratio mismatch)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
SECTIONS = ("runs", "reconciliation", "quality", "kpis", "customers", "tags", "churn", "recommender", "campaigns")


def query(config, sql: str, **params) -> pd.DataFrame:
    from jobs.platform.warehouse import query_frame

    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        return query_frame(conn, sql, **params)


def written(config, day) -> tuple[str, dict, dict[str, bytes]]:
    from jobs.platform.storage import open_storage
    from jobs.reporting.nightly import report_prefix

    storage = open_storage(config.storage.reports_root)
    prefix = report_prefix(day)
    html = storage.read_bytes(prefix + "report.html").decode()
    numbers = json.loads(storage.read_bytes(prefix + "report.json"))
    plots = {info.key.rsplit("/", 1)[1]: storage.read_bytes(info.key) for info in storage.list(prefix + "plots/")}
    return html, numbers, plots


@pytest.fixture(scope="module")
def report(small_shop):
    from jobs.platform.stages import run_pipeline

    run_pipeline(small_shop.config, small_shop.last, ["kpis", "report"])
    return (small_shop.config, small_shop.last, *written(small_shop.config, small_shop.last))


def test_every_section_is_there_with_its_plots_and_the_page_needs_no_network(report):
    config, day, html, numbers, plots = report
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert {"kpi_trends", "lifecycle_transitions", "campaign_lift"} <= {name.removesuffix(".png") for name in plots}
    assert numbers["plots"] == sorted(f"plots/{name}" for name in plots)
    for name, data in plots.items():
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000, name
        assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["']https?:""", html)  # plots and styles inline
    assert html.count("<img ") == len(plots)  # each plot inlined once


def test_the_json_numbers_are_the_warehouses(report):
    config, day, _, numbers, _ = report
    runs = query(
        config,
        "select stage, status from ops_stage_runs where logical_date = :d and stage <> 'report' order by started_at",
        d=day,
    )
    assert [(r["stage"], r["status"]) for r in numbers["runs"]] == list(runs.itertuples(index=False, name=None))
    reconciliation = query(
        config,
        "select dataset, rows_in, rows_out, rows_quarantined, rows_duplicate from ops_pipeline_runs "
        "where logical_date = :d and stage = 'clean' order by dataset",
        d=day,
    )
    got = [r for r in numbers["reconciliation"] if r["stage"] == "clean"]
    assert [(r["dataset"], r["rows_in"], r["rows_out"], r["rows_quarantined"], r["rows_duplicate"]) for r in got] == [
        tuple(int(v) if not isinstance(v, str) else v for v in row) for row in reconciliation.itertuples(index=False)
    ]
    quarantine = query(config, "select sum(row_count) as n from ops_quarantine_daily where logical_date = :d", d=day)
    assert sum(r["row_count"] for r in numbers["quarantine"]) == int(quarantine["n"].fillna(0).iloc[0])
    kpi = query(config, "select net_sales_amount, order_count from mart_kpi_daily where kpi_date = :d", d=day)
    assert numbers["kpis"]["today"]["net_sales_amount"] == pytest.approx(float(kpi["net_sales_amount"].iloc[0]))
    assert numbers["kpis"]["today"]["order_count"] == int(kpi["order_count"].iloc[0])
    rfm = query(config, "select rfm_group, count(*) as n from mart_user_rfm where snapshot_date = :d group by 1", d=day)
    assert numbers["customers"]["rfm_groups"] == dict(zip(rfm["rfm_group"], rfm["n"].astype(int), strict=True))
    funnel = query(
        config, "select campaign_id, target, exported from mart_campaign_funnel where snapshot_date = :d", d=day
    )
    assert {(r["campaign_id"], r["target"], r["exported"]) for r in numbers["campaigns"]["funnel"]} == set(
        funnel.itertuples(index=False, name=None)
    )
    lift = query(
        config,
        "select campaign_id, abs_lift, abs_ci_low, abs_ci_high from mart_campaign_results "
        "where measured_on = :d and metric = 'orders_per_customer' and adjustment = 'none'",
        d=day,
    )
    mine = [r for r in numbers["campaigns"]["results"] if r["metric"] == "orders_per_customer"]
    assert len(lift) > 0 and {(r["campaign_id"], round(r["abs_lift"], 9)) for r in mine} == {
        (c, round(v, 9)) for c, v in zip(lift["campaign_id"], lift["abs_lift"], strict=True)
    }


def test_a_date_without_history_or_campaigns_and_a_refused_gate_render(small_shop):
    """Before the shop's first day: nothing ran, nothing was measured. A synthetic refused gate
    and a cohort whose split is off show as such (the warning in red)."""
    from jobs.reporting.nightly import build_report

    config = small_shop.config
    empty = small_shop.nights[0] - timedelta(days=40)
    build_report(config, empty)
    html, numbers, plots = written(config, empty)
    assert plots == {} and numbers["runs"] == [] and numbers["campaigns"]["funnel"] == []
    for phrase in ("No stage ran for this date.", "No campaign ran on this date.", "No KPIs for this date yet.",
                   "The churn model has not been trained yet"):  # fmt: skip
        assert phrase in html

    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    refused = empty + timedelta(days=1)
    reason = "ALS ndcg@10 0.1 is below popularity 0.2 x 1.10"
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "insert into ops_pipeline_runs (logical_date, stage, dataset, status, details_json, recorded_at) "
                    "values (:d, 'recommender', 'recommendations', 'failed', :details, now())"
                ),
                {"d": refused, "details": json.dumps({"gate": reason})},
            )
            conn.execute(
                sa.text(
                    "insert into mart_campaign_results (campaign_id, cohort_date, metric, adjustment, window_days, "
                    "window_end_date, n_target, n_control, abs_lift, abs_ci_low, abs_ci_high, is_srm_mismatch, "
                    "is_valid, note, measured_on, loaded_at) values ('probe', :c, 'orders_per_customer', 'none', 1, "
                    ":d, 900, 40, 0.1, 0.0, 0.2, true, false, 'sample ratio mismatch (p = 1e-09)', :d, now())"
                ),
                {"c": refused - timedelta(days=1), "d": refused},
            )
        build_report(config, refused)
        html, numbers, plots = written(config, refused)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("delete from ops_pipeline_runs where logical_date = :d"), {"d": refused})
            conn.execute(sa.text("delete from mart_campaign_results where campaign_id = 'probe'"))
    assert numbers["recommender"]["gate"] == [{"date": refused.isoformat(), "status": "failed", "reason": reason}]
    assert "refused" in html and reason in html
    assert '<tr class="srm">' in html and "SAMPLE RATIO MISMATCH" in html and "campaign_lift.png" in plots


def test_the_report_is_archived_in_s3_and_a_rerun_replaces_it_whole(report, s3_server, aws_env, monkeypatch):
    """reports_root on an S3 API: the same files as the local report, and a re-run after a
    plot lost its data leaves no stale plot behind."""
    import boto3

    from jobs.platform.storage import open_storage
    from jobs.reporting import nightly

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="shop-reports")
    config, day, html, numbers, plots = report
    storage = {"reports_root": "s3://shop-reports/reports", "s3_endpoint_url": s3_server}
    on_s3 = config.model_copy(update={"storage": config.storage.model_copy(update=storage)})
    nightly.build_report(on_s3, day)
    archive = open_storage(on_s3.storage.reports_root, s3_server)
    prefix = nightly.report_prefix(day)
    keys = {info.key.removeprefix(prefix) for info in archive.list(prefix)}
    assert keys == {"report.html", "report.json"} | {f"plots/{name}" for name in plots}
    archived = json.loads(archive.read_bytes(prefix + "report.json"))
    assert {k: v for k, v in archived.items() if k != "generated_at"} == {
        k: v for k, v in numbers.items() if k != "generated_at"
    }
    for name in plots:
        assert archive.read_bytes(f"{prefix}plots/{name}").startswith(b"\x89PNG"), name

    lost = next(iter(plots)).removesuffix(".png")
    drawn = nightly.report_plots
    monkeypatch.setattr(nightly, "report_plots", lambda n: {k: v for k, v in drawn(n).items() if k != lost})
    nightly.build_report(on_s3, day)
    assert {info.key.removeprefix(prefix) for info in archive.list(prefix)} == keys - {f"plots/{lost}.png"}
    assert f"plots/{lost}.png" not in json.loads(archive.read_bytes(prefix + "report.json"))["plots"]
