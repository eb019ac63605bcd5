"""The portal over HTTP: sign-in, roles, CSRF, session expiry, rate limiting, the audit log and
unsafe input, against real exports written by the export stage's writer, a real DuckDB
warehouse, the portal's SQLite database, and (for the object store) a real S3 API server."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from jobs.activation.export import export_prefix, exports_storage, write_export
from jobs.platform.ops import warehouse_engine
from jobs.platform.storage import open_storage
from jobs.portal import store
from jobs.portal.app import create_app
from tests.conftest import shop_config

DAYS = (date(2026, 11, 2), date(2026, 11, 3))
PASSWORDS = {"vera": "viewer-pass-0001", "mark": "spring-sale-2026", "ada": "admin-pass-00001"}
ROLES = {"vera": "viewer", "mark": "marketer", "ada": "admin"}
PROVENANCE = {"generated_at": "2026-11-03T20:00:00+00:00", "code_version": "test", "config_hash": "0" * 64}


class Clock:
    """Each test's clock starts a day after the last one's, so rate-limit windows never overlap."""

    started = 0

    def __init__(self) -> None:
        Clock.started += 1
        self.now = datetime(2026, 11, 4, 9, 0, tzinfo=UTC) + timedelta(days=Clock.started)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def target_frame(campaign_id: str, day: date, users: range) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "send_date": day.isoformat(),
            "user_id": list(users),
            "email": [f"customer{u}@example.com" for u in users],
            "product_id_1": pd.array([u % 7 + 1 for u in users], dtype="Int64"),
            "product_id_2": pd.array([None] * len(users), dtype="Int64"),
            "product_id_3": pd.array([None] * len(users), dtype="Int64"),
            "reason_code": "cart",
        }
    )


def funnel_row(campaign_id: str, day: date, target: int, priority: int) -> dict:
    return {
        "snapshot_date": day, "campaign_id": campaign_id, "campaign_version": 1, "channel": "email",
        "priority": priority, "holdout_share": 0.1, "eligible": target + 40, "suppressed_no_consent": 10,
        "suppressed_list": 2, "suppressed_global_holdout": 5, "recently_contacted": 0, "lost_to_priority": 3,
        "capped": 0, "control": 20, "target": target, "exported": target,
        "loaded_at": datetime(2026, 11, 3, 20, tzinfo=UTC),
    }  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Exports of two campaigns on two dates, their funnel rows, a report, three users."""
    root = tmp_path_factory.mktemp("portal")
    config = shop_config(root)
    storage = exports_storage(config)
    funnel = []
    for day in DAYS:
        for campaign_id, count, priority in (("cart_abandonment", 30, 1), ("weekly_newsletter", 55, 8)):
            frame = target_frame(campaign_id, day, range(1000, 1000 + count))
            write_export(storage, campaign_id, day, "email", frame, {"no_consent": 2, "no_contact": 1}, PROVENANCE)
            funnel.append(funnel_row(campaign_id, day, count, priority))
    schema = config.warehouse.schema_name
    with warehouse_engine(config).begin() as conn:
        conn.execute(sa.text(f"delete from {schema}.mart_campaign_funnel"))
        conn.execute(
            sa.text(f"insert into {schema}.mart_campaign_funnel ({', '.join(funnel[0])}) values "
                    f"({', '.join(':' + k for k in funnel[0])})"),
            funnel,
        )  # fmt: skip
    reports = open_storage(config.storage.reports_root)
    reports.write_bytes(
        f"nightly/date={DAYS[1]}/report.html", b"<!doctype html><style>p{}</style><p>nightly report</p>"
    )
    engine = store.portal_engine(config.portal)
    store.ensure_portal_schema(engine)
    for name, password in PASSWORDS.items():
        store.add_user(engine, name, ROLES[name], password, datetime(2026, 11, 1, tzinfo=UTC))
    return config


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(world, clock):
    return create_app(world, clock)


def client_for(app, base_url: str = "http://testserver") -> TestClient:
    return TestClient(app, base_url=base_url, raise_server_exceptions=False, follow_redirects=False)


def login_csrf(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def sign_in(app, name: str, password: str | None = None, client: TestClient | None = None) -> TestClient:
    client = client or client_for(app)
    response = client.post(
        "/login", data={"username": name, "password": password or PASSWORDS[name], "csrf": login_csrf(client)}
    )
    assert response.status_code == 303, response.text
    return client


def session_csrf(client: TestClient) -> str:
    return client.get("/").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def audit_rows(world, action: str) -> list[dict]:
    return list(store.audit_entries(store.portal_engine(world.portal), 1000, action=action))


def assert_clean_error(response, status: int) -> None:
    assert response.status_code == status, response.text[:500]
    assert "text/html" in response.headers["content-type"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert "<h1>" in response.text


# sign-in and sessions -------------------------------------------------------------------------


def test_every_page_but_sign_in_redirects_to_it_when_signed_out(app):
    client = client_for(app)
    for path in ("/", "/campaigns/cart_abandonment", f"/campaigns/cart_abandonment/{DAYS[0]}", "/reports",
                 f"/campaigns/cart_abandonment/{DAYS[0]}/files/targets.csv", "/admin/audit"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")


def test_signing_in_sets_a_hardened_session_cookie_and_returns_to_the_page_asked_for(app, world):
    client = client_for(app)
    response = client.post(
        "/login",
        data={"username": "Mark", "password": PASSWORDS["mark"], "csrf": login_csrf(client),
              "next": "/campaigns/cart_abandonment"},
    )  # fmt: skip
    assert response.status_code == 303
    assert response.headers["location"] == "/campaigns/cart_abandonment"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("mkt_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback; see the https test
    assert "cart_abandonment" in client.get("/").text
    assert audit_rows(world, "login")[0]["username"] == "mark"


def test_cookies_are_secure_over_https(app):
    client = client_for(app, "https://portal.example")
    response = client.post(
        "/login", data={"username": "vera", "password": PASSWORDS["vera"], "csrf": login_csrf(client)}
    )
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("mkt_session="))
    assert "Secure" in cookie
    assert "max-age" in client.get("/").headers["strict-transport-security"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_sign_in_never_redirects_off_the_portal(app, target):
    client = client_for(app)
    response = client.post(
        "/login",
        data={"username": "vera", "password": PASSWORDS["vera"], "csrf": login_csrf(client), "next": target},
    )
    assert response.headers["location"] == "/"


def test_a_wrong_password_is_refused_and_audited(app, world):
    client = client_for(app)
    before = len(audit_rows(world, "login_failed"))
    response = client.post("/login", data={"username": "mark", "password": "nope", "csrf": login_csrf(client)})
    assert response.status_code == 401
    assert "Wrong name or password" in response.text
    assert "mkt_session" not in response.headers.get("set-cookie", "")
    failed = audit_rows(world, "login_failed")
    assert len(failed) == before + 1 and failed[0]["username"] == "mark"
    assert failed[0]["client_address"] == "testclient"


def test_sign_in_without_the_forms_csrf_token_is_refused(app):
    client = client_for(app)
    login_csrf(client)
    response = client.post("/login", data={"username": "mark", "password": PASSWORDS["mark"], "csrf": "forged"})
    assert_clean_error(response, 403)
    fresh = client_for(app)  # no CSRF cookie at all: a cross-site post
    assert_clean_error(fresh.post("/login", data={"username": "mark", "password": PASSWORDS["mark"]}), 403)


def test_repeated_failures_pause_sign_in_for_that_name_until_the_window_passes(world, clock):
    app = create_app(world, clock)
    client = client_for(app)
    for _ in range(world.portal.login_max_failures):
        client.post("/login", data={"username": "ada", "password": "wrong", "csrf": login_csrf(client)})
    response = client.post("/login", data={"username": "ada", "password": PASSWORDS["ada"], "csrf": login_csrf(client)})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) == world.portal.login_window_minutes * 60
    assert audit_rows(world, "login_blocked")[0]["username"] == "ada"
    clock.advance(minutes=world.portal.login_window_minutes + 1)
    sign_in(app, "ada")


def test_sessions_end_after_the_idle_timeout(app, world, clock):
    client = sign_in(app, "vera")
    clock.advance(minutes=world.portal.session_idle_minutes - 1)
    assert client.get("/").status_code == 200  # a request keeps it alive...
    clock.advance(minutes=world.portal.session_idle_minutes - 1)
    assert client.get("/").status_code == 200
    clock.advance(minutes=world.portal.session_idle_minutes + 1)  # ...idleness ends it
    response = client.get("/reports")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Freports&expired=1"
    assert "ended" in client.get(response.headers["location"]).text


def test_sessions_end_after_their_maximum_age_even_when_busy(app, world, clock):
    client = sign_in(app, "vera")
    for _ in range(world.portal.session_max_hours * 60 // 20 - 1):
        clock.advance(minutes=20)
        assert client.get("/reports").status_code == 200
    clock.advance(minutes=21)
    assert client.get("/reports").status_code == 303


def test_signing_out_needs_the_sessions_csrf_token_and_ends_the_session(app, world):
    client = sign_in(app, "vera")
    assert_clean_error(client.post("/logout", data={"csrf": "forged"}), 403)
    assert client.get("/").status_code == 200
    cookie = client.cookies.get("mkt_session")
    response = client.post("/logout", data={"csrf": session_csrf(client)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    replay = client_for(app)
    replay.cookies.set("mkt_session", cookie)
    assert replay.get("/").status_code == 303
    assert audit_rows(world, "logout")[0]["username"] == "vera"


def test_sessions_are_forgotten_a_month_after_they_started(app, clock):
    old = sign_in(app, "vera")
    clock.advance(days=31)
    sign_in(app, "mark")  # signing in clears out the old records
    response = old.get("/")
    assert_clean_error(response, 403)
    assert "not one the portal knows" in response.text


@pytest.mark.parametrize("cookie", ["tampered", "x" * 200, "' or 1=1 --"])
def test_a_tampered_session_cookie_gets_a_clear_refusal(app, cookie):
    client = sign_in(app, "mark")
    real = client.cookies.get("mkt_session")
    client.cookies.set("mkt_session", real[:-3] + cookie if cookie == "tampered" else cookie)
    response = client.get("/")
    assert_clean_error(response, 400 if len(cookie) > 128 else 403)
    assert "Sign in again" in response.text
    assert 'mkt_session=""' in response.headers["set-cookie"]


# roles -----------------------------------------------------------------------------------------


def test_a_viewer_sees_sizes_and_previews_without_contact_fields_and_cannot_download(app, world):
    client = sign_in(app, "vera")
    overview = client.get("/")
    assert overview.status_code == 200
    assert "Cart" in overview.text and ">55<" in overview.text  # the newsletter's latest target size
    page = client.get(f"/campaigns/cart_abandonment/{DAYS[1]}")
    assert page.status_code == 200
    assert "customer1000@example.com" not in page.text and ">email<" not in page.text
    assert "1000" in page.text  # the user ids are there
    assert "/files/" not in page.text
    assert_clean_error(client.get(f"/campaigns/cart_abandonment/{DAYS[1]}/files/targets.csv"), 403)
    assert_clean_error(client.get("/admin/audit"), 403)
    preview = audit_rows(world, "preview")[0]
    expected = json.loads(
        exports_storage(world).read_bytes(export_prefix("cart_abandonment", DAYS[1]) + "_manifest.json")
    )
    assert (preview["username"], preview["campaign_id"], preview["logical_date"]) == (
        "vera",
        "cart_abandonment",
        DAYS[1],
    )
    assert preview["rows"] == world.portal.preview_rows
    assert preview["sha256"] == expected["files"]["targets.csv"]["sha256"]


def test_a_marketer_downloads_both_files_byte_for_byte_and_each_download_is_audited(app, world):
    client = sign_in(app, "mark")
    page = client.get(f"/campaigns/weekly_newsletter/{DAYS[0]}")
    assert "customer1000@example.com" in page.text and "targets.parquet" in page.text
    storage = exports_storage(world)
    for name in ("targets.csv", "targets.parquet"):
        response = client.get(f"/campaigns/weekly_newsletter/{DAYS[0]}/files/{name}")
        assert response.status_code == 200
        assert response.content == storage.read_bytes(export_prefix("weekly_newsletter", DAYS[0]) + name)
        assert response.headers["x-checksum-sha256"] == hashlib.sha256(response.content).hexdigest()
        assert "attachment" in response.headers["content-disposition"]
        entry = audit_rows(world, "download")[0]
        assert (entry["username"], entry["file_name"], entry["rows"]) == ("mark", name, 55)
        assert entry["sha256"] == hashlib.sha256(response.content).hexdigest()
        assert entry["client_address"] == "testclient"
    frame = pq.read_table(io.BytesIO(response.content)).to_pandas()
    assert len(frame) == 55 and frame["email"].str.endswith("@example.com").all()
    assert_clean_error(client.get("/admin/users"), 403)


def test_an_admin_reads_the_audit_log_and_removes_a_user_with_a_csrf_protected_form(app, world):
    admin = sign_in(app, "ada")
    victim_engine = store.portal_engine(world.portal)
    store.add_user(victim_engine, "temp", "viewer", "short-lived-pass-1", datetime(2026, 11, 1, tzinfo=UTC))
    temp = sign_in(app, "temp", "short-lived-pass-1")
    log = admin.get("/admin/audit?action=login")
    assert log.status_code == 200 and "temp" in log.text
    assert_clean_error(admin.get("/admin/audit?action=drop_table"), 400)
    assert_clean_error(admin.post("/admin/users/temp/remove", data={"csrf": "forged"}), 403)
    response = admin.post("/admin/users/temp/remove", data={"csrf": session_csrf(admin)})
    assert response.status_code == 303
    assert "temp" not in [u["username"] for u in store.list_users(victim_engine)]
    assert_clean_error(temp.get("/"), 403)  # the removed user's session is gone with them
    assert audit_rows(world, "user_removed")[0]["detail"] == "removed temp"


def test_the_audit_log_cannot_be_changed_or_deleted(world):
    engine = store.portal_engine(world.portal)
    store.record(engine, "preview", datetime.now(UTC), username="x")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("delete from portal_audit"))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("update portal_audit set username = 'someone else'"))
    assert audit_rows(world, "preview")


def test_on_postgresql_the_portal_role_may_only_append_to_the_audit_log(postgres_url):
    from jobs.platform.config import PortalConfig

    owner = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    role = "portal_test_app"
    with owner.begin() as conn:
        conn.exec_driver_sql(f"drop schema if exists portal_test cascade; drop role if exists {role}")
        conn.exec_driver_sql(f"create role {role} login; create schema portal_test; "
                             f"grant usage on schema portal_test to {role}")  # fmt: skip
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": "-csearch_path=portal_test"})
    try:
        settings = PortalConfig(database_url=url.render_as_string(hide_password=False), app_role=role)
        engine = store.portal_engine(settings)
        store.ensure_portal_schema(engine, role)
        store.ensure_portal_schema(engine, role)  # idempotent
        store.add_user(engine, "mark", "marketer", PASSWORDS["mark"], datetime.now(UTC))
        app_engine = store.portal_engine(settings.model_copy(update={
            "database_url": url.set(username=role).render_as_string(hide_password=False)}))  # fmt: skip
        store.record(app_engine, "login", datetime.now(UTC), username="mark", client="127.0.0.1")
        assert store.verify_password(app_engine, "mark", PASSWORDS["mark"], datetime.now(UTC)) == "marketer"
        for statement in ("delete from portal_audit", "update portal_audit set rows = 0", "truncate portal_audit"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), app_engine.begin() as conn:
                conn.exec_driver_sql(statement)
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(statement)  # not even the owner, short of dropping the trigger
        assert len(list(store.audit_entries(app_engine))) == 1
        app_engine.dispose()
        engine.dispose()
    finally:
        with owner.begin() as conn:
            conn.exec_driver_sql(f"drop schema portal_test cascade; drop owned by {role}; drop role {role}")
        owner.dispose()


# unsafe input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/campaigns/no_such_campaign", 404),
        ("/campaigns/Robert');DROP", 400),
        ("/campaigns/%2e%2e", 400),
        ("/campaigns/%2e%2e%2f%2e%2e%2fstate", 404),
        ("/campaigns/cart_abandonment/2026-13-01", 400),
        ("/campaigns/cart_abandonment/yesterday", 400),
        ("/campaigns/cart_abandonment/2025-01-01", 404),
        ("/campaigns/no_such_campaign/2026-11-02", 404),
        ("/campaigns/cart_abandonment/2026-11-02/files/..%2f..%2f..%2fportal.db", 404),
        ("/campaigns/cart_abandonment/2026-11-02/files/%2e%2e", 400),
        ("/campaigns/cart_abandonment/%2e%2e/files/targets.csv", 400),
        ("/campaigns/cart_abandonment/2026-11-02/files/_manifest.json", 404),
        ("/campaigns/cart_abandonment/2026-11-02/files/targets.xlsx", 404),
        ("/campaigns/cart_abandonment/2026-11-02/files/%00targets.csv", 400),
        ("/campaigns/cart_abandonment/2025-01-01/files/targets.csv", 404),
        ("/reports/..%2f..%2fportal.db", 404),
        ("/reports/2026-02-30", 400),
        ("/reports/2026-11-01", 404),
        ("/static/..%2f..%2fapp.py", 404),
        ("/no/such/page", 404),
    ],
)
def test_unsafe_or_unknown_names_get_a_clear_page_and_nothing_outside_the_exports(app, path, status):
    client = sign_in(app, "mark")
    response = client.get(path)
    assert_clean_error(response, status)
    assert "SQLite format" not in response.text and "create_app" not in response.text


def test_a_missing_or_damaged_export_file_is_reported_not_served(app, world):
    storage = exports_storage(world)
    prefix = export_prefix("cart_abandonment", DAYS[0])
    parquet = storage.read_bytes(prefix + "targets.parquet")
    client = sign_in(app, "mark")
    try:
        storage.delete_prefix(prefix + "targets.parquet")
        assert_clean_error(client.get(f"/campaigns/cart_abandonment/{DAYS[0]}/files/targets.parquet"), 404)
        storage.write_bytes(prefix + "targets.parquet", parquet[:-10])
        response = client.get(f"/campaigns/cart_abandonment/{DAYS[0]}/files/targets.parquet")
        assert_clean_error(response, 503)
        assert "does not match its manifest" in response.text
    finally:
        storage.write_bytes(prefix + "targets.parquet", parquet)


def test_pages_carry_security_headers_and_the_report_may_run_no_script(app):
    client = sign_in(app, "vera")
    for path in ("/login", "/", "/no/such/page"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    report = client.get(f"/reports/{DAYS[1]}")
    assert report.status_code == 200 and "nightly report" in report.text
    assert "script" not in report.headers["content-security-policy"].replace("default-src 'none'", "")
    assert "default-src 'none'" in report.headers["content-security-policy"]


# the object store ---------------------------------------------------------------------------


def test_exports_and_reports_are_read_from_s3_and_streamed(world, s3_server, aws_env, clock):
    import boto3

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="shop-exports")
    storage = {"exports_root": "s3://shop-exports/exports", "reports_root": "s3://shop-exports/reports",
               "s3_endpoint_url": s3_server}  # fmt: skip
    config = world.model_copy(update={"storage": world.storage.model_copy(update=storage)})
    big = target_frame("vip_early_access", DAYS[1], range(1, 60_001))  # a few MiB: streamed in chunks
    write_export(exports_storage(config), "vip_early_access", DAYS[1], "email", big, {}, PROVENANCE)
    open_storage(config.storage.reports_root, s3_server).write_bytes(
        f"nightly/date={DAYS[1]}/report.html", b"<p>s3</p>"
    )
    app = create_app(config, clock)
    client = sign_in(app, "mark")
    assert ">60,000<" in client.get("/campaigns/vip_early_access").text
    response = client.get(f"/campaigns/vip_early_access/{DAYS[1]}/files/targets.csv")
    assert response.status_code == 200
    assert response.content == exports_storage(config).read_bytes(
        export_prefix("vip_early_access", DAYS[1]) + "targets.csv"
    )
    assert len(response.content) > 3 * (1 << 20)
    assert client.get(f"/reports/{DAYS[1]}").text == "<p>s3</p>"


# the command line -----------------------------------------------------------------------------


def test_users_are_added_with_a_password_from_stdin_and_removed(world, monkeypatch, capsys, tmp_path):
    from jobs.cli.main import main

    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(f"portal:\n  database_url: sqlite:///{tmp_path / 'portal.db'}\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    assert main(["--config", str(config_file), "portal", "add-user", "nora", "--role", "marketer"]) == 0
    assert "added portal user nora (marketer)" in capsys.readouterr().out
    engine = store.portal_engine(
        world.portal.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'portal.db'}"})
    )
    assert store.verify_password(engine, "nora", "a-long-enough-password", datetime.now(UTC)) == "marketer"
    hashed = sa.select(store.users.c.password_hash).where(store.users.c.username == "nora")
    with engine.connect() as conn:
        assert conn.execute(hashed).scalar_one().startswith("$argon2id$")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--config", str(config_file), "portal", "add-user", "nina", "--role", "viewer"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a password is never an argument
        main(["--config", str(config_file), "portal", "add-user", "nina", "--role", "viewer", "--password", "x"])
    assert main(["--config", str(config_file), "portal", "remove-user", "nora"]) == 0
    assert main(["--config", str(config_file), "portal", "remove-user", "nora"]) == 2
    assert "no portal user 'nora'" in capsys.readouterr().err
    actions = [e["action"] for e in store.audit_entries(engine)]
    assert actions == ["user_removed", "user_added"]

    for url, message in (("nosuch+driver://x", "portal.database_url nosuch+driver://x: "),
                         ("postgresql+psycopg://nobody:secret@127.0.0.1:1/portal", "portal.database_url postgresql")):  # fmt: skip
        config_file.write_text(f"portal:\n  database_url: {url}\n")
        assert main(["--config", str(config_file), "portal", "remove-user", "nora"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: " + message) and err.count("\n") == 1 and "secret" not in err


def test_lists_still_show_when_the_warehouse_is_being_written_or_not_loaded(world, clock, tmp_path):
    """A nightly run holding the DuckDB writer lock, or a warehouse without the funnel yet: the
    pages show the lists and say why the funnel figures are missing."""
    from jobs.platform.locks import warehouse_lock

    client = sign_in(create_app(world, clock), "vera")
    with warehouse_lock(world, "a nightly run"):
        page = client.get("/")
        assert page.status_code == 200 and "writing the warehouse right now" in page.text
        assert ">55<" in page.text  # the newsletter's list size comes from the exports
        assert client.get(f"/campaigns/weekly_newsletter/{DAYS[1]}").status_code == 200
    assert "writing the warehouse" not in client.get("/").text

    empty = tmp_path / "empty.duckdb"
    sa.create_engine(f"duckdb:///{empty}").dispose()
    with sa.create_engine(f"duckdb:///{empty}").connect() as conn:
        conn.execute(sa.text("select 1"))
    config = world.model_copy(update={"warehouse": world.warehouse.model_copy(update={"url": f"duckdb:///{empty}"})})
    page = sign_in(create_app(config, clock), "vera").get("/campaigns/weekly_newsletter")
    assert page.status_code == 200 and "has the pipeline published yet?" in page.text
