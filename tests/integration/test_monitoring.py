"""Operating the pipeline: the alert notifiers against a real HTTP and SMTP server, the night's
deadline and stale tables, the ops views and ``marketing status`` on the shared small shop."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from jobs.cli.status import needs_attention, render
from jobs.platform.alerts import LogNotifier, WebhookNotifier, failure_notifiers
from jobs.platform.errors import ContractViolation, DeadlineMissedError, StaleDataError
from jobs.platform.monitoring import (
    check_deadline,
    check_freshness,
    deadline_for,
    last_due_date,
    stale_tables,
    status_report,
)
from jobs.platform.ops import record_stage_run, warehouse_engine
from jobs.platform.stages import ALL_STAGES
from jobs.platform.warehouse import record_freshness

pytestmark = pytest.mark.integration
NIGHT = date(2026, 10, 14)
ERROR = "contract marketing.clean_events v1.0.0: check event_id__not_null: 3 of 900 rows failed"


def failure_context() -> dict:
    ti = SimpleNamespace(
        dag_id="marketing_nightly", task_id="validate", try_number=3, run_id="scheduled__2026-10-14",
        log_url="http://airflow.example/dags/marketing_nightly/runs/x/tasks/validate",
    )  # fmt: skip
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "exception": ContractViolation(ERROR)}


def test_the_log_notifier_writes_one_alert_line(caplog):
    with caplog.at_level(logging.ERROR, logger="marketing.alerts"):
        LogNotifier()(failure_context())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "marketing.alerts"]
    assert line.startswith("ALERT marketing pipeline failure dag=marketing_nightly task=validate")
    assert "try=3" in line and f"error=ContractViolation: {ERROR}" in line


def test_the_webhook_notifier_posts_the_alert_as_json(webhook_sink, caplog):
    WebhookNotifier(webhook_sink.url)(failure_context())
    (body,) = webhook_sink.requests
    assert body["text"].startswith("marketing pipeline: marketing_nightly.validate failed")
    assert body["dag_id"] == "marketing_nightly" and body["task_id"] == "validate" and body["try_number"] == 3
    assert ERROR in body["error"] and body["log_url"].startswith("http://airflow.example/")
    # an unreachable webhook is logged, without its path (it may hold a token), and never raises
    with caplog.at_level(logging.WARNING, logger="marketing.alerts"):
        WebhookNotifier("http://127.0.0.1:9/T0/B0/secret-token", timeout_s=2)(failure_context())
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "alert webhook to 127.0.0.1:9 failed" in warning and "secret-token" not in warning


def test_the_mail_notifier_sends_through_the_airflow_smtp_connection(smtp_sink, make_config, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SMTP", smtp_sink.conn_uri)
    config = make_config(alerts={"smtp_conn_id": "alerts_smtp", "email_to": ["oncall@example.com"]})
    log_only, mail = failure_notifiers(config)
    assert isinstance(log_only, LogNotifier)
    mail(failure_context())
    (message,) = smtp_sink.messages
    assert message["Subject"] == "[marketing] marketing_nightly.validate failed"
    assert message["To"] == "oncall@example.com" and message["From"] == "pipeline@example.com"
    body = "".join(part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart())
    assert "check event_id__not_null: 3 of 900 rows failed" in body


def test_alert_settings_are_checked(make_config):
    from jobs.platform.errors import ConfigError

    with pytest.raises(ConfigError, match="smtp_conn_id and email_to go together"):
        make_config(alerts={"smtp_conn_id": "alerts_smtp"})
    with pytest.raises(ConfigError, match="alerts.finish_by"):
        make_config(alerts={"finish_by": "7am"})


def _record_night(config, day: date, statuses: dict[str, str]) -> None:
    start = datetime(2026, 10, 14, 19, 0, tzinfo=UTC)
    for k, (stage, status) in enumerate(statuses.items()):
        begun = start + timedelta(minutes=k)
        error = "ModelGateError: does not beat popularity" if status == "failed" else None
        record_stage_run(config, day, stage, status, begun, begun + timedelta(seconds=30), error, 512 * 2**20)


def test_a_night_is_due_at_finish_by_local_time_the_next_morning(make_config):
    config = make_config(alerts={"finish_by": "07:00"})  # Asia/Shanghai, UTC+8
    assert deadline_for(config, NIGHT) == datetime(2026, 10, 14, 23, 0, tzinfo=UTC)  # 07:00 on the 15th
    assert last_due_date(config, datetime(2026, 10, 14, 22, 59, tzinfo=UTC)) == NIGHT - timedelta(days=1)
    assert last_due_date(config, datetime(2026, 10, 14, 23, 0, tzinfo=UTC)) == NIGHT


def test_the_deadline_names_what_is_missing_once_it_has_passed(make_config):
    config = make_config()
    statuses = {stage: "success" for stage in ALL_STAGES}
    statuses.update(recommender="failed")
    del statuses["report"]
    _record_night(config, NIGHT, statuses)
    before = check_deadline(config, NIGHT, now=datetime(2026, 10, 14, 22, 0, tzinfo=UTC))
    assert before["unfinished"] == {"recommender": "failed", "report": "not run"}
    with pytest.raises(DeadlineMissedError) as missed:
        check_deadline(config, NIGHT, now=datetime(2026, 10, 14, 23, 0, tzinfo=UTC))
    assert str(missed.value) == (
        "night 2026-10-14 not finished by 2026-10-15 07:00 Asia/Shanghai: recommender failed, report not run"
    )
    _record_night(config, NIGHT, {"recommender": "skipped", "report": "success"})  # re-run: the rows replaced
    assert check_deadline(config, NIGHT, now=datetime(2026, 10, 20, tzinfo=UTC))["unfinished"] == {}


def test_tables_are_stale_when_older_than_the_due_night_and_never_move_back(make_config):
    config = make_config()
    engine = warehouse_engine(config)
    with engine.begin() as conn:
        record_freshness(conn, "main", NIGHT, "load", {"dim_user": 10, "fct_orders": 5})
        record_freshness(conn, "main", NIGHT - timedelta(days=3), "recommender", {"mart_recommendations": 90})
        record_freshness(conn, "main", NIGHT - timedelta(days=5), "load", {"dim_user": 9})  # a backfill
    assert [t["table"] for t in stale_tables(config, due=NIGHT)] == ["mart_recommendations"]
    with pytest.raises(StaleDataError, match=r"1 published table\(s\) older than 2026-10-14: mart_recommendations"):
        check_freshness(config, NIGHT)
    assert check_freshness(config, NIGHT - timedelta(days=3))["stale_tables"] == []
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("select table_name, rows_published from ops_table_freshness")).all())
    assert rows == {"dim_user": 10, "fct_orders": 5, "mart_recommendations": 90}


def test_status_shows_runs_failures_the_deadline_and_stale_tables(make_config):
    config = make_config()
    _record_night(config, NIGHT - timedelta(days=1), {stage: "success" for stage in ALL_STAGES})
    _record_night(config, NIGHT, {"collect_events": "success", "clean_events": "success", "recommender": "failed"})
    with warehouse_engine(config).begin() as conn:
        record_freshness(conn, "main", NIGHT - timedelta(days=1), "recommender", {"mart_recommendations": 90})
    report = status_report(config, days=3, now=datetime(2026, 10, 15, 1, 0, tzinfo=UTC))  # 09:00 on the 15th
    assert report["dates"] == ["2026-10-12", "2026-10-13", "2026-10-14"]
    assert report["runs"]["recommender"] == {"2026-10-12": None, "2026-10-13": "success", "2026-10-14": "failed"}
    assert report["latest"]["collect_events"] == {
        "date": "2026-10-14", "status": "success", "duration_s": 30.0, "peak_rss_mb": 512.0
    }  # fmt: skip
    assert report["failures"] == [
        {"date": "2026-10-14", "stage": "recommender", "error": "ModelGateError: does not beat popularity"}
    ]
    deadline = report["deadline"]
    assert deadline["business_date"] == "2026-10-14" and deadline["passed"] and not deadline["met"]
    assert deadline["unfinished"]["recommender"] == "failed" and deadline["unfinished"]["report"] == "not run"
    assert [t["table"] for t in report["stale_tables"]] == ["mart_recommendations"]
    assert needs_attention(report)
    plain = render(report, colour=False)
    assert "Night 2026-10-14: NOT done by 2026-10-15T07:00+08:00: collect_sources not run, clean_sources" in plain
    assert "2026-10-14 recommender: ModelGateError: does not beat popularity" in plain
    assert "mart_recommendations: newest 2026-10-13 (due 2026-10-14, recommender)" in plain
    assert "\033[" not in plain and "\033[31m" in render(report, colour=True)
    # the night before, everything was done: nothing to act on
    earlier = status_report(
        config, days=3, now=datetime(2026, 10, 15, 1, 0, tzinfo=UTC), night=NIGHT - timedelta(days=1)
    )
    assert earlier["deadline"]["met"] and earlier["stale_tables"] == [] and not needs_attention(earlier)


def test_the_small_shops_ops_views_and_status(small_shop, tmp_path):
    config = small_shop.config
    with warehouse_engine(config).connect() as conn:
        metrics = conn.execute(
            sa.text(
                "select dataset, rows_in, rows_out, rows_quarantined, rows_duplicate, quarantine_rate, duration_s, "
                "peak_rss_mb from ops_task_metrics where logical_date = :d and stage = 'clean_events'"
            ),
            {"d": small_shop.last},
        ).all()
        freshness = dict(conn.execute(sa.text("select table_name, logical_date from ops_table_freshness")).all())
        trend = conn.execute(
            sa.text("select checks, failed_errors, quarantine_rate from ops_quality_trend where dataset = 'events'")
        ).all()
    ((dataset, rows_in, rows_out, quarantined, duplicates, rate, seconds, peak),) = metrics
    assert dataset == "events" and rows_in == rows_out + quarantined + duplicates and quarantined > 0
    assert rate == pytest.approx(quarantined / rows_in) and seconds > 0 and peak > 100  # MiB: Python + JVM
    published = ("dim_user", "fct_orders", "mart_user_tags", "mart_customer_scores", "mart_campaign_targets")
    assert {freshness.get(t) for t in published} == {small_shop.last}, freshness
    assert len(trend) == len(small_shop.nights) and all(checks > 10 and not errors for checks, errors, _ in trend)

    raw = config.model_dump(mode="json", by_alias=True)
    raw.pop("source_file", None)
    (tmp_path / "pipeline.yaml").write_text(json.dumps(raw))
    command = [sys.executable, "-m", "jobs.cli.main", "--config", str(tmp_path / "pipeline.yaml"), "status",
               "--date", small_shop.last.isoformat(), "--days", "3"]  # fmt: skip
    shown = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "Stage runs" in shown.stdout and "\033[" not in shown.stdout  # not a terminal: no colour
    checked = subprocess.run([*command, "--check", "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(checked.stdout)
    assert report["runs"]["clean_events"] == {night.isoformat(): "success" for night in small_shop.nights}
    # the small shop runs no recommender and no report: its night is not finished
    assert checked.returncode == 1 and {"recommender", "report"} <= set(report["deadline"]["unfinished"])
