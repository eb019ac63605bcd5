"""A process that runs DAGs with Airflow's ``dag.test()`` on request, for the end-to-end tests.

``airflow dags test`` in a subprocess pays Airflow's import, the DAG parse, the Spark JVM start
and Great Expectations' import (about 30 s) before its first task; a module of e2e tests runs a
dozen DAG runs. This worker pays that once: it reads one JSON request per line on standard input
(``{"dag_id", "date", "env"}``), runs the DAG as :class:`jobs.cli.airflow_env.InProcessDags`
does for the demo, and answers one JSON line (``{"failed": [...], "output": "..."}``) on the
standard output it started with. Everything else it or its tasks print (Airflow's task logs, the
JVM) goes to the log file named on the command line; ``output`` is that log's part for the run.
``env`` holds ``MKT_*`` overrides for that run only (the DAG files, which read the configuration
when parsed, are parsed again for it). Start it with the environment of :func:`jobs.cli.airflow_env.airflow_env`.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(log_path: str) -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    from jobs.cli.airflow_env import InProcessDags

    runner = InProcessDags()
    for line in sys.stdin:
        request = json.loads(line)
        overrides = request.get("env", {})
        saved = {name: os.environ.get(name) for name in overrides}
        os.environ.update(overrides)
        if overrides:  # a DAG file reads the configuration when parsed: parse again under them
            runner = InProcessDags()
        sys.stdout.flush(), sys.stderr.flush()
        start = os.path.getsize(log_path)
        try:
            failed = runner.run(request["dag_id"], request["date"])
        except Exception:  # noqa: BLE001 - the test reads the traceback as the run's output
            traceback.print_exc()
            failed = ["(the run raised)"]
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if overrides:  # and again without them for the next run
                runner = InProcessDags()
        sys.stdout.flush(), sys.stderr.flush()
        with open(log_path, "rb") as log:
            log.seek(start)
            output = log.read().decode("utf-8", "replace")
        replies.write(json.dumps({"failed": failed, "output": output}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
