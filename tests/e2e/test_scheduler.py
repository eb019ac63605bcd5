"""The real Airflow: scheduler, DAG processor, API server and LocalExecutor, with the metadata
database on PostgreSQL, run the project's DAGs on a small simulated shop.

Nothing here calls ``dag.test()``. The test starts ``airflow api-server``, ``airflow scheduler``
and ``airflow dag-processor`` (through ``marketing airflow``, as the compose stack starts them)
on a metadata database of its own on the PostgreSQL server, unpauses the DAGs through the REST
API and triggers ``marketing_nightly`` for two dates, each after its shop day happened. Then it
only watches what Airflow does by itself:

- the asset-scheduled customers, recommender and campaigns DAGs run for both dates;
- on the first night the warehouse is held by another writer (the test holds its lock): the
  first stage to need it gives up after ``warehouse.lock_timeout_seconds`` with a transient
  error, the scheduler retries it once the lock is free, and the night succeeds;
- the watchdog passes for a night that finished, and for a night that never ran its deadline
  check fails and the failure callback posts the alert to a webhook.

The DAGs' start date is today, so the cron schedules create no run of their own meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobs.cli.airflow_env import airflow_env, ensure_metadata_db
from jobs.platform.config import PROJECT_ROOT, PipelineConfig, load_config
from jobs.platform.lake import landing_storage
from jobs.platform.locks import warehouse_lock
from jobs.simulator import SimulationSpec, World, generate, materialize
from tests.airflow_processes import free_port, stop_session
from tests.conftest import shop_env
from tests.postgres import fresh_database

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(3000),  # beside the rest of the suite (scripts/run_tests.sh), on 2 cores
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process cleanup reads /proc (Linux)"),
]

SPEC = SimulationSpec(seed=23, days=9, users=150, products=80)
NIGHT1 = SPEC.start_date + timedelta(days=SPEC.days - 2)
NIGHT2 = NIGHT1 + timedelta(days=1)
CHAIN = ("marketing_nightly", "marketing_customers", "marketing_recommender", "marketing_campaigns")
LOCK_TIMEOUT = 6  # seconds a stage waits for the warehouse before its attempt fails
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy


@dataclass
class Airflow:
    base_url: str
    env: dict[str, str]
    logs: Path
    config: PipelineConfig
    world: World
    root: Path
    token: str = ""

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        with OPENER.open(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def runs(self) -> list[dict]:
        return self.call("GET", "/api/v2/dags/~/dagRuns?limit=200&order_by=run_after")["dag_runs"]

    def task_instances(self, run: dict) -> list[dict]:
        path = f"/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances?limit=100"
        return self.call("GET", path)["task_instances"]

    def trigger(self, dag_id: str, day: date) -> dict:
        body = {"logical_date": None, "conf": {"business_date": day.isoformat()}}
        return self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def wait(self, what: str, done, within: float, poll: float = 3) -> object:
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            try:
                finished, last = done()
            except OSError as exc:  # the API server restarting a worker
                finished, last = False, exc
            if finished:
                return last
            time.sleep(poll)
        pytest.fail(f"{what}: not within {within}s; last: {last!r}\n{self.tail()}")

    def finished(self, dag_id: str, count: int):
        """A check for :meth:`wait`: ``dag_id`` has ``count`` finished runs and no run of any
        DAG is still queued or running; a failed run of the chain fails the test at once."""

        def check() -> tuple[bool, object]:
            runs = self.runs()
            failed = [r for r in runs if r["state"] == "failed" and r["dag_id"] in CHAIN]
            if failed:
                pytest.fail(f"runs failed: {[(r['dag_id'], r['dag_run_id']) for r in failed]}\n{self.tail()}")
            states = [(r["dag_id"], r["state"]) for r in runs]
            done = [r for r in runs if r["dag_id"] == dag_id and r["state"] in ("success", "failed")]
            return len(done) >= count and all(state in ("success", "failed") for _, state in states), states

        return check

    def tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def warehouse(self, sql: str, **params) -> list[tuple]:
        engine = sa.create_engine(self.config.warehouse.url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, postgres_admin_url, webhook_sink_module) -> Iterator[Airflow]:
    root = tmp_path_factory.mktemp("scheduled-shop")
    port = free_port()
    today = datetime.now(load_config().tz).date()
    settings = {
        **shop_env(root),
        "MKT_WAREHOUSE__LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT),
        "MKT_AIRFLOW__START_DATE": today.isoformat(),  # no cron run falls due during the test
        "MKT_AIRFLOW__RETRIES": "3",
        "MKT_AIRFLOW__RETRY_DELAY_MINUTES": "0",  # back-off from 1 s
        "MKT_ALERTS__WEBHOOK_URL": webhook_sink_module.url,
    }
    config = load_config(environ=settings)
    with fresh_database(postgres_admin_url, prefix="mkt_airflow") as metadata:
        url = metadata.render_as_string(hide_password=False)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "MKT_"))}
        env = airflow_env(
            base={
                **base,
                **settings,
                "AIRFLOW_HOME": str(root / "airflow"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url.replace("+psycopg:", "+psycopg_async:", 1),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "1",  # one task at a time: 2 cores, one DuckDB writer
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "3600",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            },
        )
        ensure_metadata_db(env)
        logs = root / "components"
        logs.mkdir()
        processes = []
        try:
            for component in ("api-server", "dag-processor", "scheduler"):
                with (logs / f"{component}.log").open("wb") as out:
                    processes.append(
                        subprocess.Popen(
                            [str(Path(env["PATH"].split(os.pathsep)[0]) / "marketing"), "airflow", component],
                            cwd=PROJECT_ROOT,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )  # fmt: skip
                    )
            airflow = Airflow(f"http://127.0.0.1:{port}", env, logs, config, generate(SPEC), root)

            def token() -> tuple[bool, object]:
                with OPENER.open(f"{airflow.base_url}/auth/token", timeout=10) as response:
                    return True, json.loads(response.read())["access_token"]

            airflow.token = airflow.wait("the API server", token, within=240)

            def parsed() -> tuple[bool, object]:
                dag_ids = {d["dag_id"] for d in airflow.call("GET", "/api/v2/dags?limit=100")["dags"]}
                return {*CHAIN, "marketing_watchdog"} <= dag_ids, sorted(dag_ids)

            airflow.wait("the DAG processor serialised the project's DAGs", parsed, within=300)
            for dag_id in (*CHAIN, "marketing_watchdog"):
                airflow.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            yield airflow
        finally:
            survivors = [pid for process in processes for pid in stop_session(process)]
            assert not survivors, f"Airflow processes survived the test: {survivors}"


@pytest.fixture(scope="module")
def webhook_sink_module():
    from tests.alert_sinks import serve_webhook

    with serve_webhook() as sink:
        yield sink


@pytest.fixture(scope="module")
def two_scheduled_nights(airflow: Airflow) -> Airflow:
    """Night 1 with the warehouse held at first, then night 2; both chains to the end."""
    materialize(airflow.world, landing_storage(airflow.config), airflow.config.source.url, NIGHT1, airflow.root / "t")
    with warehouse_lock(airflow.config, "the scheduler test (another writer)"):
        run = airflow.trigger("marketing_nightly", NIGHT1)

        def retrying() -> tuple[bool, object]:
            tries = {t["task_id"]: (t["state"], t["try_number"]) for t in airflow.task_instances(run)}
            return any(state == "up_for_retry" or n > 1 for state, n in tries.values()), tries

        airflow.wait("a nightly task waiting for the warehouse to be retried", retrying, within=300, poll=1)
    airflow.wait("night 1's chain", airflow.finished("marketing_campaigns", 1), within=1500)
    materialize(airflow.world, landing_storage(airflow.config), airflow.config.source.url, NIGHT2, airflow.root / "t")
    airflow.trigger("marketing_nightly", NIGHT2)
    airflow.wait("night 2's chain", airflow.finished("marketing_campaigns", 2), within=1500)
    return airflow


def test_both_nights_run_every_dag_of_the_chain_by_itself(two_scheduled_nights: Airflow):
    runs = two_scheduled_nights.runs()
    by_dag: dict[str, list[dict]] = {}
    for run in runs:
        by_dag.setdefault(run["dag_id"], []).append(run)
    assert [r["run_type"] for r in by_dag["marketing_nightly"]] == ["manual", "manual"]
    for dag_id in CHAIN[1:]:
        assert by_dag.get(dag_id), f"{dag_id} never ran"
        assert {r["run_type"] for r in by_dag[dag_id]} == {"asset_triggered"}, by_dag[dag_id]
    assert all(r["state"] == "success" for r in runs)
    published = two_scheduled_nights.warehouse(
        "select stage, logical_date from ops_pipeline_runs where status = 'success' "
        "and stage in ('load', 'segments', 'tags', 'recommender', 'allocate') group by 1, 2"
    )
    done = {(stage, str(day)) for stage, day in published}
    for night in (NIGHT1, NIGHT2):
        for stage in ("load", "segments", "tags", "allocate"):
            assert (stage, night.isoformat()) in done, (stage, night, sorted(done))


def test_a_transient_failure_is_retried_by_the_scheduler_and_the_night_succeeds(two_scheduled_nights: Airflow):
    airflow = two_scheduled_nights
    (first,) = [r for r in airflow.runs() if r["dag_id"] == "marketing_nightly"][:1]
    retried = [t for t in airflow.task_instances(first) if t["try_number"] > 1]
    assert retried, "no task was retried"
    assert all(t["state"] == "success" for t in airflow.task_instances(first))
    log_dir = Path(airflow.env["AIRFLOW_HOME"]) / "logs"
    attempts = "\n".join(p.read_text(errors="replace") for p in log_dir.rglob("attempt=1*.log"))
    assert "the scheduler test (another writer)" in attempts  # the error named who held the warehouse


def test_the_watchdog_passes_a_finished_night_and_alerts_one_that_never_ran(
    two_scheduled_nights: Airflow, webhook_sink_module
):
    airflow = two_scheduled_nights
    never_ran = NIGHT1 - timedelta(days=1)
    for count, night in enumerate((NIGHT2, never_ran), start=1):
        airflow.trigger("marketing_watchdog", night)
        airflow.wait(f"the watchdog for {night}", airflow.finished("marketing_watchdog", count), within=300)
    watchdog = [r for r in airflow.runs() if r["dag_id"] == "marketing_watchdog"]
    assert [r["state"] for r in watchdog] == ["success", "failed"]
    (alert,) = webhook_sink_module.requests
    assert alert["dag_id"] == "marketing_watchdog" and alert["task_id"] == "deadline"
    assert f"night {never_ran} not finished" in alert["error"]
