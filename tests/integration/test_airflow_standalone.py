"""``make airflow`` (``.venv/bin/marketing airflow standalone``) without an activated virtualenv.

Airflow standalone starts its scheduler, API server, DAG processor and triggerer as ``airflow ...``
subprocesses found through PATH. The test starts the command exactly as the Makefile does, with a
PATH that holds no ``airflow`` executable, a temporary AIRFLOW_HOME, the project's data under
tmp_path and a free loopback port; it waits until the health endpoint reports every component
healthy, logs in with the admin password standalone generated and reads the project's DAGs from
the REST API. The whole process session is stopped at the end, so no Airflow process survives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs.cli.airflow_env import airflow_env
from jobs.platform.config import PROJECT_ROOT
from tests.airflow_processes import free_port, stop_session

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process cleanup reads /proc (Linux)"),
]

VENV_BIN = Path(sys.executable).parent
MARKETING = VENV_BIN / "marketing"
PROJECT_DAGS = {
    "marketing_nightly",
    "marketing_customers",
    "marketing_recommender",
    "marketing_campaigns",
    "marketing_watchdog",
}
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
HEALTHY_WITHIN = 240  # seconds from start until every component reports healthy
DAGS_WITHIN = 240  # seconds from then until the DAG processor has serialized the project's DAGs
# Loopback only, never through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Standalone:
    process: subprocess.Popen
    base_url: str
    home: Path
    env: dict[str, str]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, what: str, check: Callable[[], tuple[bool, object]], within: float) -> object:
        """Poll ``check`` (returns done, detail) until done; fail with the log if Airflow exits or time runs out."""
        deadline = time.monotonic() + within
        detail: object = None
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"standalone exited ({self.process.returncode}) waiting for {what}\n{self.log_tail()}")
            if "Exception in thread" in self.log.read_text(errors="replace"):
                # standalone keeps running when a component could not even be started
                pytest.fail(f"an Airflow component failed to start, waiting for {what}\n{self.log_tail()}")
            try:
                done, detail = check()
            except (OSError, ValueError) as exc:  # not listening yet, HTTP errors, incomplete JSON
                done, detail = False, exc
            if done:
                return detail
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {within}s (last: {detail!r})\n{self.log_tail()}")
            time.sleep(2)


def _request(url: str, *, body: dict | None = None, token: str | None = None) -> tuple[int, object]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
    with OPENER.open(request, timeout=15) as response:
        return response.status, json.loads(response.read() or b"null")


def _path_without_airflow() -> str:
    """The current PATH minus the virtualenv's bin and any other directory holding an ``airflow``."""
    kept = [
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and Path(entry).resolve() != VENV_BIN.resolve() and not (Path(entry) / "airflow").exists()
    ]
    return os.pathsep.join(kept)


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    if not MARKETING.exists():
        pytest.skip(f"{MARKETING} not installed (make setup)")
    port = free_port()
    data = tmp_path / "data"
    settings = {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # nothing is scheduled: no Spark here
        "MKT_STORAGE__LANDING_ROOT": str(data / "landing"),
        "MKT_STORAGE__LAKE_ROOT": str(data / "lake"),
        "MKT_STORAGE__REPORTS_ROOT": str(data / "reports"),
        "MKT_STORAGE__STATE_ROOT": str(data / "state"),
        "MKT_SOURCE__URL": f"sqlite:///{data / 'source.db'}",
        "MKT_WAREHOUSE__URL": f"duckdb:///{data / 'warehouse.duckdb'}",
        "MKT_RECOMMENDER__REGISTRY_ROOT": str(data / "models"),
        "PATH": _path_without_airflow(),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "_AIRFLOW", "MKT_", "VIRTUAL_ENV"))
    }
    env = {**inherited, **settings}
    assert shutil.which("airflow", path=env["PATH"]) is None, "an airflow executable is still on PATH"

    log = tmp_path / "standalone.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(MARKETING), "airflow", "standalone"],  # = make airflow
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Standalone(process, f"http://127.0.0.1:{port}", tmp_path / "airflow", env, log)
    finally:
        survivors = stop_session(process)
    assert not survivors, f"Airflow processes survived the test: {survivors}"


def test_airflow_env_puts_the_venv_first_on_path_and_keeps_airflow_settings(tmp_path: Path):
    base = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "True",
        "AIRFLOW__API__PORT": "18080",
    }
    env = airflow_env(base=base)
    assert env["PATH"] == os.pathsep.join([str(VENV_BIN), "/usr/bin:/bin"])
    assert env["AIRFLOW_HOME"] == base["AIRFLOW_HOME"]
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "True"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:18080/execution/"
    assert airflow_env(base=env)["PATH"] == env["PATH"]  # not prepended twice

    default = airflow_env(base={"PATH": "/usr/bin", "AIRFLOW_HOME": str(tmp_path / "home")})
    assert "AIRFLOW__API__PORT" not in default  # the UI stays on Airflow's default :8080
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" not in default
    own_url = {"AIRFLOW__API__PORT": "18080", "AIRFLOW__API__BASE_URL": "https://airflow.example/"}
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" not in airflow_env(base={**base, **own_url})


def test_make_airflow_serves_the_projects_dags_without_an_activated_venv(standalone: Standalone):
    started = time.monotonic()

    def healthy() -> tuple[bool, object]:
        _, health = _request(f"{standalone.base_url}/api/v2/monitor/health")
        statuses = {name: (health.get(name) or {}).get("status") for name in COMPONENTS}
        return all(status == "healthy" for status in statuses.values()), statuses

    standalone.wait_for("every component healthy", healthy, HEALTHY_WITHIN)
    healthy_after = time.monotonic() - started

    passwords = json.loads((standalone.home / "simple_auth_manager_passwords.json.generated").read_text())
    status, login = _request(
        f"{standalone.base_url}/auth/token",
        body={"username": "admin", "password": passwords["admin"]},
    )
    assert status == 201
    token = login["access_token"]

    def project_dags_listed() -> tuple[bool, object]:
        _, listing = _request(f"{standalone.base_url}/api/v2/dags?limit=100", token=token)
        dag_ids = {dag["dag_id"] for dag in listing["dags"]}
        if PROJECT_DAGS <= dag_ids:
            return True, dag_ids
        _, errors = _request(f"{standalone.base_url}/api/v2/importErrors", token=token)
        return False, {"dags": sorted(dag_ids), "import_errors": errors["import_errors"]}

    dag_ids = standalone.wait_for("the project's DAGs in the REST API", project_dags_listed, DAGS_WITHIN)
    assert PROJECT_DAGS <= dag_ids
    _, errors = _request(f"{standalone.base_url}/api/v2/importErrors", token=token)
    assert errors["total_entries"] == 0, errors["import_errors"]

    # Task runners must reach this API server's execution API, not whatever listens on :8080.
    resolved = subprocess.run(
        [str(MARKETING), "airflow", "config", "get-value", "core", "execution_api_server_url"],
        cwd=PROJECT_ROOT,
        env=standalone.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    execution_api = resolved.stdout.strip().splitlines()[-1] if resolved.stdout.strip() else ""
    assert execution_api == f"{standalone.base_url}/execution/", resolved.stderr[-2000:]
    status, health = _request(f"{execution_api}health")
    assert (status, health) == (200, {"status": "healthy"})
    print(f"healthy after {healthy_after:.0f}s, DAGs listed after {time.monotonic() - started:.0f}s")
