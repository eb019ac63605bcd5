"""A Spark standalone cluster for tests: one master and one worker on loopback, started from the
installed pyspark (``bin/spark-class org.apache.spark.deploy.master.Master`` and
``...deploy.worker.Worker``), the processes a production cluster runs.

``spark_master`` (module scope) yields the master URL ``spark://127.0.0.1:<port>`` once the
worker has registered, and stops both at teardown. Their logs go to a temporary folder, whose
tail is shown if the cluster does not come up.

Enable with ``pytest_plugins = ["tests.spark_cluster"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKER_CORES = 2
WORKER_MEMORY = "3g"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _alive_workers(ui_port: int) -> int:
    """ALIVE workers the master's UI reports; 0 while it is not answering with its JSON yet (a
    starting master's UI may serve an HTML page on ``/json/`` before its handlers are in place)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            state = json.load(response)
    except (OSError, ValueError):  # not listening yet, or not JSON yet (JSONDecodeError)
        return 0
    if not isinstance(state, dict):
        return 0
    return sum(1 for worker in state.get("workers", []) if isinstance(worker, dict) and worker.get("state") == "ALIVE")


class StandaloneCluster:
    """Master + worker processes; ``url`` is what ``spark.master`` is set to."""

    def __init__(self, root: Path):
        self.root = root
        self.port, self.ui_port, self.worker_ui_port = _free_port(), _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> None:
        home = _spark_home()
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.root),
            "SPARK_WORKER_DIR": str(self.root / "work"),
            "SPARK_NO_DAEMONIZE": "1",
        }
        log = (self.root / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen([str(home / "bin" / "spark-class"), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        )

    def start(self) -> StandaloneCluster:
        """Start the master and the worker and wait until the worker is ALIVE; on any failure
        (including an interrupt) both processes are stopped before the error propagates."""
        try:
            return self._start_and_wait()
        except BaseException:
            self.stop()
            raise

    def _start_and_wait(self) -> StandaloneCluster:
        self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port),
        )  # fmt: skip
        self._start(
            "worker",
            "org.apache.spark.deploy.worker.Worker",
            self.url,
            "--host", "127.0.0.1", "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
            "--webui-port", str(self.worker_ui_port), "--work-dir", str(self.root / "work"),
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while _alive_workers(self.ui_port) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                logs = "\n".join(
                    f"--- {p.name}\n" + p.read_text(errors="replace")[-2000:] for p in self.root.glob("*.log")
                )
                raise RuntimeError(f"the Spark standalone cluster did not come up:\n{logs}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Terminate both processes (idempotent), killing any that does not end within 20 s."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")  # stopped after its module: its JVMs hold memory
def spark_master() -> Iterator[str]:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java: a Spark standalone cluster needs a JVM")
    root = Path(tempfile.mkdtemp(prefix="mkt-spark-cluster-"))
    cluster = StandaloneCluster(root).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
