"""The test cluster's readiness probe (tests/spark_cluster.py) waits through a master UI that is
still starting, and a cluster that does not come up leaves no process behind."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.spark_cluster import StandaloneCluster, _alive_workers


def serve(body: bytes, content_type: str):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("body", "content_type", "alive"),
    [
        (b"<html><body>Spark Master at spark://127.0.0.1:7077</body></html>", "text/html", 0),  # still starting
        (b"[]", "application/json", 0),
        (b'{"workers": [{"state": "ALIVE"}, {"state": "DEAD"}]}', "application/json", 1),
    ],
)
def test_the_probe_counts_alive_workers_and_reads_a_starting_masters_page_as_none(body, content_type, alive):
    server = serve(body, content_type)
    try:
        assert _alive_workers(server.server_address[1]) == alive
    finally:
        server.shutdown()


def test_a_cluster_that_fails_to_start_stops_what_it_started(tmp_path, monkeypatch):
    import subprocess

    cluster = StandaloneCluster(tmp_path)
    started = []

    def start_sleeper(name, *args):  # a process standing in for the JVM, then a failure
        started.append(subprocess.Popen(["sleep", "60"]))
        cluster.processes.append(started[-1])
        if name == "worker":
            raise RuntimeError("worker did not start")

    monkeypatch.setattr(cluster, "_start", start_sleeper)
    with pytest.raises(RuntimeError, match="worker did not start"):
        cluster.start()
    assert len(started) == 2 and all(process.poll() is not None for process in started)
