"""The marketers' portal: campaign lists to preview and download, and the nightly reports.

A small server-rendered FastAPI application (Jinja2 templates, one stylesheet, no scripts):

- ``viewer`` sees campaigns, funnels, list sizes, previews without contact fields, reports;
  ``marketer`` also downloads the lists; ``admin`` also sees the audit log and the users.
- Sessions live in the portal's database (:mod:`jobs.portal.store`); the cookie holds a random
  token only, ``HttpOnly`` and ``SameSite=Lax``, ``Secure`` on https or when configured. They
  end after ``portal.session_idle_minutes`` idle and ``portal.session_max_hours`` in all.
- Every form carries a CSRF token (the session's; before sign-in, a double-submit cookie).
- Sign-ins are rate-limited per name and (4x as many) per client address, counted from the
  audit log.
- Every sign-in, failed sign-in, sign-out, preview, download, report view and user removal is
  appended to ``portal_audit``.
- Responses carry a CSP without scripts, ``X-Content-Type-Options: nosniff``, frame denial and
  ``Cache-Control: no-store``. Errors are pages with the right status, never a stack trace.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs.activation.campaigns_config import load_campaigns
from jobs.platform.config import PipelineConfig
from jobs.platform.errors import PipelineError
from jobs.portal import store
from jobs.portal.lists import EXPORT_FILES, BadRequest, Exports, NotFound, Unavailable, parse_day

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SESSION_COOKIE = "mkt_session"
SESSION_RECORDS_DAYS = 30  # ended sessions are forgotten after this; their cookies then read as unknown
ADDRESS_FACTOR = 4  # failed sign-ins allowed per client address, as a multiple of those per name
LOGIN_CSRF_COOKIE = "mkt_login_csrf"
PAGE_CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# the nightly report is one self-contained file: its own <style>, plots as data: URIs, no script
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"  # noqa: E501
AUDIT_ACTIONS = (
    "login", "login_failed", "login_blocked", "logout", "preview", "download", "report_view", "user_removed",
    "user_added", "user_updated",
)  # fmt: skip


class PageError(Exception):
    """Ends a request with an error page: status, a title and a sentence for people."""

    def __init__(self, status: int, title: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.title, self.message, self.headers = status, title, message, headers or {}


class SignInNeeded(Exception):
    def __init__(self, notice: str = ""):
        self.notice = notice


def create_app(config: PipelineConfig, clock: Callable[[], datetime] = store.now_utc) -> FastAPI:
    """The portal for ``config``; ``clock`` gives the current UTC time (tests move it)."""
    settings = config.portal
    engine = store.portal_engine(settings)
    store.ensure_portal_schema(engine)
    campaigns = load_campaigns(
        config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
    ).campaigns
    exports = Exports(
        config,
        {c.id: {"name": c.name, "channel": c.channel, "priority": c.priority, "description": c.description}
         for c in sorted(campaigns, key=lambda c: c.priority)},
    )  # fmt: skip
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["thousands"] = lambda v: "–" if v is None else f"{int(v):,}"
    templates.env.filters["when"] = lambda v: "–" if v is None else v.strftime("%Y-%m-%d %H:%M:%S UTC")
    app = FastAPI(title="Marketing portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.engine, app.state.exports = engine, exports

    # plumbing -----------------------------------------------------------------------------

    def client_of(request: Request) -> str | None:
        return request.client.host if request.client else None

    def audit(request: Request, action: str, username: str | None, **fields) -> None:
        store.record(engine, action, clock(), username=username, client=client_of(request), **fields)

    def secure(request: Request) -> bool:
        return settings.secure_cookies or request.url.scheme == "https"

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def session_of(request: Request) -> store.Session:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise SignInNeeded()
        if len(token) > 128:
            raise PageError(400, "Bad session cookie", "The session cookie is malformed. Sign in again.")
        found = store.resume_session(engine, token, settings, clock())
        if found == "expired":
            raise SignInNeeded("Your session has ended. Please sign in again.")
        if found == "unknown":
            raise PageError(
                403,
                "Session not recognised",
                "This browser's session is not one the portal knows (altered, a month old, or its account was removed). "
                "Sign in again.",
            )
        return found

    def require(request: Request, role: str) -> store.Session:
        session = session_of(request)
        if store.ROLE_RANK[session.role] < store.ROLE_RANK[role]:
            raise PageError(403, "Not allowed", f"This needs the {role} role; you are signed in as a {session.role}.")
        return session

    def check_csrf(expected: str | None, sent: str | None) -> None:
        if not expected or not sent or not hmac.compare_digest(expected, sent):
            raise PageError(
                403, "Form expired", "This form did not come from this portal session. Reload the page and try again."
            )

    def day_of(text: str):
        try:
            return parse_day(text)
        except BadRequest as exc:
            raise PageError(400, "Bad date", str(exc)) from None

    def checked(call, *args):
        """Run an exports lookup; its errors become the matching error page."""
        try:
            return call(*args)
        except BadRequest as exc:
            raise PageError(400, "Bad request", str(exc)) from None
        except NotFound as exc:
            raise PageError(404, "Not found", str(exc)) from None
        except Unavailable as exc:
            raise PageError(503, "Not available right now", str(exc), {"Retry-After": "60"}) from None

    def funnel_or_notice(*args):
        try:
            return exports.funnel(*args), None
        except Unavailable as exc:
            return None, str(exc)

    # middleware and error pages -----------------------------------------------------------

    def harden(request: Request, response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        if request.url.scheme == "https":
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        return harden(request, await call_next(request))

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError):
        response = page(request, "error.html", exc.status, title=exc.title, message=exc.message)
        response.headers.update(exc.headers)
        if exc.status in (400, 403) and "session" in exc.title.lower():
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"/login?next={quote(target, safe='')}" + ("&expired=1" if exc.notice else "")
        response = RedirectResponse(location, status_code=303)
        if exc.notice:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed"}
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return page(request, "error.html", exc.status_code, title=titles.get(exc.status_code, "Error"), message=message)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, exc: RequestValidationError):
        fields = ", ".join(str(error["loc"][-1]) for error in exc.errors())
        return page(request, "error.html", 400, title="Bad request", message=f"Missing or invalid: {fields}.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        reference = uuid.uuid4().hex[:12]
        log.error("portal error %s on %s %s", reference, request.method, request.url.path, exc_info=exc)
        # this handler runs outside the middleware stack: harden its page here
        if isinstance(exc, (sa.exc.OperationalError, PipelineError)):
            return harden(request, page(request, "error.html", 503, title="Not available right now",
                          message=f"A store the portal reads did not answer (reference {reference}). Try again soon."))  # fmt: skip
        return harden(request, page(request, "error.html", 500, title="Something went wrong",
                      message=f"The portal could not show this page (reference {reference}); it has been logged."))  # fmt: skip

    # sign-in ------------------------------------------------------------------------------

    def safe_next(target: str | None) -> str:
        if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
            return "/"
        parts = urlsplit(target)
        return "/" if parts.scheme or parts.netloc else target

    def login_page(request: Request, status: int = 200, error: str = "", next_: str = "/", notice: str = ""):
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = page(request, "login.html", status, csrf=token, error=error, next=safe_next(next_), notice=notice)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request),
                            path="/login", max_age=3600)  # fmt: skip
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/", expired: str | None = None):  # noqa: A002
        notice = "Your session has ended. Please sign in again." if expired else ""
        return login_page(request, next_=next, notice=notice)

    @app.post("/login")
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        csrf: str = Form(""),
        next: str = Form("/"),  # noqa: A002
    ):
        check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE), csrf)
        name = username.strip().lower()[:64]
        now = clock()
        since = now - timedelta(minutes=settings.login_window_minutes)
        by_name, by_address = store.recent_failures(engine, name, client_of(request), since)
        # an address may be a whole office behind one NAT: it gets more tries than one name
        if by_name >= settings.login_max_failures or by_address >= ADDRESS_FACTOR * settings.login_max_failures:
            audit(request, "login_blocked", name)
            response = login_page(
                request, 429, f"Too many failed sign-ins. Try again in {settings.login_window_minutes} minutes.", next
            )
            response.headers["Retry-After"] = str(settings.login_window_minutes * 60)
            return response
        role = store.verify_password(engine, name, password, now) if name and password else None
        if role is None:
            audit(request, "login_failed", name or None)
            return login_page(request, 401, "Wrong name or password.", next)
        store.purge_sessions(engine, now - timedelta(days=SESSION_RECORDS_DAYS))
        token, _ = store.start_session(engine, name, client_of(request), now)
        audit(request, "login", name, detail=f"role {role}")
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure(request), path="/")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        session = session_of(request)
        check_csrf(session.csrf_token, csrf)
        store.end_session(engine, session, clock())
        audit(request, "logout", session.username)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/healthz")
    def health():
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return JSONResponse({"status": "ok"})

    # campaigns ----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def campaigns_page(request: Request):
        session = require(request, "viewer")
        funnel, notice = funnel_or_notice()
        latest = {} if funnel is None else {row["campaign_id"]: row for row in funnel.to_dict("records")}
        rows = []
        for campaign_id, info in exports.campaigns.items():
            dates = checked(exports.dates, campaign_id)
            manifest = checked(exports.manifest, campaign_id, dates[0]) if dates else None
            rows.append({"id": campaign_id, **info, "funnel": latest.get(campaign_id), "latest": manifest,
                         "dates": len(dates)})  # fmt: skip
        return page(request, "campaigns.html", session=session, campaigns=rows, notice=notice)

    @app.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
    def campaign_page(request: Request, campaign_id: str):
        session = require(request, "viewer")
        info = checked(exports.campaign, campaign_id)
        funnel, notice = funnel_or_notice(campaign_id)
        by_date = {} if funnel is None else {row["snapshot_date"]: row for row in funnel.to_dict("records")}
        dates = [
            {"date": day, "manifest": checked(exports.manifest, campaign_id, day), "funnel": by_date.get(day)}
            for day in checked(exports.dates, campaign_id)
        ]
        return page(request, "campaign.html", session=session, campaign={"id": campaign_id, **info}, dates=dates,
                    notice=notice)  # fmt: skip

    @app.get("/campaigns/{campaign_id}/{day}", response_class=HTMLResponse)
    def list_page(request: Request, campaign_id: str, day: str):
        session = require(request, "viewer")
        info = checked(exports.campaign, campaign_id)
        when = day_of(day)
        key, csv, manifest = checked(exports.export_file, campaign_id, when, "targets.csv")
        with_contacts = store.ROLE_RANK[session.role] >= store.ROLE_RANK["marketer"]
        preview = exports.preview(key, settings.preview_rows, with_contacts)
        funnel, notice = funnel_or_notice(campaign_id, when)
        audit(request, "preview", session.username, campaign_id=campaign_id, logical_date=when,
              file_name="targets.csv", rows=len(preview), sha256=csv["sha256"])  # fmt: skip
        return page(
            request, "list.html", session=session, campaign={"id": campaign_id, **info}, day=when, manifest=manifest,
            columns=list(preview.columns), rows=preview.to_dict("records"), can_download=with_contacts,
            funnel=None if funnel is None or funnel.empty else funnel.iloc[0].to_dict(), notice=notice,
            files=EXPORT_FILES,
        )  # fmt: skip

    @app.get("/campaigns/{campaign_id}/{day}/files/{name}")
    def download(request: Request, campaign_id: str, day: str, name: str):
        session = require(request, "marketer")
        when = day_of(day)
        key, entry, manifest = checked(exports.export_file, campaign_id, when, name)
        audit(request, "download", session.username, campaign_id=campaign_id, logical_date=when, file_name=name,
              rows=manifest["rows"], sha256=entry["sha256"])  # fmt: skip
        filename = f"{campaign_id}_{when.isoformat()}_{name}"
        return StreamingResponse(
            exports.stream(key),
            media_type=EXPORT_FILES[name],
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(entry["bytes"]),
                     "X-Checksum-SHA256": entry["sha256"]},
        )  # fmt: skip

    # reports ------------------------------------------------------------------------------

    @app.get("/reports", response_class=HTMLResponse)
    def reports_page(request: Request):
        session = require(request, "viewer")
        return page(request, "reports.html", session=session, dates=exports.report_dates())

    @app.get("/reports/{day}")
    def report(request: Request, day: str):
        session = require(request, "viewer")
        when = day_of(day)
        html = checked(exports.report_html, when)
        audit(request, "report_view", session.username, logical_date=when, file_name="report.html")
        return Response(html, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP})

    # admin --------------------------------------------------------------------------------

    @app.get("/admin/audit", response_class=HTMLResponse)
    def audit_page(request: Request, user: str = "", action: str = ""):
        session = require(request, "admin")
        if action and action not in AUDIT_ACTIONS:
            raise PageError(400, "Bad request", f"{action[:40]!r} is not an audit action")
        entries = list(store.audit_entries(engine, 500, user.strip().lower()[:64] or None, action or None))
        return page(request, "audit.html", session=session, entries=entries, user=user, action=action,
                    actions=AUDIT_ACTIONS)  # fmt: skip

    @app.get("/admin/users", response_class=HTMLResponse)
    def users_page(request: Request):
        session = require(request, "admin")
        return page(request, "users.html", session=session, users=store.list_users(engine))

    @app.post("/admin/users/{username}/remove")
    def remove_user(request: Request, username: str, csrf: str = Form("")):
        session = require(request, "admin")
        check_csrf(session.csrf_token, csrf)
        if username == session.username:
            raise PageError(400, "Bad request", "You cannot remove your own account here.")
        if not store.remove_user(engine, username):
            raise PageError(404, "Not found", f"there is no user {username[:64]!r}")
        audit(request, "user_removed", session.username, detail=f"removed {username}")
        return RedirectResponse("/admin/users", status_code=303)

    return app
