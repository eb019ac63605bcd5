"""Run Airflow against this project's DAGs with the embedded defaults (SQLite metadata).

``marketing airflow ARGS...`` runs ``airflow ARGS...`` with AIRFLOW_HOME=airflow_home/,
the DAGs folder set to dags/ and example DAGs off, so ``marketing airflow standalone`` serves
the UI on :8080 and ``marketing airflow dags test marketing_nightly 2026-10-30`` runs one date.
Settings already present in the environment win, so production deployments are unaffected.

The directory of this interpreter's ``airflow`` executable goes first on PATH: ``airflow standalone``
starts its scheduler, API server, DAG processor and triggerer as ``airflow ...`` subprocesses, found
through PATH, which holds .venv/bin only when the virtual environment is activated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from jobs.platform.config import PROJECT_ROOT


def airflow_env(home: Path | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    home = Path(env.get("AIRFLOW_HOME") or home or PROJECT_ROOT / "airflow_home")
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* jobs.*",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        "GX_ANALYTICS_ENABLED": "False",
        "NO_PROXY": "*",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    if "AIRFLOW__API__PORT" in env and not any(
        key in env
        for key in (
            "AIRFLOW__API__BASE_URL",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
            "AIRFLOW__WORKERS__EXECUTION_API_SERVER_URL",
        )
    ):
        # Task runners reach the execution API at http://localhost:8080/execution/ unless told
        # otherwise: follow a non-default API server port (and a specific bind address).
        host = env.get("AIRFLOW__API__HOST", "").strip()
        host = "localhost" if host in ("", "0.0.0.0", "::", "[::]") else host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{host}:{env['AIRFLOW__API__PORT']}/execution/"
    env["PATH"] = _path_with(str(Path(sys.executable).parent), env.get("PATH"))
    return env


def _path_with(directory: str, path: str | None) -> str:
    """``path`` with ``directory`` first (the system default search path when ``path`` is unset)."""
    rest = os.defpath if path is None else path
    if not rest or rest.split(os.pathsep)[0] == directory:
        return rest or directory
    return os.pathsep.join([directory, rest])


def airflow_executable() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def run_airflow(
    args: list[str], env: dict[str, str] | None = None, check: bool = True, **kwargs
) -> subprocess.CompletedProcess:
    """Run the airflow CLI with the project environment."""
    return subprocess.run([airflow_executable(), *args], env=env or airflow_env(), check=check, **kwargs)


def ensure_metadata_db(env: dict[str, str] | None = None) -> None:
    """Create or upgrade the Airflow metadata database (idempotent)."""
    run_airflow(["db", "migrate"], env=env, stdout=subprocess.DEVNULL)


def enter_airflow_env(env: dict[str, str]) -> None:
    """Make this process's environment ``env`` (from :func:`airflow_env`), before anything
    imports Airflow (it reads its configuration once, at import)."""
    import sys as _sys

    if "airflow" in _sys.modules:
        raise RuntimeError("enter_airflow_env must run before airflow is imported")
    os.environ.update(env)


class InProcessDags:
    """Run DAGs with ``dag.test()`` in this process, as ``airflow dags test`` does in its own:
    the same scheduling of tasks, run in process, recorded in the metadata database. Many runs
    share one Python, one parse of the DAGs folder and one Spark session (the demo's nights).
    Use after :func:`enter_airflow_env`."""

    def __init__(self) -> None:
        self._dags: dict = {}

    def run(self, dag_id: str, business_date: str) -> list[str]:
        """Run ``dag_id`` for a business date, as ``airflow dags test DAG <date>T12:00:00+00:00
        --conf '{"business_date": ...}'`` does (noon UTC makes the logical date unique per date;
        the DAG takes the date to process from the param). Returns the ids of the tasks that
        failed (none: the run succeeded)."""
        from datetime import datetime

        from airflow.utils.cli import get_bagged_dag
        from airflow.utils.state import DagRunState, TaskInstanceState

        if dag_id not in self._dags:
            self._dags[dag_id] = get_bagged_dag(None, dag_id)
        run = self._dags[dag_id].test(
            logical_date=datetime.fromisoformat(f"{business_date}T12:00:00+00:00"),
            run_conf={"business_date": business_date},
        )
        if run.state != DagRunState.FAILED:
            return []
        failed = (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED)
        return sorted(ti.task_id for ti in run.get_task_instances() if ti.state in failed) or ["(the run)"]
