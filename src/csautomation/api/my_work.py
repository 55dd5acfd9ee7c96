""" "My work": the signed-in person's open tasks in the local CRM, each with its description,
due date, account and the playbook step that created it, and a button that completes it.

Completing a task is `complete_task` with `by` the signed-in person: the task is marked
done in the ledger, crediting them, and its playbook is signalled and moves on.

Who sees whose tasks:
  csm, ops                 their own
  manager, director, vp    their own and those of everyone on their teams (a filter picks
                           one person)
  admin                    everyone's
A task outside that answers as a missing one does (404), so its existence is not told.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from temporalio.service import RPCError

from csautomation.api import views
from csautomation.api.auth import MANAGER_ROLES, Authenticator
from csautomation.api.errors import ReviewError
from csautomation.api.pages import checked_form, csrf_token, flash
from csautomation.errors import ServiceUnavailableError
from csautomation.escalation.people import People, Person
from csautomation.ingest.completions import complete_task
from csautomation.store.repo import Store
from csautomation.store.tasks import WorkItem, work_item, work_items

if TYPE_CHECKING:
    from temporalio.client import Client

STATUSES = ("open", "done", "all")


class TaskNotFoundError(ReviewError):
    status = 404


def visible_assignees(people: People, person: Person) -> set[str] | None:
    """Whose tasks `person` sees: None for everyone's."""
    if person.role == "admin":
        return None
    if person.role in MANAGER_ROLES:
        teams = set(person.all_teams)
        return {person.id} | {p.id for p in people.people if teams & set(p.all_teams)}
    return {person.id}


def router(
    store: Store,
    people: People,
    authn: Authenticator,
    templates: Jinja2Templates,
    temporal: Client | None,
    now: Callable[[], datetime],
) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def signed_in(request: Request) -> Person:
        return authn.signed_in(request.session)

    def visible_task(person: Person, task_id: int) -> WorkItem:
        item = work_item(store, task_id)
        seen = visible_assignees(people, person)
        if item is None or (seen is not None and item.assignee not in seen):
            raise TaskNotFoundError(f"no task {task_id}")
        return item

    @pages.get("/my-work")
    def my_work(request: Request, assignee: str = "", status: str = "open") -> Response:
        person = signed_in(request)
        context = _context(store, people, person, assignee, status, now())
        # tasks completed a moment ago stay on the page, shown done
        just_done = {int(i) for i in request.session.pop("completed_tasks", [])}
        shown = {item.id for item in context["items"]}
        for task_id in sorted(just_done - shown):
            item = work_item(store, task_id)
            if item is not None and context["problem"] == "":
                context["items"].append(item)
        context.update(
            person=person,
            csrf=csrf_token(request),
            flashes=request.session.pop("flash", []),
            just_done=just_done,
            query=request.url.query,
        )
        return templates.TemplateResponse(request, "my_work.html", context)

    @pages.post("/my-work/{task_id}/complete")
    async def complete(request: Request, task_id: int) -> Response:
        person = signed_in(request)
        form = await checked_form(request)
        back_query = form.get("back")
        back = "/my-work" + (f"?{back_query}" if isinstance(back_query, str) and back_query else "")
        item = await run_in_threadpool(visible_task, person, task_id)
        if temporal is None:
            raise ServiceUnavailableError(
                "this server has no Temporal client: tasks cannot be completed"
            )
        try:
            await complete_task(temporal, store, item.id, by=person.id)
        except (RPCError, RuntimeError) as exc:  # the server does not answer
            flash(request, "error", f"Not done: Temporal does not answer ({exc})")
            return RedirectResponse(back, 303)
        request.session["completed_tasks"] = [
            *request.session.get("completed_tasks", []),
            item.id,
        ]
        flash(
            request,
            "ok",
            f"Done: {item.subject}. Its playbook ({item.playbook or item.workflow_id}) moves on.",
        )
        return RedirectResponse(back, 303)

    return pages


def _context(
    store: Store, people: People, person: Person, assignee: str, status: str, now: datetime
) -> dict[str, Any]:
    seen = visible_assignees(people, person)
    problem = ""
    wanted: set[str] | None = seen
    if assignee:
        if seen is not None and assignee not in seen:
            problem = f"{assignee} is not on your teams"
            wanted = set()
        else:
            wanted = {assignee}
    if status not in STATUSES:
        problem, status = f"status: expected one of {', '.join(STATUSES)}", "open"
    items = work_items(store, wanted, None if status == "all" else status)
    choices = [p for p in people.people if seen is None or p.id in seen]
    return {
        "items": items,
        "assignee": assignee,
        "status": status,
        "statuses": STATUSES,
        "problem": problem,
        "assignees": choices if len(choices) > 1 else [],
        "names": {p.id: p.name for p in people.people},
        "now": now,
        "when": views.when,
        "time_left": views.time_left,
    }
