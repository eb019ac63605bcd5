"""The nightly DAG file imports cleanly through Airflow's DagBag and is wired as the data flows.

Airflow is imported in a subprocess (own AIRFLOW_HOME, no example DAGs, its own SQLite
metadata path), which prints a JSON description of the DAG; the tests check that description.
This keeps Airflow's settings and logging out of the pytest process that also runs Spark.
``jobs.platform.orchestration.business_date`` is plain Python and is tested in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs.platform.config import PROJECT_ROOT, load_config
from jobs.platform.orchestration import PUBLISHED_TABLES, asset_uri, business_date, json_safe

DAG_ID = "marketing_nightly"
ALERTS = ["jobs.platform.alerts.LogNotifier"]  # the notifiers of a task's on_failure_callback
SHANGHAI = ZoneInfo("Asia/Shanghai")

DESCRIBE = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids)}
    dag = bag.dags.get(sys.argv[2])
    if dag is not None:
        cycle = None
        try:
            dag.check_cycle()
        except Exception as exc:
            cycle = f"{type(exc).__name__}: {exc}"
        serialized = None
        try:
            from airflow.serialization.serialized_objects import DagSerialization

            DagSerialization.from_dict(DagSerialization.to_dict(dag))
        except Exception as exc:
            serialized = f"{type(exc).__name__}: {exc}"
        timetable = dag.timetable
        out["dag"] = {
            "cycle_error": cycle,
            "serialization_error": serialized,
            "timetable_class": type(timetable).__name__,
            "cron": getattr(timetable, "expression", None),
            "timezone": str(getattr(timetable, "timezone", None)),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "tags": sorted(dag.tags),
            "doc_md": dag.doc_md,
            "start_date": dag.start_date.isoformat() if dag.start_date else None,
            "start_date_tz": str(getattr(dag.start_date, "tzinfo", None)),
            "params": sorted(dag.params.keys()),
            "fileloc": dag.fileloc,
            "tasks": {
                t.task_id: {
                    "upstream": sorted(t.upstream_task_ids),
                    "downstream": sorted(t.downstream_task_ids),
                    "retries": t.retries,
                    "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
                    "retry_exponential_backoff": bool(t.retry_exponential_backoff),
                    "retry_delay_s": t.retry_delay.total_seconds() if t.retry_delay else None,
                    "max_retry_delay_s": t.max_retry_delay.total_seconds() if t.max_retry_delay else None,
                    "owner": t.owner,
                    "on_failure_callback": [
                        # a function, or a notifier instance (named by its class)
                        f"{c.__module__}.{getattr(c, '__qualname__', type(c).__qualname__)}" for c in (
                            t.on_failure_callback if isinstance(t.on_failure_callback, list)
                            else [t.on_failure_callback] if t.on_failure_callback else []
                        )
                    ],
                    "outlets": [
                        {"type": type(o).__name__, "uri": getattr(o, "uri", None), "group": getattr(o, "group", None)}
                        for o in t.outlets
                    ],
                }
                for t in dag.tasks
            },
        }
    print("DAG-JSON:" + json.dumps(out, default=str))
    """
)


def _describe(tmp_path_factory, dag_id: str, **settings: str) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MKT_"))}
    env.update(settings)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            "GX_ANALYTICS_ENABLED": "False",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", DESCRIBE, str(PROJECT_ROOT / "dags"), dag_id],
        env=env,
        cwd=str(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAG-JSON:")]
    assert proc.returncode == 0 and lines, f"DagBag subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("DAG-JSON:") :])


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    return _describe(tmp_path_factory, DAG_ID)


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    return _describe(tmp_path_factory, "marketing_customers")["dag"]


def test_the_customers_dag_runs_on_published_orders_and_updates_the_mart_assets(customers):
    config = load_config(environ={})
    assert customers["cycle_error"] is None and customers["serialization_error"] is None
    assert customers["timetable_class"] == "AssetTriggeredTimetable"
    assert customers["catchup"] is False and customers["params"] == ["business_date"]
    assert set(customers["tasks"]) == {"segments", "scores", "tags"}
    for task in customers["tasks"].values():
        assert task["retries"] >= 1 and task["retry_exponential_backoff"]
    assert {o["uri"] for o in customers["tasks"]["segments"]["outlets"]} == {
        asset_uri(config, t) for t in ("mart_user_rfm", "mart_user_lifecycle", "mart_lifecycle_transitions")
    }
    assert {o["uri"] for o in customers["tasks"]["scores"]["outlets"]} == {
        asset_uri(config, t) for t in ("mart_customer_scores", "mart_churn_model_quality", "mart_churn_calibration")
    }
    assert {o["uri"] for o in customers["tasks"]["tags"]["outlets"]} == {
        asset_uri(config, t) for t in ("mart_user_tags", "mart_user_profile")
    }
    assert set(customers["tasks"]["tags"]["upstream"]) == {"segments", "scores"}  # the profile joins both


def test_the_recommender_dag_runs_on_published_lifecycle_stages(tmp_path_factory):
    config = load_config(environ={})
    recommender = _describe(tmp_path_factory, "marketing_recommender")["dag"]
    assert recommender["cycle_error"] is None and recommender["serialization_error"] is None
    assert recommender["timetable_class"] == "AssetTriggeredTimetable"
    assert recommender["catchup"] is False and recommender["params"] == ["business_date"]
    assert set(recommender["tasks"]) == {"recommender", "finished"}
    task = recommender["tasks"]["recommender"]
    assert task["retries"] >= 1 and task["on_failure_callback"] == ALERTS
    assert {o["uri"] for o in task["outlets"]} == {
        asset_uri(config, t)
        for t in ("mart_recommendations", "mart_similar_items", "mart_buy_again", "mart_model_evaluation")
    }
    assert "A refused model fails this task" in recommender["doc_md"]
    # whatever the gate said, the date is announced for the campaigns DAG
    finished = recommender["tasks"]["finished"]
    assert finished["upstream"] == ["recommender"] and finished["trigger_rule"] == "all_done"
    assert [o["uri"] for o in finished["outlets"]] == ["marketing://recommender/finished"]


def test_the_campaigns_dag_runs_on_the_profile_and_the_finished_recommender(tmp_path_factory):
    config = load_config(environ={})
    campaigns = _describe(tmp_path_factory, "marketing_campaigns")["dag"]
    assert campaigns["cycle_error"] is None and campaigns["serialization_error"] is None
    assert campaigns["timetable_class"] == "AssetTriggeredTimetable"
    assert campaigns["catchup"] is False and campaigns["params"] == ["business_date"]
    tasks = campaigns["tasks"]
    assert tasks["allocate"]["upstream"] == ["associations"] and tasks["export"]["upstream"] == ["allocate"]
    assert sorted(tasks["report"]["upstream"]) == ["export", "kpis", "measure"]  # the night's last word
    assert {o["uri"] for o in tasks["allocate"]["outlets"]} == {
        asset_uri(config, t) for t in ("mart_campaign_targets", "mart_campaign_funnel", "fct_campaign_contacts")
    }
    for task in tasks.values():
        assert task["retries"] >= 1 and task["on_failure_callback"] == ALERTS


@pytest.fixture(scope="module")
def dag(described):
    assert DAG_ID in described["dag_ids"], described
    return described["dag"]


def test_the_dag_folder_imports_without_errors(described):
    assert described["import_errors"] == {}
    assert described["dag_ids"] == [
        "marketing_campaigns", "marketing_customers", DAG_ID, "marketing_recommender", "marketing_watchdog"
    ]  # fmt: skip


def test_the_watchdog_checks_the_due_night_at_the_deadline_and_alerts_through_every_notifier(tmp_path_factory):
    described = _describe(
        tmp_path_factory,
        "marketing_watchdog",
        MKT_ALERTS__FINISH_BY="06:30",
        MKT_ALERTS__WEBHOOK_URL="https://hooks.example.invalid/T000/B000/XXXX",
        MKT_ALERTS__SMTP_CONN_ID="alerts_smtp",
        MKT_ALERTS__EMAIL_TO='["oncall@example.com"]',
    )
    watchdog = described["dag"]
    assert watchdog["cycle_error"] is None and watchdog["serialization_error"] is None
    assert watchdog["timetable_class"] == "CronDataIntervalTimetable"
    assert watchdog["cron"] == "30 6 * * *" and watchdog["timezone"] == "Asia/Shanghai"
    assert set(watchdog["tasks"]) == {"deadline", "freshness"} and watchdog["params"] == ["business_date"]
    for task in watchdog["tasks"].values():
        assert task["retries"] == 0  # a finding alerts at once
        assert task["on_failure_callback"] == [
            "jobs.platform.alerts.LogNotifier",
            "jobs.platform.alerts.WebhookNotifier",
            "jobs.platform.alerts._mail_notifier_class.<locals>.MailNotifier",
        ]


def test_the_dag_has_no_cycles_and_serialises_for_the_scheduler(dag):
    assert dag["cycle_error"] is None
    assert dag["serialization_error"] is None
    assert dag["fileloc"].endswith("marketing_nightly.py")


def test_the_schedule_is_a_cron_data_interval_in_the_shops_time_zone(dag):
    config = load_config(environ={})
    assert dag["timetable_class"] == "CronDataIntervalTimetable"
    assert dag["cron"] == config.airflow.schedule
    assert dag["timezone"] == config.shop.timezone == "Asia/Shanghai"
    # midnight of the configured start date in the shop's zone (Airflow keeps it in UTC)
    expected = datetime.fromisoformat(config.airflow.start_date).replace(tzinfo=ZoneInfo(config.shop.timezone))
    assert datetime.fromisoformat(dag["start_date"]) == expected


def test_no_catchup_one_run_at_a_time_tags_docs_and_the_business_date_param(dag):
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert dag["tags"] and "marketing" in dag["tags"]
    assert "Nightly marketing pipeline" in dag["doc_md"]
    for task_id in (
        "collect_events",
        "collect_sources",
        "clean_sources",
        "clean_events",
        "validate",
        "load",
        "retention",
    ):
        assert task_id in dag["doc_md"]
    assert dag["params"] == ["business_date"]


def test_every_task_retries_with_exponential_backoff_and_alerts_on_failure(dag):
    for task_id, task in dag["tasks"].items():
        assert task["retries"] >= 1, task_id
        assert task["retry_exponential_backoff"] is True, task_id
        assert task["retry_delay_s"] and task["retry_delay_s"] > 0, task_id
        assert task["max_retry_delay_s"] and task["max_retry_delay_s"] >= task["retry_delay_s"], task_id
        assert task["on_failure_callback"] == ALERTS, task_id
        assert task["owner"] == "data-engineering"


def test_task_dependencies_follow_the_data_flow(dag):
    upstream = {task_id: task["upstream"] for task_id, task in dag["tasks"].items()}
    assert upstream == {
        "collect_events": [],
        "collect_sources": [],
        "clean_sources": ["collect_sources"],
        # events are checked against the products cleaned for the same date
        "clean_events": ["clean_sources", "collect_events"],
        "validate": ["clean_events", "clean_sources"],
        "load": ["validate"],
        "retention": ["load"],  # old partitions go only after the date is published
    }
    assert dag["tasks"]["retention"]["downstream"] == []


def test_every_collect_precedes_every_clean_which_precede_validate_then_load(dag):
    tasks = dag["tasks"]

    def ancestors(task_id):
        seen, todo = set(), list(tasks[task_id]["upstream"])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(tasks[current]["upstream"])
        return seen

    assert ancestors("load") == set(tasks) - {"load", "retention"}
    assert ancestors("retention") == set(tasks) - {"retention"}  # deletes old partitions last
    assert ancestors("validate") == {"collect_events", "collect_sources", "clean_sources", "clean_events"}
    for clean in ("clean_sources", "clean_events"):
        assert ancestors(clean) <= {"collect_events", "collect_sources", "clean_sources"}
        assert ancestors(clean) & {"collect_events", "collect_sources"}


def test_load_publishes_the_warehouse_assets_and_nothing_else_does(dag):
    config = load_config(environ={})
    outlets = dag["tasks"]["load"]["outlets"]
    assert {o["type"] for o in outlets} == {"Asset"}
    assert [o["uri"] for o in outlets] == [asset_uri(config, table) for table in PUBLISHED_TABLES]
    assert {o["group"] for o in outlets} == {"marketing_warehouse"}
    assert all(not task["outlets"] for task_id, task in dag["tasks"].items() if task_id != "load")


def test_asset_uris_name_the_table_without_credentials():
    config = load_config(
        environ={}, overrides={"warehouse": {"url": "postgresql+psycopg://owner:pw@db:5432/wh", "schema": "marketing"}}
    )
    assert asset_uri(config, "fct_orders") == "postgresql://marketing-warehouse/marketing/fct_orders"


# --------------------------------------------------------------------------------------------
# business_date
# --------------------------------------------------------------------------------------------

TZ = "Asia/Shanghai"


def test_business_date_is_the_interval_start_in_the_shops_time_zone():
    # the run for 2026-10-30 (local) covers [10-30 03:00 +08, 10-31 03:00 +08) = [10-29 19:00Z, 10-30 19:00Z)
    context = {
        "data_interval_start": datetime(2026, 10, 29, 19, 0, tzinfo=timezone.utc),
        "data_interval_end": datetime(2026, 10, 30, 19, 0, tzinfo=timezone.utc),
        "logical_date": datetime(2026, 10, 30, 19, 0, tzinfo=timezone.utc),
        "params": {"business_date": None},
    }
    assert business_date(context, TZ) == date(2026, 10, 30)


def test_business_date_uses_the_local_date_even_when_utc_is_on_the_previous_day():
    start = datetime(2026, 10, 30, 0, 30, tzinfo=SHANGHAI)  # 2026-10-29 16:30Z
    context = {"data_interval_start": start.astimezone(timezone.utc), "data_interval_end": start + timedelta(days=1)}
    assert business_date(context, TZ) == date(2026, 10, 30)
    assert business_date(context, "UTC") == date(2026, 10, 29)


@pytest.mark.parametrize("value", ["2026-10-01", date(2026, 10, 1)])
def test_the_business_date_param_overrides_the_interval(value):
    context = {
        "data_interval_start": datetime(2026, 10, 29, 19, 0, tzinfo=timezone.utc),
        "data_interval_end": datetime(2026, 10, 30, 19, 0, tzinfo=timezone.utc),
        "params": {"business_date": value},
    }
    assert business_date(context, TZ) == date(2026, 10, 1)


def test_a_bad_business_date_param_is_rejected():
    with pytest.raises(ValueError):
        business_date({"params": {"business_date": "31/10/2026"}}, TZ)


def test_a_manual_run_without_an_interval_processes_the_day_before_its_logical_date():
    logical = datetime(2026, 10, 31, 1, 0, tzinfo=timezone.utc)  # 09:00 local on 10-31
    for context in (
        {"logical_date": logical},
        {"logical_date": logical, "data_interval_start": logical, "data_interval_end": logical},
        {"logical_date": logical, "data_interval_start": None, "data_interval_end": None, "params": {}},
    ):
        assert business_date(context, TZ) == date(2026, 10, 30)


def test_without_any_date_in_the_context_it_falls_back_to_yesterday_locally():
    today = datetime.now(SHANGHAI).date()
    assert business_date({}, TZ) in (today - timedelta(days=1), today)  # midnight race tolerated


def test_a_stage_summary_becomes_strict_json_for_xcom():
    """A task's return value travels as strict JSON: a lift whose control mean is zero (NaN),
    an infinite ratio or a numpy count must not fail the task after its work is published."""
    import json
    import math

    import numpy as np

    summary = {"lift": {"cart@2026-10-01": [math.nan, -math.inf, 0.5]}, "rows": np.int64(3), "share": np.float64(0.1)}
    safe = json_safe(summary)
    assert json.loads(json.dumps(safe, allow_nan=False)) == {
        "lift": {"cart@2026-10-01": [None, None, 0.5]},
        "rows": 3,
        "share": 0.1,
    }
