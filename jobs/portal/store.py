"""The portal's own database: accounts, sessions and the audit log (SQLite or PostgreSQL).

- ``portal_users``: name, role and an argon2id hash of the password (never the password).
- ``portal_sessions``: the SHA-256 of each session token (the cookie holds the token; a stolen
  copy of this table opens no session), its CSRF token, when it started and was last used.
- ``portal_audit``: append-only. A trigger refuses every UPDATE and DELETE on both engines, and
  on PostgreSQL the role the portal runs as (``portal.app_role``) is granted only SELECT and
  INSERT on it, so neither the portal nor a bug in it can rewrite what happened.

Every statement is SQLAlchemy Core with bound values.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from jobs.platform.config import PortalConfig, masked_url
from jobs.platform.errors import ConfigError, EndpointUnavailableError, one_line

ROLES = ("viewer", "marketer", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
USERNAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{1,63}"
MIN_PASSWORD_CHARS = 12

metadata = sa.MetaData()
users = sa.Table(
    "portal_users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("role in ('viewer', 'marketer', 'admin')", name="portal_users_role"),
)
sessions = sa.Table(
    "portal_sessions",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), sa.ForeignKey("portal_users.username", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("client_address", sa.String(64)),
)
audit = sa.Table(
    "portal_audit",
    metadata,
    sa.Column("audit_id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("username", sa.String(64)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("campaign_id", sa.String(64)),
    sa.Column("logical_date", sa.Date),
    sa.Column("file_name", sa.String(128)),
    sa.Column("rows", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("client_address", sa.String(64)),
    sa.Column("detail", sa.String(500)),
    sa.Index("portal_audit_recent", "action", "occurred_at"),
)

_APPEND_ONLY = {
    "sqlite": [
        "create trigger if not exists portal_audit_no_update before update on portal_audit "
        "begin select raise(abort, 'portal_audit is append-only'); end",
        "create trigger if not exists portal_audit_no_delete before delete on portal_audit "
        "begin select raise(abort, 'portal_audit is append-only'); end",
    ],
    "postgresql": [
        "create or replace function portal_audit_append_only() returns trigger language plpgsql as "
        "$$ begin raise exception 'portal_audit is append-only'; end $$",
        "drop trigger if exists portal_audit_append_only on portal_audit",
        "create trigger portal_audit_append_only before update or delete or truncate on portal_audit "
        "for each statement execute function portal_audit_append_only()",
    ],
}


def now_utc() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def portal_engine(config: PortalConfig) -> sa.Engine:
    url = config.database_url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        from pathlib import Path

        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(f"portal.database_url {masked_url(url)}: {one_line(exc)}") from None
    if engine.dialect.name == "sqlite":
        # cascade deletes of a removed user's sessions; wait for another writer instead of failing
        sa.event.listen(engine, "connect", lambda conn, _: conn.execute("pragma foreign_keys = on"))
        sa.event.listen(engine, "connect", lambda conn, _: conn.execute("pragma busy_timeout = 5000"))
    return engine


def ensure_portal_schema(engine: sa.Engine, app_role: str | None = None) -> None:
    """Create the tables and the append-only guard (idempotent); grant ``app_role`` its rights."""
    dialect = engine.dialect.name
    if dialect not in _APPEND_ONLY:
        raise ConfigError(f"portal.database_url: {dialect} is not supported (use sqlite or postgresql)")
    try:
        _create(engine, dialect, app_role)
    except sa.exc.OperationalError as exc:
        raise EndpointUnavailableError(
            f"portal.database_url {masked_url(engine.url.render_as_string())}: {one_line(exc.orig)}"
        ) from None


def _create(engine: sa.Engine, dialect: str, app_role: str | None) -> None:
    with engine.begin() as conn:
        if app_role is None and all(sa.inspect(conn).has_table(table.name) for table in metadata.sorted_tables):
            return  # set up already (maybe by the owner: the portal's own role may not run DDL)
        metadata.create_all(conn)
        for statement in _APPEND_ONLY[dialect]:
            conn.exec_driver_sql(statement)
        if app_role and dialect == "postgresql":
            conn.exec_driver_sql(f"grant select, insert, update, delete on portal_users, portal_sessions to {app_role}")
            conn.exec_driver_sql(f"grant select, insert on portal_audit to {app_role}")
            conn.exec_driver_sql(f"revoke update, delete, truncate on portal_audit from {app_role}")


# Passwords -----------------------------------------------------------------------------------

_hasher = None


def _password_hasher():
    """argon2id with the library's defaults (RFC 9106's second recommended set)."""
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


def check_new_password(username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"password for {username!r}: at least {MIN_PASSWORD_CHARS} characters, please")
    if username.lower() in password.lower():
        raise ConfigError(f"password for {username!r}: must not contain the user name")


def hash_password(password: str) -> str:
    return _password_hasher().hash(password)


# A hash to verify against when the name is unknown, so a wrong name costs as long as a wrong password.
_UNKNOWN_USER_HASH: str | None = None


def verify_password(engine: sa.Engine, username: str, password: str, now: datetime) -> str | None:
    """The user's role when the password is right, else None (same work for unknown names)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    global _UNKNOWN_USER_HASH
    with engine.connect() as conn:
        row = conn.execute(sa.select(users.c.role, users.c.password_hash).where(users.c.username == username)).first()
    if row is None:
        _UNKNOWN_USER_HASH = _UNKNOWN_USER_HASH or hash_password(secrets.token_urlsafe(16))
        stored, role = _UNKNOWN_USER_HASH, None
    else:
        role, stored = row
    try:
        _password_hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if role is None:
        return None
    update = {"last_login_at": now}
    if _password_hasher().check_needs_rehash(stored):
        update["password_hash"] = hash_password(password)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.username == username).values(**update))
    return role


# Accounts ------------------------------------------------------------------------------------


def add_user(engine: sa.Engine, username: str, role: str, password: str, now: datetime) -> str:
    """Create the account, or set a new role and password for an existing one; 'added' or 'updated'."""
    import re

    if not re.fullmatch(USERNAME_PATTERN, username):
        raise ConfigError(
            f"user name {username!r}: 2-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        )
    if role not in ROLES:
        raise ConfigError(f"--role {role!r}: one of {', '.join(ROLES)}")
    check_new_password(username, password)
    hashed = hash_password(password)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(users.c.username).where(users.c.username == username)).first()
        if exists:
            conn.execute(
                users.update()
                .where(users.c.username == username)
                .values(role=role, password_hash=hashed, updated_at=now)
            )
            conn.execute(sessions.delete().where(sessions.c.username == username))
            return "updated"
        conn.execute(
            users.insert().values(username=username, role=role, password_hash=hashed, created_at=now, updated_at=now)
        )
    return "added"


def remove_user(engine: sa.Engine, username: str) -> bool:
    """Delete the account and its sessions; False when there was no such user."""
    with engine.begin() as conn:
        conn.execute(sessions.delete().where(sessions.c.username == username))
        return conn.execute(users.delete().where(users.c.username == username)).rowcount > 0


def list_users(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(users.c.username, users.c.role, users.c.created_at, users.c.last_login_at).order_by(
                users.c.username
            )
        ).mappings()
        return [
            {**row, "created_at": _utc(row["created_at"]), "last_login_at": _utc(row["last_login_at"])} for row in rows
        ]


# Sessions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    username: str
    role: str
    csrf_token: str
    token_sha256: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(engine: sa.Engine, username: str, client: str | None, now: datetime) -> tuple[str, str]:
    """A new session for the user: (the cookie's token, the CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            sessions.insert().values(
                token_sha256=_digest(token),
                username=username,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                client_address=client,
            )
        )
    return token, csrf


def resume_session(engine: sa.Engine, token: str, config: PortalConfig, now: datetime) -> Session | str:
    """The live session of a cookie token, touched; or why there is none: 'unknown' (never
    issued, altered, or removed with its user) or 'expired' (idle, too old, or signed out)."""
    digest = _digest(token)
    query = (
        sa.select(sessions, users.c.role)
        .join(users, users.c.username == sessions.c.username)
        .where(sessions.c.token_sha256 == digest)
    )
    with engine.begin() as conn:
        row = conn.execute(query).mappings().first()
        if row is None:
            return "unknown"
        idle_limit = _utc(row["last_seen_at"]) + timedelta(minutes=config.session_idle_minutes)
        age_limit = _utc(row["created_at"]) + timedelta(hours=config.session_max_hours)
        if row["ended_at"] is not None or now >= idle_limit or now >= age_limit:
            if row["ended_at"] is None:
                conn.execute(sessions.update().where(sessions.c.token_sha256 == digest).values(ended_at=now))
            return "expired"
        conn.execute(sessions.update().where(sessions.c.token_sha256 == digest).values(last_seen_at=now))
    return Session(row["username"], row["role"], row["csrf_token"], digest)


def end_session(engine: sa.Engine, session: Session, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sessions.update().where(sessions.c.token_sha256 == session.token_sha256).values(ended_at=now))


def purge_sessions(engine: sa.Engine, before: datetime) -> int:
    """Forget sessions that ended or started before ``before`` (their cookies then read as unknown)."""
    with engine.begin() as conn:
        return conn.execute(
            sessions.delete().where(sa.or_(sessions.c.created_at < before, sessions.c.ended_at < before))
        ).rowcount


# Audit ---------------------------------------------------------------------------------------


def record(
    engine: sa.Engine,
    action: str,
    now: datetime,
    username: str | None = None,
    client: str | None = None,
    campaign_id: str | None = None,
    logical_date: date | None = None,
    file_name: str | None = None,
    rows: int | None = None,
    sha256: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one entry to the audit log."""
    with engine.begin() as conn:
        conn.execute(
            audit.insert().values(
                occurred_at=now,
                username=username,
                action=action,
                campaign_id=campaign_id,
                logical_date=logical_date,
                file_name=file_name,
                rows=rows,
                sha256=sha256,
                client_address=client,
                detail=(detail or None) and detail[:500],
            )
        )


def recent_failures(engine: sa.Engine, username: str, client: str | None, since: datetime) -> tuple[int, int]:
    """Failed sign-ins since ``since`` for this name, and from this address (the rate limit's counts)."""
    failed = sa.and_(audit.c.action == "login_failed", audit.c.occurred_at >= since)
    query = sa.select(
        sa.func.count().filter(audit.c.username == username),
        sa.func.count().filter(audit.c.client_address == client),
    ).where(failed)
    with engine.connect() as conn:
        by_name, by_address = conn.execute(query).one()
    return int(by_name), int(by_address)


def audit_entries(
    engine: sa.Engine, limit: int = 200, username: str | None = None, action: str | None = None
) -> Iterator[dict]:
    query = sa.select(audit).order_by(audit.c.audit_id.desc()).limit(limit)
    if username:
        query = query.where(audit.c.username == username)
    if action:
        query = query.where(audit.c.action == action)
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            yield {**row, "occurred_at": _utc(row["occurred_at"])}
