"""Rules at work, for CS ops: one page per rule (its conditions in words, firings per week
over 12 weeks as a chart, its latest firings with why, what its playbook runs came to) and
an overview (every rule's firings in the last 7 and 28 days; the health bands of the
accounts week by week).

Every signed-in person sees every rule (they are the organisation's configuration); the
firings, runs and accounts counted are those of the accounts they see (`insights`). A rule
no one knows answers 404.

The charts are Chart.js, served from this app (static/vendor/, see its README), drawn by
static/charts.js from a JSON block in the page: no script is built from data. These pages
allow scripts from this site only; every number of a chart is also in a table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from csautomation.api import insights, views
from csautomation.api.auth import Authenticator
from csautomation.api.errors import RuleNotFoundError
from csautomation.api.pages import csrf_token
from csautomation.api.rule_catalog import RuleCatalog, RuleInfo
from csautomation.escalation.people import People, Person
from csautomation.rules.explain import ExplainNode
from csautomation.store.facts import FactsReader
from csautomation.store.firings import escalations_of, firing_times, latest_firings, runs_of_rule
from csautomation.store.repo import Store

RECENT = 20
STATIC = {
    # path: (file in the package, media type, cache-control)
    "/static/charts.js": ("static/charts.js", "text/javascript", "max-age=3600"),
    # the vendored file changes only with the app's version
    "/static/vendor/chart.umd.min.js": (
        "static/vendor/chart.umd.min.js",
        "text/javascript",
        "public, max-age=86400",
    ),
}


def router(
    store: Store,
    people: People,
    authn: Authenticator,
    templates: Jinja2Templates,
    catalog: RuleCatalog,
    facts: FactsReader,
    now: Callable[[], datetime],
) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    _static_routes(pages)
    history = insights.BandHistory(facts, facts.model)

    def signed_in(request: Request) -> Person:
        return authn.signed_in(request.session)

    def render(request: Request, name: str, person: Person, context: dict[str, Any]) -> Response:
        context = {
            "person": person,
            "csrf": csrf_token(request),
            "flashes": request.session.pop("flash", []),
            "when": views.when,
            **context,
        }
        return templates.TemplateResponse(request, name, context)

    @pages.get("/rules")
    def overview(request: Request) -> Response:
        person = signed_in(request)
        context = _overview(store, people, person, catalog, history, now())
        return render(request, "rules.html", person, context)

    @pages.get("/rules/{rule_id}")
    def rule_page(request: Request, rule_id: str) -> Response:
        person = signed_in(request)
        # a NUL no stored id can hold (PostgreSQL refuses it in text): looked up nowhere
        rule = catalog.get(rule_id) if "\x00" not in rule_id else None
        if rule is None:
            raise RuleNotFoundError(f"no rule '{rule_id}'")
        return render(request, "rule.html", person, _rule(store, people, person, rule, now()))

    return pages


def _overview(
    store: Store,
    people: People,
    person: Person,
    catalog: RuleCatalog,
    history: insights.BandHistory,
    moment: datetime,
) -> dict[str, Any]:
    every = insights.all_accounts(store)
    seen = insights.visible_accounts(people, person, every)
    fired = [
        (rule_id, at)
        for rule_id, account_id, at in firing_times(store, moment - timedelta(days=28))
        if insights.within(account_id, seen) and at <= moment
    ]
    rows = [
        {
            "rule": rule,
            "last_7": sum(1 for r, at in fired if r == rule.id and at >= moment - timedelta(7)),
            "last_28": sum(1 for r, _ in fired if r == rule.id),
        }
        for rule in catalog.all()
    ]
    accounts = [a for a in every if insights.within(a.id, seen)]
    bands = history.weeks(accounts, moment)
    names = (*insights.BANDS, insights.UNKNOWN)
    chart = {
        "kind": "bands",
        "labels": [w.label for w in bands.span],
        # pairs, not a mapping: the JSON filter sorts keys, and the bands have an order
        "series": [[b, bands.counts[b]] for b in names],
    }
    return {
        "rows": rows,
        "bands": bands,
        "band_names": names,
        "chart": chart,
        "now": moment,
        "everyone": seen is None,
    }


def _rule(
    store: Store, people: People, person: Person, rule: RuleInfo, moment: datetime
) -> dict[str, Any]:
    seen = insights.visible_accounts(people, person, insights.all_accounts(store))
    span = insights.weeks(moment)
    times = [
        at
        for _, account_id, at in firing_times(store, span[0].start, rule.id)
        if insights.within(account_id, seen) and at <= moment
    ]
    counts = insights.per_week(times, span)
    recent = latest_firings(store, rule.id, seen, RECENT)
    names = {a.id: a.name for a in store.accounts({f.account_id for f in recent}).values()}
    return {
        "rule": rule,
        "weeks": list(zip(span, counts, strict=True)),
        "total": sum(counts),
        "chart": {
            "kind": "firings",
            "labels": [w.label for w in span],
            "series": [["firings", counts]],
        },
        "recent": [
            {
                "firing": f,
                "account_name": names.get(f.account_id, f.account_id),
                "known": f.account_id in names,
                "tree": ExplainNode.from_dict(f.explain.get("conditions")),
            }
            for f in recent
        ],
        "outcomes": insights.outcomes(
            runs_of_rule(store, rule.id), escalations_of(store, rule.id), seen
        ),
        "now": moment,
        "everyone": seen is None,
    }


def _static_routes(pages: APIRouter) -> None:
    package = resources.files("csautomation.api")
    for path, (name, media, cache) in STATIC.items():
        pages.add_api_route(path, _serving(package.joinpath(name).read_bytes(), media, cache))


def _serving(body: bytes, media: str, cache: str) -> Callable[[], Response]:
    def serve() -> Response:
        return Response(body, media_type=media, headers={"cache-control": cache})

    return serve
