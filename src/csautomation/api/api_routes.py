"""The JSON API: list, read and act on escalations, authenticated by Bearer token.

    GET  /api/escalations                       ?severity&level&team&holder&status&min_age_hours
                                                &sort&order&page (as the list page; `count`
                                                is of all matching, a page holds 50)
    GET  /api/escalations/{workflow_id}         state, plan, next reach, account, health, explain
    POST /api/escalations/{workflow_id}/acknowledge   {"note": "..."} (optional body)
    POST /api/escalations/{workflow_id}/resolve       {"note": "..."} (note required)
    POST /api/escalations/{workflow_id}/reassign      {"to": "<person id>", "note": "..."}
    POST /api/escalations/{workflow_id}/snooze        {"until": "<ISO time with zone>", ...}

An action answers with the workflow's state after it. The caller's scope is checked on the
stored escalation (404, 403, 409) before its body is read, and before anything is
signalled; `by` is always the caller. The body is checked against the caller's scope and
bounds too: a reassignment only to people of the caller's teams (403), a snooze that ends
within `review.SNOOZE_MAX` (422).
"""

# No `from __future__ import annotations` here: FastAPI reads these routes' annotations at
# run time, and the dependency aliases live in `router`'s scope, not the module's.
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from csautomation.api import listing
from csautomation.api.auth import Authenticator
from csautomation.api.review import (
    ActionBody,
    ListQuery,
    ReassignBody,
    ResolveBody,
    Review,
    SnoozeBody,
)
from csautomation.escalation.people import Person
from csautomation.workflows.types import EscalationState


def router(review: Review, authn: Authenticator) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["escalations"])

    Caller = Annotated[Person, Depends(authn.caller)]

    def target(workflow_id: str, person: Caller) -> EscalationState:
        return review.actionable(person, workflow_id)

    Target = Annotated[EscalationState, Depends(target)]

    @api.get("/escalations")
    def list_escalations(person: Caller, query: Annotated[ListQuery, Query()]) -> dict[str, Any]:
        found = review.escalations(person, query)
        count = len(found)
        if query.sort != "urgency" or query.order is not None:
            accounts = review.store.accounts({s.account_id for s in found})
            order = query.order or listing.NATURAL[query.sort]
            groups = listing.sort_groups(
                listing.singles(found, accounts), query.sort, order, review.now()
            )
            found = [g.states[0] for g in groups]
        paged: dict[str, int] = {}
        if query.page is not None:  # without one, every escalation, as before pages
            page, pages = listing.page_of(count, query.page)
            size = listing.PAGE_SIZE
            found = found[(page - 1) * size : page * size]
            paged = {"page": page, "pages": pages, "page_size": size}
        escalations = [s.model_dump(mode="json") for s in found]
        return {"count": count, **paged, "escalations": escalations}

    @api.get("/escalations/{workflow_id}")
    def escalation(workflow_id: str, person: Caller) -> dict[str, Any]:
        return review.detail(person, workflow_id).to_json()

    @api.post("/escalations/{workflow_id}/acknowledge")
    async def acknowledge(
        person: Caller, state: Target, body: Annotated[ActionBody | None, Body()] = None
    ) -> EscalationState:
        return await review.act(person, state, "acknowledge", body or ActionBody())

    @api.post("/escalations/{workflow_id}/resolve")
    async def resolve(person: Caller, state: Target, body: ResolveBody) -> EscalationState:
        return await review.act(person, state, "resolve", body)

    @api.post("/escalations/{workflow_id}/reassign")
    async def reassign(person: Caller, state: Target, body: ReassignBody) -> EscalationState:
        return await review.act(person, state, "reassign", body)

    @api.post("/escalations/{workflow_id}/snooze")
    async def snooze(person: Caller, state: Target, body: SnoozeBody) -> EscalationState:
        return await review.act(person, state, "snooze", body)

    return api
