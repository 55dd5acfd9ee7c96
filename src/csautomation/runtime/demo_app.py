"""What `csauto demo` serves: the review pages, "My work", and the signal intake with one
documented demo source, so a user can post a signal and watch it become a task."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

from fastapi import FastAPI
from temporalio.client import Client

from csautomation.api.actions import TemporalActions
from csautomation.api.app import create_app
from csautomation.escalation.people import People
from csautomation.facts.model import Account
from csautomation.ingest.sources import Sources, SourceSpec
from csautomation.rules.loader import RuleSet
from csautomation.store.repo import Store

# the demo's signal source and its token: documented (README), printed at start, demo only
DEMO_SOURCE = "demo"
DEMO_SOURCE_TOKEN = "demo-source-token"
DEMO_TOKEN_ENV = "CSAUTO_DEMO_SOURCE_TOKEN"


def demo_sources() -> Sources:
    """The demo's one signal source: a token documented in the README and printed at start,
    so a user can post signals to the demo's /v1/signals. Never for real use."""
    spec = SourceSpec(
        description="csauto demo: anyone who knows the documented demo token",
        auth="token",
        secret_env=DEMO_TOKEN_ENV,
    )
    return Sources({DEMO_SOURCE: spec}, env={DEMO_TOKEN_ENV: DEMO_SOURCE_TOKEN})


def demo_app(
    store: Store, people: People, client: Client, rules: Callable[[], RuleSet | None] | None = None
) -> FastAPI:
    """The app `csauto demo` serves: review pages, "My work", the rules pages over `rules`,
    and the signal intake with the demo source."""
    return create_app(
        store,
        people,
        TemporalActions(client),
        sources=demo_sources(),
        temporal=client,
        rules=rules,
    )


def token_hint(page: str) -> str:
    return (
        f"signals: POST {page}/v1/signals with 'Authorization: Bearer {DEMO_SOURCE_TOKEN}' "
        f"(the demo source '{DEMO_SOURCE}'; README: Try the demo)"
    )


def signal_hint(store: Store, people: People, page: str, day: date) -> str:
    """A command that posts a signal the shipped rules act on: the champion of an
    enterprise account that no rule has fired on yet left (champion-left starts the
    champion-change playbook, whose first step is a task for the account's CSM), an
    account of a CSM who can sign in when there is one."""
    accounts = store.list_accounts()
    fresh = [a for a in accounts if a.tier == "enterprise" and not _fired(store, a)]
    csms = {p.id for p in people.people if p.role == "csm" and p.sign_in}
    account = ([a for a in fresh if a.owner in csms] or fresh or accounts)[0]
    body = json.dumps(
        {
            "type": "stakeholder_change",
            "account_id": account.id,
            "occurred_at": f"{day.isoformat()}T12:00:00Z",
            "payload": {"role": "champion", "change": "left", "person": "Dana Reyes"},
        }
    )
    who = account.owner or "its CSM"
    return (
        f"try the intake: post a signal and watch it become a task for {who} on "
        f"{page}/my-work\n"
        f"  curl -X POST {page}/v1/signals -H 'Authorization: Bearer {DEMO_SOURCE_TOKEN}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def _fired(store: Store, account: Account) -> bool:
    return store.last_fired("champion-left", account.id) is not None
