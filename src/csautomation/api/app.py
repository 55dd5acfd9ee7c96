"""The review app: the JSON API under /api and the manager's pages, in one FastAPI app.

    /api/...   Bearer tokens; errors as JSON `{"detail": ...}` (401, 403, 404, 409, 422, 503)
    /...       a signed session cookie; forms carry a CSRF token; a missing sign-in
               redirects to /login, other refusals render a short error page
    /health/live, /health/ready, /metrics   no authentication: for probes and Prometheus
               (keep /metrics off the public internet: it names rules, sources, outcomes)

`create_app` is built at the edge (`csauto serve`, a test) with everything it needs; it
reads nothing from the environment but the session key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csautomation import metrics
from csautomation.api import (
    accounts,
    api_routes,
    docs,
    health,
    my_work,
    pages,
    quarantine,
    rule_pages,
    vendor_intake,
)
from csautomation.api import intake as intake_routes
from csautomation.api.actions import EscalationActions
from csautomation.api.auth import Authenticator
from csautomation.api.auth import session_secret as env_session_secret
from csautomation.api.errors import InputError, NotSignedInError, ReviewError
from csautomation.api.review import Review
from csautomation.api.rule_catalog import RuleCatalog
from csautomation.errors import ServiceUnavailableError
from csautomation.escalation.people import People
from csautomation.facts.health import load_health_model
from csautomation.ingest.intake import Intake
from csautomation.ingest.sources import Sources
from csautomation.ingest.writer import SignalWriter
from csautomation.rules.loader import RuleSet
from csautomation.scheduling.source_status import SourcesCollector
from csautomation.settings import Settings
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store

if TYPE_CHECKING:
    from temporalio.client import Client

SESSION_COOKIE = "csauto_session"
SESSION_HOURS = 12
# only our own script runs on these pages (static/app.js) and calls this site only; forms
# post to this site only; nothing may frame them
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
        "img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _App(FastAPI):
    """FastAPI with one ASGI app in front of it (the signal intake's hot path), which
    passes every other request to `behind`: the FastAPI app itself."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    store: Store,
    people: People,
    actions: EscalationActions,
    *,
    now: Callable[[], datetime] | None = None,
    facts: FactsReader | None = None,
    session_secret: str | None = None,
    secure_cookies: bool = False,
    hasher: PasswordHasher | None = None,
    sources: Sources | None = None,
    on_stored: Callable[[], None] | None = None,
    temporal: Client | None = None,
    rules: Callable[[], RuleSet | None] | None = None,
    source_files: tuple[Path, Path] = (Path("schedules.yaml"), Path("sources.yaml")),
) -> FastAPI:
    """The review app over `store` (the escalations index, accounts, signals), `people`
    (who signs in, and their teams) and `actions` (the escalation workflows).

    `now` is the clock (UTC); `facts` derives account health (default: the packaged health
    model); `session_secret` defaults to CSAUTO_SESSION_SECRET; `secure_cookies` marks the
    session cookie HTTPS-only (set it behind TLS); `hasher` checks passwords; `sources`
    are who may post signals to /v1/signals (none: every post is refused), `on_stored` is
    called once signals are committed (to wake a pipeline in the same process);
    `temporal`, the client the actions use, is checked by /health/ready; `rules` returns
    the rule set served now, for the rules pages (None: only the rules that fired, as the
    store keeps them); `source_files` (schedules.yaml, sources.yaml) are read at each
    scrape of /metrics for the data sources' series.
    """
    review = Review(
        store,
        people,
        actions,
        facts or FactsReader(store, load_health_model()),
        now or _utcnow,
    )
    authn = Authenticator(people, hasher, store=store)
    templates = Jinja2Templates(env=template_env())

    app = _App(
        title="csautomation",
        summary="Signals in; escalations reviewed and acted on.",
        docs_url=None,  # Swagger UI loads scripts from elsewhere: /docs is our own page
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    intake = Intake(store, SignalWriter(store, on_stored))
    sources = sources or Sources({})
    app.state.intake = intake
    app.state.authn = authn  # its throttles' clocks, for tests that must not race them
    _routes(app, review, authn, templates, intake, sources, temporal, rules)
    health.install(app, store, temporal, [SourcesCollector(store, *source_files)])
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret or env_session_secret(Settings().session_secret),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_HOURS * 3600,
        same_site="lax",
        https_only=secure_cookies,
    )
    app.add_middleware(SecurityHeaders)
    # in front of everything: signals skip FastAPI's and Starlette's layers, the sessions
    # and the routing (see SignalIntake)
    app.front = metrics.RequestMetrics(
        intake_routes.SignalIntake(app.behind, intake=intake, sources=sources, extra=HEADERS)
    )

    _error_handlers(app, templates)
    return app


def _routes(
    app: FastAPI,
    review: Review,
    authn: Authenticator,
    templates: Jinja2Templates,
    intake: Intake,
    sources: Sources,
    temporal: Client | None,
    rules: Callable[[], RuleSet | None] | None,
) -> None:
    """Every router: signals and vendor webhooks in, the API, the pages."""
    store, people = review.store, review.people
    app.include_router(intake_routes.router(intake, sources))
    app.include_router(vendor_intake.router(intake, sources))
    app.include_router(accounts.router(store, sources))
    app.include_router(quarantine.router(intake, authn))
    app.include_router(api_routes.router(review, authn))
    app.include_router(docs.router(app, templates))
    app.include_router(pages.router(review, authn, templates))
    app.include_router(my_work.router(store, people, authn, templates, temporal, review.now))
    catalog = RuleCatalog(store, rules or (lambda: None))
    app.include_router(
        rule_pages.router(store, people, authn, templates, catalog, review.facts, review.now)
    )


def _error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    """Our errors as answers: JSON for the APIs, a page (or the sign-in) for the pages."""

    @app.exception_handler(ReviewError)
    async def _review_error(request: Request, exc: ReviewError) -> Response:
        if _is_api(request):
            body: dict[str, str] = {"detail": exc.message}
            if isinstance(exc, InputError):
                body["field"] = exc.field
            headers = {"www-authenticate": "Bearer"} if isinstance(exc, NotSignedInError) else None
            return JSONResponse(body, exc.status, headers=headers)
        if isinstance(exc, NotSignedInError) and request.session.get("user"):
            request.session.clear()  # a session that has ended (signed out, revoked)
            return pages.error_page(templates, request, 401, "Your session has ended.")
        if isinstance(exc, NotSignedInError):
            back = request.url.path if request.method == "GET" else "/"
            if request.url.query and request.method == "GET":
                back += "?" + request.url.query
            return RedirectResponse(f"/login?next={quote(back, safe='/')}", 303)
        return pages.error_page(templates, request, exc.status, exc.message)

    @app.exception_handler(ServiceUnavailableError)
    async def _unavailable(request: Request, exc: ServiceUnavailableError) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, 503)
        return pages.error_page(templates, request, 503, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [_problem(e) for e in exc.errors()]
        text = "; ".join(f"{f}: {m}" for f, m in problems) or "invalid request"
        if _is_api(request):
            return JSONResponse(
                {"detail": text, "errors": [{"field": f, "message": m} for f, m in problems]},
                422,
            )
        return pages.error_page(templates, request, 422, text)


def template_env() -> Environment:
    """Our own page templates, autoescaped: no user text is ever rendered raw."""
    return Environment(
        loader=PackageLoader("csautomation.api", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class SecurityHeaders:
    """Adds `HEADERS` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path in ("/api", "/v1") or path.startswith(("/api/", "/v1/"))


def _problem(error: object) -> tuple[str, str]:
    """(field, message) from one of FastAPI's validation errors."""
    assert isinstance(error, dict)
    if error.get("type") == "json_invalid":
        return "body", "is not valid JSON"
    loc = [str(p) for p in error.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:] or loc
    return ".".join(loc) or "request", str(error.get("msg", "is invalid"))
