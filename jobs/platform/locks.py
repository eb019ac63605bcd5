"""One writer at a time: the warehouse lock every stage run holds.

Two runs writing the same warehouse at once (a backfill next to the nightly run, a manual
re-run next to the customers DAG) could interleave their ops records and snapshots. Every
stage run, from Airflow or ``marketing run``, holds this lock while it works; a second run
waits for it up to ``warehouse.lock_timeout_seconds`` and then fails with a
:class:`~jobs.platform.errors.LockHeldError` naming who holds it (Airflow retries it later).

- PostgreSQL: a session-level advisory lock keyed on the warehouse schema, held by a dedicated
  connection; the server drops it if the holder dies.
- DuckDB (a local file): ``flock`` on ``<database>.lock`` beside it; the kernel drops it if
  the holder dies. The file also says who holds it, for the error message.

The lock is re-entrant within a process, so a stage called from inside another holder runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import LockHeldError

POLL_SECONDS = 1.0
_held: dict[str, int] = {}


def _holder(what: str) -> dict:
    return {"holder": what, "pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}


def _describe(info: dict | None) -> str:
    if not info:
        return "another run"
    return f"{info.get('holder', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')})"


@contextlib.contextmanager
def _file_lock(path: Path, what: str, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    try:
                        info = json.loads(handle.read() or "null")
                    except ValueError:
                        info = None
                    raise LockHeldError(
                        f"the warehouse {path.with_suffix('')} is being written by {_describe(info)}; "
                        f"{what} waited {timeout:.0f} s (warehouse.lock_timeout_seconds) and gives up for now"
                    ) from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder(what)))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


@contextlib.contextmanager
def _advisory_lock(config: PipelineConfig, what: str, timeout: float) -> Iterator[None]:
    from jobs.platform.ops import warehouse_engine

    key = f"marketing-warehouse-writer:{config.warehouse.schema_name}"
    with warehouse_engine(config).connect() as conn:
        deadline = time.monotonic() + timeout
        while not conn.execute(sa.text("select pg_try_advisory_lock(hashtext(:k))"), {"k": key}).scalar_one():
            conn.rollback()
            if time.monotonic() >= deadline:
                raise LockHeldError(
                    f"the warehouse schema {config.warehouse.schema_name} is being written by another run; "
                    f"{what} waited {timeout:.0f} s (warehouse.lock_timeout_seconds) and gives up for now"
                )
            time.sleep(POLL_SECONDS)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("select pg_advisory_unlock(hashtext(:k))"), {"k": key})
            conn.commit()


@contextlib.contextmanager
def warehouse_lock(config: PipelineConfig, what: str) -> Iterator[None]:
    """Hold the warehouse's writer lock while the block runs; ``what`` names the holder."""
    url = config.warehouse.url
    key = f"{url}#{config.warehouse.schema_name}"
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    timeout = config.warehouse.lock_timeout_seconds
    if url.startswith("postgresql"):
        lock = _advisory_lock(config, what, timeout)
    elif url.startswith("duckdb:///") and ":memory:" not in url:
        lock = _file_lock(Path(url[len("duckdb:///") :] + ".lock"), what, timeout)
    else:
        lock = contextlib.nullcontext()
    with lock:
        _held[key] = 1
        try:
            yield
        finally:
            _held.pop(key, None)
