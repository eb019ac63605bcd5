"""PostgreSQL for tests: a fresh database per test session, a fresh schema per test.

``postgres_url`` (session scope) yields a SQLAlchemy URL ``postgresql+psycopg://...`` to a
database created for this session only and dropped at teardown:

* if ``MKT_TEST_POSTGRES_URL`` is set (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``),
  it connects there as an admin and creates ``mkt_test_<random hex>``;
* otherwise (or if that server cannot be reached) it starts a throwaway server from the
  installed PostgreSQL binaries (``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` or
  ``PATH``) in a temporary folder, with trust authentication, on a free loopback port, and
  deletes it at teardown. ``initdb`` refuses to run as root, so as root the server runs as the
  ``postgres`` user (via ``runuser`` or ``su``);
* if neither works, the test is skipped with a one-line reason naming what is missing.

``postgres_admin_url`` (session scope) is the server's admin URL itself, and
``fresh_database(admin_url, prefix)`` a database of its own for a block (e.g. Airflow's
metadata database in the scheduler test).

``pg_schema`` (function scope) returns a fresh schema name, not created (the code under test
creates it), and drops it with CASCADE after the test.

Enable with ``pytest_plugins = ["tests.postgres"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

ENV_URL = "MKT_TEST_POSTGRES_URL"
SERVER_USER = "postgres"  # OS user that runs a throwaway server when tests run as root
DB_USER = "postgres"  # superuser created by initdb in the throwaway server


def _psycopg_url(url: str | URL) -> URL:
    """Any postgres URL spelling -> the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if not parsed.drivername.startswith("postgres"):
        raise ValueError(f"{ENV_URL} must be a postgresql:// URL, got {parsed.drivername}://")
    return parsed.set(drivername="postgresql+psycopg")


def _admin_engine(url: URL) -> sa.Engine:
    return sa.create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5},
    )


def _create_database(admin_url: URL, prefix: str = "mkt_test") -> URL:
    name = f"{prefix}_{secrets.token_hex(6)}"
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"create database {name} encoding 'UTF8' template template0")
    finally:
        engine.dispose()
    return admin_url.set(database=name)


def _drop_database(admin_url: URL, name: str) -> None:
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = :name and pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            force = " with (force)" if conn.dialect.server_version_info >= (13,) else ""
            conn.exec_driver_sql(f"drop database if exists {name}{force}")
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# Throwaway server
# --------------------------------------------------------------------------------------------


class _Unavailable(Exception):
    """A throwaway server cannot be started here; the message says what is missing."""


def _bin_dirs() -> list[Path]:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.name
        return tuple(int(x) for x in part.split(".") if x.isdigit()) or (0,)

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates += [Path(initdb).parent, Path(os.path.realpath(initdb)).parent]
    seen, result = set(), []
    for path in candidates:
        if path not in seen:
            seen.add(path)
            result.append(path)
    return result


def _find_bindir() -> Path:
    for path in _bin_dirs():
        if all(os.access(path / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    raise _Unavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config, /usr/lib/postgresql/*/bin or PATH"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root (initdb and postgres refuse to run as root)."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise _Unavailable(f"running as root and there is no {SERVER_USER!r} OS user to run initdb as") from exc
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", SERVER_USER, "--", *argv]
    su = shutil.which("su")
    if su:
        return [su, SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]
    raise _Unavailable("running as root and neither runuser nor su is available to run initdb as postgres")


def _run(argv: list[str], what: str, timeout: float = 120) -> None:
    try:
        out = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise _Unavailable(f"{what} could not run: {exc}") from exc
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise _Unavailable(f"{what} failed (exit {out.returncode}): {tail[0]}")


class _ThrowawayServer:
    def __init__(self) -> None:
        self.bindir = _find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="mkt-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.started = False

    def start(self) -> URL:
        try:
            self.socket_dir.mkdir()
            if os.geteuid() == 0:
                # Let the postgres user reach and own the folder.
                _as_server_user(["true"])  # raises _Unavailable when there is no such user
                account = pwd.getpwnam(SERVER_USER)
                for path in (self.root, self.socket_dir):
                    os.chown(path, account.pw_uid, account.pw_gid)
                os.chmod(self.root, 0o700)
            _run(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data),
                    "-U", DB_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                "initdb",
            )  # fmt: skip
            options = (
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
            )
            _run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
                "pg_ctl start",
            )
            self.started = True
        except _Unavailable as exc:
            log_tail = self._log_tail()
            self.stop()
            raise _Unavailable(f"{exc}{' — ' + log_tail if log_tail else ''}") from exc
        return URL.create(
            "postgresql+psycopg",
            username=DB_USER,
            host="127.0.0.1",
            port=self.port,
            database="postgres",
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self) -> None:
        if self.started:
            try:
                _run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                    "pg_ctl stop",
                    timeout=60,
                )
            except _Unavailable as exc:
                warnings.warn(f"throwaway PostgreSQL did not stop cleanly: {exc}", stacklevel=1)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def _reachable(admin_url: URL) -> str | None:
    """None when we can connect and create databases there, else why not."""
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            can_create = conn.exec_driver_sql(
                "select rolsuper or rolcreatedb from pg_roles where rolname = current_user"
            ).scalar()
    except sa.exc.DBAPIError as exc:
        return f"cannot connect to {admin_url.render_as_string(hide_password=True)}: {str(exc.orig).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    if not can_create:
        return f"{admin_url.username} may not create databases on {admin_url.host}"
    return None


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[URL]:
    """URL of a PostgreSQL server where the tests may create databases (see the module doc)."""
    server: _ThrowawayServer | None = None
    admin_url: URL | None = None
    problems: list[str] = []

    raw = os.environ.get(ENV_URL)
    if raw:
        try:
            candidate = _psycopg_url(raw)
        except (ValueError, sa.exc.ArgumentError) as exc:
            problems.append(f"{ENV_URL} is not usable: {exc}")
        else:
            why = _reachable(candidate)
            if why is None:
                admin_url = candidate
            else:
                problems.append(f"{ENV_URL}: {why}")
                warnings.warn(f"{problems[-1]}; trying a throwaway server", stacklevel=1)
    if admin_url is None:
        try:
            server = _ThrowawayServer()
            admin_url = server.start()
        except _Unavailable as exc:
            problems.append(f"no throwaway PostgreSQL: {exc}")
            if not raw:
                problems.insert(0, f"{ENV_URL} not set")
            pytest.skip("; ".join(problems))
    try:
        yield admin_url
    finally:
        if server:
            server.stop()


@contextlib.contextmanager
def fresh_database(admin_url: URL, prefix: str = "mkt_test") -> Iterator[URL]:
    """A database created on ``admin_url``'s server for the block, dropped after it."""
    try:
        url = _create_database(admin_url, prefix)
    except sa.exc.DBAPIError as exc:
        pytest.skip(f"cannot create a test database: {str(exc.orig).strip().splitlines()[0]}")
    try:
        yield url
    finally:
        _drop_database(admin_url, url.database)


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: URL) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a database created for this test session."""
    with fresh_database(postgres_admin_url) as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name in the session database; dropped (CASCADE) after the test."""
    name = f"t_{secrets.token_hex(5)}"
    yield name
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            # A connection the test left idle in a transaction would block the drop forever.
            conn.exec_driver_sql("set local lock_timeout = '10s'")
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(f"drop schema if exists {name} cascade")
            except sa.exc.OperationalError:
                conn.exec_driver_sql(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() "
                    "and pid <> pg_backend_pid() and state like 'idle in transaction%'"
                )
                conn.exec_driver_sql(f"drop schema if exists {name} cascade")
    finally:
        engine.dispose()
