"""``marketing portal``: serve the portal, and manage its users from the shell."""

from __future__ import annotations

import getpass
import sys

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ConfigError
from jobs.portal import store


def read_password(stream=None) -> str:
    """The new password: typed twice without echo on a terminal, else the first line of stdin."""
    stream = stream or sys.stdin
    if stream.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise ConfigError("the two passwords differ; nothing changed")
        return first
    line = stream.readline()
    if not line:
        raise ConfigError("no password on standard input (pipe it in, or run this in a terminal)")
    return line.rstrip("\r\n")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def setup(config: PipelineConfig) -> str:
    """Create the portal's tables and append-only guard, and grant ``portal.app_role`` (run as the owner)."""
    engine = store.portal_engine(config.portal)
    store.ensure_portal_schema(engine, config.portal.app_role)
    role = (
        f"; role {config.portal.app_role} may read and append to the audit log only" if config.portal.app_role else ""
    )
    return f"portal database ready{role}"


def add_user(config: PipelineConfig, username: str, role: str, password: str) -> str:
    engine = store.portal_engine(config.portal)
    store.ensure_portal_schema(engine, config.portal.app_role)
    now = store.now_utc()
    outcome = store.add_user(engine, username, role, password, now)
    store.record(engine, f"user_{outcome}", now, username=_actor(), detail=f"{username} as {role}")
    return outcome


def remove_user(config: PipelineConfig, username: str) -> None:
    engine = store.portal_engine(config.portal)
    store.ensure_portal_schema(engine, config.portal.app_role)
    if not store.remove_user(engine, username):
        raise ConfigError(f"there is no portal user {username!r}")
    store.record(engine, "user_removed", store.now_utc(), username=_actor(), detail=f"removed {username}")


def serve(config: PipelineConfig, host: str, port: int, forwarded_allow_ips: str) -> None:
    """Run the portal with uvicorn until interrupted."""
    import uvicorn

    from jobs.portal.app import create_app

    engine = store.portal_engine(config.portal)
    store.ensure_portal_schema(engine)
    if not store.list_users(engine):
        print("note: the portal has no users yet; add one with 'marketing portal add-user NAME --role admin'")
    print(f"portal on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        log_level="info",
    )
