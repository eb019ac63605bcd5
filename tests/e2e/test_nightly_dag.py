"""The nightly DAG, run by Airflow 3 (``dag.test()``, in one worker process for the module:
see ``dag_worker.py``) on a small simulated shop.

Three consecutive nights and a re-run, checked against the simulator's ground truth:
counts per dirt kind, reconciliation, idempotent re-runs, late order status changes, and an
error-level contract violation that blocks publishing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from jobs.cli.airflow_env import airflow_env, ensure_metadata_db
from jobs.platform.config import PROJECT_ROOT, PipelineConfig, load_config
from jobs.platform.lake import (
    lake_storage,
    landing_storage,
    raw_events_prefix,
    read_json,
    window_for,
)
from jobs.platform.orchestration import PUBLISHED_TABLES
from jobs.platform.stages import run_pipeline
from jobs.simulator import SimulationSpec, World, generate, materialize
from tests.conftest import shop_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

SPEC = SimulationSpec(seed=11, days=11, users=300, products=120)
LAST = SPEC.start_date + timedelta(days=SPEC.days - 1)
NIGHT1, NIGHT2, NIGHT3 = LAST - timedelta(days=2), LAST - timedelta(days=1), LAST
REJECT_KINDS = (
    "malformed_json",
    "missing_required_field",
    "wrong_type",
    "invalid_timestamp",
    "invalid_enum",
    "unknown_product_id",
)


class DagWorker:
    """Runs DAGs through Airflow (``dag.test()``) in one long-lived process (``dag_worker.py``)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.dag_worker", str(log_path)],
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(self, dag_id: str, day: date, **extra_env: str) -> subprocess.CompletedProcess:
        """Run ``dag_id`` for ``day``; the result reads like ``airflow dags test``'s."""
        request = {"dag_id": dag_id, "date": day.isoformat(), "env": extra_env}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the DAG worker exited ({self.process.wait()}); its log: {self.log_path}")
        reply = json.loads(line)
        return subprocess.CompletedProcess([dag_id, day], 1 if reply["failed"] else 0, reply["output"], "")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=120)


@dataclass
class Shop:
    root: Path
    world: World
    config: PipelineConfig
    dags: DagWorker

    def advance(self, day: date) -> None:
        materialize(self.world, landing_storage(self.config), self.config.source.url, day, self.root / "truth")

    def run(self, day: date, **extra_env: str):
        return self.dags.run("marketing_nightly", day, **extra_env)

    def query(self, sql: str, **params) -> list[tuple]:
        engine = sa.create_engine(self.config.warehouse.url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()

    def published(self) -> dict[str, pd.DataFrame]:
        """Every published table, sorted, without load timestamps (for equality checks)."""
        engine = sa.create_engine(self.config.warehouse.url)
        try:
            with engine.connect() as conn:
                tables = {}
                for table in PUBLISHED_TABLES:
                    # dim_suppression's first_loaded_at stays in: a re-run never rewrites a suppression
                    frame = pd.read_sql(sa.text(f"select * from {table}"), conn).drop(
                        columns=["loaded_at"], errors="ignore"
                    )
                    tables[table] = frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)
                return tables
        finally:
            engine.dispose()


def _passed(result) -> bool:
    if result.returncode != 0:
        print(result.stdout[-5000:], result.stderr[-5000:])
    return result.returncode == 0


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    settings = shop_env(root)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MKT_")}
    env = airflow_env(home=root / "airflow", base={**base, **settings, "AIRFLOW_HOME": str(root / "airflow")})
    ensure_metadata_db(env)
    config = load_config(environ=settings)
    worker = DagWorker(env, root / "airflow-tasks.log")
    yield Shop(root=root, world=generate(SPEC), config=config, dags=worker)
    worker.close()


@pytest.fixture(scope="module")
def two_nights(shop: Shop) -> Shop:
    for night in (NIGHT1, NIGHT2):
        shop.advance(night)
        assert _passed(shop.run(night)), f"DAG run for {night} failed"
    return shop


def _truth_for_batch(shop: Shop, night: date) -> pd.Series:
    manifest = read_json(lake_storage(shop.config), raw_events_prefix(night) + "_manifest.json")
    keys = {entry["key"] for entry in manifest["files"]}
    truth = pd.read_parquet(shop.root / "truth" / "landing_files.parquet")
    return truth[truth["key"].isin(keys)].select_dtypes("number").sum()


def test_event_counts_match_the_simulators_truth_minus_the_injected_dirt(two_nights: Shop):
    for night in (NIGHT1, NIGHT2):
        truth = _truth_for_batch(two_nights, night)
        ((rows_in, clean, quarantined, duplicates),) = two_nights.query(
            "select rows_in, rows_out, rows_quarantined, rows_duplicate from ops_pipeline_runs "
            "where stage = 'clean' and dataset = 'events' and logical_date = :d",
            d=night,
        )
        assert rows_in == truth["n_lines"]
        assert clean == truth["n_valid"]
        assert duplicates == truth["n_duplicate"]
        by_reason = dict(
            two_nights.query(
                "select reason, row_count from ops_quarantine_daily where dataset = 'events' and logical_date = :d",
                d=night,
            )
        )
        assert by_reason == {kind: truth[f"n_{kind}"] for kind in REJECT_KINDS if truth[f"n_{kind}"] > 0}
        record = read_json(lake_storage(two_nights.config), f"_runs/clean/events/{night.isoformat()}.json")
        assert record["bot_events"] == truth["n_bot"]


def test_every_clean_stage_reconciles(two_nights: Shop):
    rows = two_nights.query(
        "select dataset, logical_date, rows_in, rows_out, rows_quarantined, rows_duplicate, status "
        "from ops_pipeline_runs where stage = 'clean'"
    )
    assert len(rows) == 2 * 6  # events and the five source tables, each night
    for dataset, day, rows_in, out, quarantined, duplicates, status in rows:
        assert status == "success"
        assert rows_in == out + quarantined + duplicates, (dataset, day)


def test_warehouse_holds_the_true_orders_users_and_items(two_nights: Shop):
    end = pd.Timestamp(window_for(NIGHT2, two_nights.config.tz).end)
    orders = pd.read_parquet(two_nights.root / "truth" / "orders.parquet")
    known = orders[orders["created_at"] < end]
    clean_orders = known[~known["is_dirty"]]
    dirty_items = pd.read_parquet(two_nights.root / "truth" / "order_items_dirty.parquet")
    dirty_items_of_clean_orders = dirty_items["order_id"].isin(clean_orders["order_id"]).sum()
    users = pd.read_parquet(two_nights.root / "truth" / "users.parquet")

    counts = {table: two_nights.query(f"select count(*) from {table}")[0][0] for table in PUBLISHED_TABLES}
    assert counts["fct_orders"] == len(clean_orders)
    assert counts["fct_order_items"] == clean_orders["n_items"].sum() - dirty_items_of_clean_orders
    assert counts["dim_user"] == (users["signup_at"] < end).sum()
    assert counts["dim_product"] == SPEC.products
    assert counts["fct_events_daily"] > 0
    suppressions = pd.read_parquet(two_nights.root / "truth" / "suppressions.parquet")
    suppressed = suppressions[suppressions["suppressed_at"] < end][["user_id", "channel", "reason"]]
    published = set(two_nights.query("select user_id, channel, reason from dim_suppression"))
    assert published == set(suppressed.itertuples(index=False, name=None)) and published
    ((bad_totals,),) = two_nights.query("select count(*) from fct_orders where total_amount < 0")
    assert bad_totals == 0


def test_a_late_order_status_change_is_applied(two_nights: Shop):
    tz = two_nights.config.tz
    start, end = window_for(NIGHT2, tz).start, window_for(NIGHT2, tz).end
    history = two_nights.world.order_status_history
    changed = history[(history["changed_at"] >= pd.Timestamp(start)) & (history["changed_at"] < pd.Timestamp(end))]
    orders = two_nights.world.orders.set_index("order_id")
    late = changed[changed["order_id"].map(orders["created_at"]) < pd.Timestamp(start)]
    late = late[
        ~late["order_id"].isin(
            pd.read_parquet(two_nights.root / "truth" / "orders.parquet").query("is_dirty")["order_id"]
        )
    ]
    assert len(late) > 0, "the simulated shop should have orders whose status changed a day later"
    latest = late.sort_values("changed_at").groupby("order_id").last()
    for order_id, row in latest.head(20).iterrows():
        ((status,),) = two_nights.query("select status from fct_orders where order_id = :o", o=int(order_id))
        assert status == row["status"], order_id


def test_rerunning_a_night_changes_nothing(two_nights: Shop):
    before = two_nights.published()
    runs_before = two_nights.query("select count(*) from ops_pipeline_runs")
    assert _passed(two_nights.run(NIGHT2))
    after = two_nights.published()
    for table in PUBLISHED_TABLES:
        pd.testing.assert_frame_equal(before[table], after[table], check_dtype=False)
    assert two_nights.query("select count(*) from ops_pipeline_runs") == runs_before


def test_customer_segments_dag_builds_rfm_and_lifecycle_from_published_data(two_nights: Shop):
    for night in (NIGHT1, NIGHT2):
        assert _passed(two_nights.dags.run("marketing_customers", night))
    ((buyers,),) = two_nights.query(
        "select count(distinct user_id) from fct_orders where status in ('paid', 'shipped', 'completed') "
        "and order_date <= :d",
        d=NIGHT2,
    )
    ((users,),) = two_nights.query("select count(*) from dim_user")
    groups = dict(
        two_nights.query("select rfm_group, count(*) from mart_user_rfm where snapshot_date = :d group by 1", d=NIGHT2)
    )
    assert sum(groups.values()) == buyers > 0
    stages = dict(
        two_nights.query(
            "select lifecycle_stage, count(*) from mart_user_lifecycle where snapshot_date = :d group by 1", d=NIGHT2
        )
    )
    assert sum(stages.values()) == users and stages.get("prospect", 0) > 0
    moved = two_nights.query(
        "select from_stage, to_stage, user_count from mart_lifecycle_transitions where snapshot_date = :d", d=NIGHT2
    )
    assert sum(n for _, _, n in moved) == users
    ((new_users,),) = two_nights.query(
        "select count(*) from mart_user_lifecycle c where snapshot_date = :d2 and not exists "
        "(select 1 from mart_user_lifecycle p where p.snapshot_date = :d1 and p.user_id = c.user_id)",
        d1=NIGHT1,
        d2=NIGHT2,
    )
    assert sum(n for source, _, n in moved if source == "(none)") == new_users

    profiles = two_nights.query(
        "select count(*), count(distinct user_id) from mart_user_profile where snapshot_date = :d", d=NIGHT2
    )
    assert profiles == [(users, users)]
    ((mismatched,),) = two_nights.query(
        "select count(*) from mart_user_profile p join mart_user_lifecycle l using (snapshot_date, user_id) "
        "where p.snapshot_date = :d and p.lifecycle_stage is distinct from l.lifecycle_stage",
        d=NIGHT2,
    )
    assert mismatched == 0
    tagged = dict(
        two_nights.query(
            "select tag, count(distinct user_id) from mart_user_tags where snapshot_date = :d group by 1", d=NIGHT2
        )
    )
    assert (
        tagged["gender"] == users
        and tagged["interest_category"] > 0
        and tagged["spending_power"] == sum(groups.values())
    )

    snapshot = "select * exclude (loaded_at) from {} order by all"
    before = {t: two_nights.query(snapshot.format(t)) for t in ("mart_user_rfm", "mart_user_tags", "mart_user_profile")}
    assert _passed(two_nights.dags.run("marketing_customers", NIGHT2))
    assert {t: two_nights.query(snapshot.format(t)) for t in before} == before


def test_the_recommender_dag_skips_a_shop_too_young_to_evaluate_and_says_why(two_nights: Shop):
    # 11 days of history: less than the 7-day holdout plus the 7-day tuning window before it
    result = two_nights.dags.run("marketing_recommender", NIGHT2)
    assert _passed(result)
    ((status, details),) = two_nights.query(
        "select status, details_json from ops_pipeline_runs where stage = 'recommender' and logical_date = :d", d=NIGHT2
    )
    assert status == "skipped" and "need 20 to tune and evaluate" in details
    assert two_nights.query("select count(*) from mart_recommendations") == [(0,)]


def test_the_campaigns_dag_allocates_exports_measures_and_counts_kpis(two_nights: Shop):
    from jobs.activation.campaigns_config import load_campaigns

    if two_nights.query("select count(*) from mart_user_profile where snapshot_date = :d", d=NIGHT2) == [(0,)]:
        assert _passed(two_nights.dags.run("marketing_customers", NIGHT2))
    assert _passed(two_nights.dags.run("marketing_campaigns", NIGHT2))
    funnel = two_nights.query(
        "select campaign_id, eligible, control, target, exported from mart_campaign_funnel where snapshot_date = :d",
        d=NIGHT2,
    )
    assert len(funnel) == len(load_campaigns().active(NIGHT2)) and sum(row[3] for row in funnel) > 0
    for campaign_id, _, _, target, exported in funnel:
        manifest = two_nights.root / "exports" / "campaigns" / campaign_id / f"date={NIGHT2}" / "_manifest.json"
        assert json.loads(manifest.read_text())["rows"] == exported <= target
    stages = dict(two_nights.query("select stage, status from ops_pipeline_runs where logical_date = :d", d=NIGHT2))
    assert {stages[s] for s in ("associations", "allocate", "export", "measure", "kpis")} == {"success"}
    assert two_nights.query("select count(*) from mart_kpi_daily where kpi_date = :d", d=NIGHT2) == [(1,)]


def test_the_watchdog_alerts_a_night_not_finished_in_time_through_every_notifier(
    two_nights: Shop, webhook_sink, smtp_sink
):
    """NIGHT1 ran only the nightly DAG: its deadline (07:00 the next morning) is long past, so
    the watchdog's deadline task fails, and Airflow's failure callback sends the alert to the
    log, the webhook and the SMTP server; the freshness task passes (NIGHT1 is not newer than
    any published table)."""
    result = two_nights.dags.run(
        "marketing_watchdog",
        NIGHT1,  # the business_date param: the night to check (a scheduled run checks the night just due)
        MKT_ALERTS__WEBHOOK_URL=webhook_sink.url,
        MKT_ALERTS__SMTP_CONN_ID="alerts_smtp",
        MKT_ALERTS__EMAIL_TO='["oncall@example.com"]',
        AIRFLOW_CONN_ALERTS_SMTP=smtp_sink.conn_uri,
    )
    assert result.returncode == 1
    (alert,) = webhook_sink.requests
    assert alert["dag_id"] == "marketing_watchdog" and alert["task_id"] == "deadline"
    assert f"night {NIGHT1} not finished by {NIGHT1 + timedelta(days=1)} 07:00 Asia/Shanghai" in alert["error"]
    assert "recommender not run" in alert["error"] and "collect_events" not in alert["error"]
    (mail,) = smtp_sink.messages
    assert mail["Subject"] == "[marketing] marketing_watchdog.deadline failed" and mail["To"] == "oncall@example.com"
    logged = two_nights.dags.log_path.read_text()
    assert "ALERT marketing pipeline failure dag=marketing_watchdog task=deadline" in logged


def test_a_tag_added_only_in_config_appears_in_both_published_tables(two_nights: Shop, tmp_path: Path):
    tags = yaml.safe_load((PROJECT_ROOT / "config" / "tags.yaml").read_text())
    tags["tags"].append(
        {
            "name": "mobile_first",
            "description": "Most behaviour on a phone app or mini program.",
            "source": "events",
            "kind": "rules",
            "score": "sessions",
            "rules": [{"value": "yes", "when": {"preferred_channel": {"in": ["app", "mini_program"]}}}],
            "default": "no",
            "where": {"active_days": {"gte": 1}},
        }
    )
    path = tmp_path / "tags.yaml"
    path.write_text(yaml.safe_dump(tags, sort_keys=False))
    # the same stages the customers DAG runs, in-process (the DAG itself is exercised above)
    config = two_nights.config.model_copy(
        update={"customers": two_nights.config.customers.model_copy(update={"tags_file": str(path)})}
    )
    run_pipeline(config, NIGHT2, ["customers"])

    long = dict(
        two_nights.query(
            "select user_id, value from mart_user_tags where snapshot_date = :d and tag = 'mobile_first'", d=NIGHT2
        )
    )
    wide = dict(
        two_nights.query(
            "select user_id, tag_mobile_first from v_user_profile_latest where tag_mobile_first is not null"
        )
    )
    assert long and long == wide and set(long.values()) == {"yes", "no"}
    active = dict(
        two_nights.query(
            "select user_id, count(*) from fct_events_daily where event_date > :d - 90 and event_date <= :d group by 1",
            d=NIGHT2,
        )
    )
    assert set(long) == set(active)


def test_an_error_level_contract_violation_blocks_publishing(two_nights: Shop, tmp_path: Path):
    strict = tmp_path / "contracts"
    shutil.copytree(PROJECT_ROOT / "data_contracts", strict)
    contract = yaml.safe_load((strict / "events.odcs.yaml").read_text())
    channel = next(p for p in contract["schema"][0]["properties"] if p["name"] == "channel")
    channel["quality"][0]["arguments"]["validValues"] = ["web", "app"]  # mini_program now breaks it
    (strict / "events.odcs.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))

    before = two_nights.published()
    two_nights.advance(NIGHT3)
    result = two_nights.run(NIGHT3, MKT_VALIDATION__CONTRACTS_DIR=str(strict))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "contract marketing.clean_events" in output and "channel_allowed" in output
    assert "on column channel" in output and "rows failed" in output

    after = two_nights.published()
    for table in PUBLISHED_TABLES:
        pd.testing.assert_frame_equal(before[table], after[table], check_dtype=False)
    stages = dict(two_nights.query("select stage, status from ops_pipeline_runs where logical_date = :d", d=NIGHT3))
    assert stages.get("validate") == "failed"
    assert "load" not in stages
    failed = two_nights.query(
        "select check_name, unexpected_count from ops_data_quality "
        "where logical_date = :d and not is_success and severity = 'error'",
        d=NIGHT3,
    )
    assert [name for name, _ in failed] == ["channel_allowed"] and failed[0][1] > 0
