"""Airflow (or any) processes started by tests in sessions of their own, and stopped whole.

A component started with ``start_new_session=True`` leads a new session; its children (task
runners, gunicorn/uvicorn workers, Spark JVMs) stay in that session even when they start
process groups of their own, so :func:`stop_session` finds and kills every one of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_members(sid: int, zombies: bool = False) -> list[int]:
    """Processes of session ``sid`` (all its process groups), zombies only if asked for."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, _ppid, _pgrp, session = stat[stat.rfind(")") + 2 :].split()[:4]
        if int(session) == sid and (zombies or state != "Z"):
            members.append(int(entry.name))
    return members


def stop_session(process: subprocess.Popen, grace: float = 10) -> list[int]:
    """SIGTERM the process group, then SIGKILL whatever of the session is left; return survivors."""
    sid = process.pid  # start_new_session: the child leads a new session and process group
    with suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while session_members(sid) and time.monotonic() < deadline:
        process.poll()  # reap the leader
        time.sleep(0.5)
    with suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGKILL)
    for pid in session_members(sid):  # tasks run in process groups of their own (same session)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    deadline = time.monotonic() + 15  # orphans are reaped by init: give it a moment
    while session_members(sid, zombies=True) and time.monotonic() < deadline:
        time.sleep(0.5)
    return session_members(sid)
