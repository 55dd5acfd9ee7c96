"""The manager's pages: sign in, the list of open escalations, one escalation with its
actions. Forms post back here, call the same review logic as the API, and redirect with a
flash message.

Sessions are signed cookies (SessionMiddleware) holding the person id, their stamp (of
their password hash and session generation: `Authenticator.stamp`), a CSRF token and
pending flash messages; every form carries the token. Signing out ends every session of
that person; a request with an ended session gets 401 (see `app._error_handlers`).
"""

from __future__ import annotations

import functools
import hmac
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, cast, get_args

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from csautomation.api import listing, views
from csautomation.api.auth import Authenticator, scope_of
from csautomation.api.errors import (
    EscalationClosedError,
    EscalationNotFoundError,
    InputError,
    NotAllowedError,
    NotSignedInError,
    ReviewError,
)
from csautomation.api.review import SEVERITIES, STATUSES, Kind, Review
from csautomation.errors import ServiceUnavailableError
from csautomation.escalation.people import Person
from csautomation.store.escalations import firings_for

DONE = {
    "acknowledge": "Acknowledged",
    "resolve": "Resolved",
    "reassign": "Reassigned",
    "snooze": "Snoozed",
}
# the stylesheet, and the script that acts without a reload (the forms work without it)
STATIC = {"app.css": "text/css", "app.js": "text/javascript"}


def router(review: Review, authn: Authenticator, templates: Jinja2Templates) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def signed_in(request: Request) -> Person:
        return authn.signed_in(request.session)

    def render(
        request: Request,
        name: str,
        context: dict[str, Any],
        person: Person | None,
        status: int = 200,
    ) -> Response:
        context = {
            "person": person,
            "csrf": csrf_token(request),
            "flashes": request.session.pop("flash", []),
            **context,
        }
        return templates.TemplateResponse(request, name, context, status_code=status)

    _session_routes(pages, authn, render)
    _escalation_routes(pages, review, signed_in, render)
    return pages


Render = Callable[..., Response]


def _session_routes(pages: APIRouter, authn: Authenticator, render: Render) -> None:
    """The stylesheet, sign-in and sign-out."""
    folder = resources.files("csautomation.api").joinpath("static")
    for name, kind in STATIC.items():
        pages.add_api_route(
            f"/static/{name}", _static(folder.joinpath(name).read_bytes(), kind), methods=["GET"]
        )

    @pages.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        if authn.from_session(request.session.get("user"), request.session.get("stamp")):
            return RedirectResponse(_local(next), 303)
        return render(request, "login.html", {"next": _local(next), "error": "", "login": ""}, None)

    @pages.post("/login")
    async def login(request: Request) -> Response:
        form = await checked_form(request)
        login, password = _text(form, "login"), _text(form, "password")
        target = _local(_text(form, "next") or "/")
        keys = authn.attempt_keys(login, _client(request))
        wait = max(authn.throttle.wait(keys[0]), authn.clients.wait(keys[1]))
        if wait > 0:
            error = f"Too many failed sign-ins: try again in {math.ceil(wait)} second(s)."
            context = {"next": target, "error": error, "login": login}
            return render(request, "login.html", context, None, status=429)
        person = await run_in_threadpool(authn.sign_in, login, password)
        if person is None:
            authn.throttle.failed(keys[0])
            authn.clients.failed(keys[1])
            context = {"next": target, "error": "Unknown user or wrong password.", "login": login}
            return render(request, "login.html", context, None, status=400)
        authn.throttle.succeeded(keys[0])
        stamp = await run_in_threadpool(authn.stamp, person)
        request.session.clear()  # nothing from before sign-in carries over
        request.session.update(user=person.id, stamp=stamp, csrf=secrets.token_urlsafe(32))
        return RedirectResponse(target, 303)

    @pages.post("/logout")
    async def logout(request: Request) -> Response:
        await checked_form(request)
        session = request.session
        person = await run_in_threadpool(
            authn.from_session, session.get("user"), session.get("stamp")
        )
        if person is None:
            raise NotSignedInError("sign in first")
        # every session of this person ends, not only this cookie: a copy of it is refused
        await run_in_threadpool(authn.end_sessions, person.id)
        request.session.clear()
        flash(request, "info", "Signed out.")
        return RedirectResponse("/login", 303)


def _escalation_routes(
    pages: APIRouter, review: Review, signed_in: Callable[[Request], Person], render: Render
) -> None:
    """The list of escalations, one escalation, and the actions on it."""

    @pages.get("/")
    def escalations(request: Request) -> Response:
        person = signed_in(request)
        context = _list_context(review, person, request)
        return render(request, "list.html", context, person)

    @pages.get("/escalations/{workflow_id}")
    def escalation(request: Request, workflow_id: str) -> Response:
        person = signed_in(request)
        detail = review.detail(person, workflow_id)
        now = review.now()
        state = detail.state
        left, overdue = views.time_left(state.ack_by if state.status == "open" else None, now)
        context = {
            "d": detail,
            "s": state,
            "url": views.page_url(workflow_id),
            "account_name": detail.account.name if detail.account else state.account_id,
            "holder_name": views.person_name(review.people, state.holder, state.holder_name),
            "age": views.duration((now - state.opened_at).total_seconds()),
            "left": left,
            "overdue": overdue,
            "steps": views.timeline(state.timeline, review.people),
            "reason": views.reason(state.reason),
            "health_on": str(now.date()),
            "at_firing": listing.at_firing(firings_for(review.store, [state]).get(workflow_id)),
            "when": views.when,
            "people": review.team_people(scope_of(person)),
            "snooze_default": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        }
        return render(request, "detail.html", context, person)

    @pages.post("/escalations/{workflow_id}/{kind}")
    async def act(request: Request, workflow_id: str, kind: str) -> Response:
        person = await run_in_threadpool(signed_in, request)
        form = await checked_form(request)
        if kind not in get_args(Kind):
            raise EscalationNotFoundError(f"no action '{kind}'")
        action = cast(Kind, kind)
        fields: dict[str, Any] = {"note": _text(form, "note")}
        if action == "reassign":
            fields["to"] = _text(form, "to")
        if action == "snooze":
            fields["until"] = _until(_text(form, "until"))
        # the page's script asks for JSON and updates the page in place; a plain form
        # post is redirected back with the message in the session
        scripted = "application/json" in request.headers.get("accept", "")
        target = _text(form, "back")  # the list's forms return to the list
        back = RedirectResponse(_local(target) if target else views.page_url(workflow_id), 303)
        try:
            state = await run_in_threadpool(review.actionable, person, workflow_id)
            body = review.parse(action, fields)
            fresh = await review.act(person, state, action, body)
        except (InputError, EscalationClosedError, ServiceUnavailableError) as exc:
            if scripted:
                status = exc.status if isinstance(exc, ReviewError) else 503
                return JSONResponse({"ok": False, "message": f"Not done: {exc}"}, status)
            flash(request, "error", f"Not done: {exc}")
            return back
        holder = views.person_name(review.people, fresh.holder, fresh.holder_name)
        who = holder or "no one"
        message = f"{DONE[action]}. Status: {fresh.status}; held by {who}."
        if scripted:
            return JSONResponse(
                {"ok": True, "message": message, "status": fresh.status, "holder": holder}
            )
        flash(request, "ok", message)
        return back


def _static(body: bytes, kind: str) -> Callable[[], Response]:
    def serve() -> Response:
        return Response(body, media_type=kind, headers={"cache-control": "max-age=3600"})

    return serve


def error_page(templates: Jinja2Templates, request: Request, status: int, message: str) -> Response:
    context = {"status": status, "message": message, "person": None, "flashes": [], "csrf": ""}
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def checked_form(request: Request) -> FormData:
    """The posted form, when it carries this session's CSRF token."""
    form = await request.form(max_files=0, max_fields=20)
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not (isinstance(sent, str) and isinstance(expected, str) and expected):
        raise NotAllowedError("the form has expired; reload the page and try again")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise NotAllowedError("the form has expired; reload the page and try again")
    return form


def flash(request: Request, kind: str, text: str) -> None:
    # a new list: the session notices assignments, not changes inside its values
    request.session["flash"] = [*request.session.get("flash", []), [kind, text]]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _local(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _until(text: str) -> Any:
    """A datetime-local field has no zone; the page labels it UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text  # the body's validation names the problem
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _list_context(review: Review, person: Person, request: Request) -> dict[str, Any]:
    """The list page's account groups, filters, sort, page and choices for `person`."""
    scope = scope_of(person)
    query, given, problems = listing.parse_query(request.query_params)
    found = listing.listing(review, person, query)
    if scope.teams is not None:
        teams = list(scope.teams)
    else:  # an admin filters by any team; a csm by their own
        teams = sorted(review.people.teams) if scope.holder is None else person.all_teams
    return {
        "found": found,
        "query": query,
        "given": given,
        "problems": problems,
        "href": functools.partial(listing.href, given),
        "natural": listing.NATURAL,
        "sorted_by": listing.SORTED_BY[found.sort],
        "page_links": listing.page_links(found.page, found.pages),
        "severities": SEVERITIES,
        "statuses": STATUSES,
        "teams": teams,
        "holders": [] if scope.holder else review.team_people(scope),
        "people": review.team_people(scope),
        "read_only": not scope.acts,
        "now": views.when(review.now()),
        "back": request.url.path + ("?" + request.url.query if request.url.query else ""),
    }
