"""Issue 18's acceptance: 1,000 valid signals posted to the real intake with every poison
kind between them. Every valid signal is stored and evaluated, every poison one is refused
with a 422 naming why and kept in the quarantine, no request gets a 5xx, no evaluation pass
fails, and an account whose stored history cannot be derived (a row an older version
stored) still has its escalation page and API, answering 200."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import insert, select
from temporalio.client import Client

from api.support import (
    EAST_ACKED,
    FAST,
    NOW,
    SECRET,
    FakeActions,
    bearer,
    build_people,
    populate,
    sign_in,
)
from csautomation.api import create_app
from csautomation.api.server import BackgroundServer
from csautomation.facts.health import load_health_model
from csautomation.ingest.sources import Sources, SourceSpec
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.engine import table
from csautomation.store.quarantine import held
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow
from playbook_support import PLAYBOOKS

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "poison-test-token-" + "t" * 24
ACCOUNTS = ("acme", "beta", "gamma")
FIRST_DAY = datetime(2025, 11, 1, 8, tzinfo=UTC)


def valid(n: int) -> dict[str, Any]:
    """The n-th valid signal: one day of usage of one account."""
    account = ACCOUNTS[n % len(ACCOUNTS)]
    day = FIRST_DAY + timedelta(days=n // len(ACCOUNTS))
    return {
        "type": "usage_daily",
        "account_id": account,
        "occurred_at": day.isoformat(),
        "payload": {"logins": 20 + n % 7, "active_users": "4"},  # text "4": stored as 4
    }


def usage(**changes: Any) -> dict[str, Any]:
    signal = {
        "type": "usage_daily",
        "account_id": "acme",
        "occurred_at": "2026-11-20T08:00:00Z",
        "payload": {"logins": 5, "active_users": 2},
    }
    payload = changes.pop("payload", {})
    return {**signal, **changes, "payload": {**signal["payload"], **payload}}


# each kind travels inside a batch of valid signals and is refused on its own
ITEM_POISON: dict[str, tuple[str, str]] = {
    "string number": (json.dumps(usage(payload={"logins": "5,000"})), "payload.logins"),
    "boolean for a number": (json.dumps(usage(payload={"logins": True})), "payload.logins"),
    "Infinity": (json.dumps(usage(payload={"logins": float("inf")})), "payload.logins"),
    "1e309": (
        json.dumps(usage(payload={"logins": 0})).replace('"logins": 0', '"logins": 1e309'),
        "payload.logins",
    ),
    "year 0001": (json.dumps(usage(occurred_at="0001-01-01T00:00:00Z")), "occurred_at"),
    "payload of another type": (json.dumps({**usage(), "payload": {"score": 3}}), "payload"),
    "payload not an object": (json.dumps({**usage(), "payload": ["logins", 5]}), "payload"),
}
# these make the whole body unreadable: each is sent alone
BODY_POISON: dict[str, bytes] = {
    "a 5,000-digit integer": json.dumps(usage(payload={"logins": 0}))
    .replace('"logins": 0', '"logins": ' + "9" * 5000)
    .encode(),
    "nesting 2,000 deep": b'{"signals": ' + b"[" * 2000 + b"]" * 2000 + b"}",
}


@pytest.fixture
def store(store: Store) -> Store:
    populate(store)  # acme, beta, gamma, delta, with their escalations
    return store


@pytest.fixture
def app(store: Store) -> Any:
    sources = Sources({"analytics": SourceSpec(auth="token", secret_env="TOKEN")}, {"TOKEN": TOKEN})
    return create_app(
        store,
        build_people(),
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        sources=sources,
    )


@pytest.fixture
def http(app: Any) -> Iterator[httpx.Client]:
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def post(http: httpx.Client, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return http.post("/v1/signals", content=body, headers=headers)


def legacy_poison(store: Store, account_id: str) -> None:
    """A row an older version stored unchecked: logins as text."""
    with store.engine.begin() as conn:
        conn.execute(
            insert(table(SignalRow)).values(
                idempotency_key=f"legacy:{account_id}",
                account_id=account_id,
                type="usage_daily",
                occurred_at=NOW - timedelta(days=1),
                payload={"logins": "five", "active_users": 2},
                received_at=NOW,
            )
        )


def failed_passes() -> float:
    return (
        REGISTRY.get_sample_value("csauto_pipeline_pass_errors_total", {"step": "evaluate"}) or 0.0
    )


@pytest.mark.asyncio
async def test_1000_valid_signals_among_every_poison_kind(
    http: httpx.Client, app: Any, store: Store, client: Client
) -> None:
    answers: list[httpx.Response] = []
    kinds = list(ITEM_POISON.items())
    for batch in range(20):  # 20 batches of 50 valid signals, a poison item in 7 of them
        items = [json.dumps(valid(batch * 50 + i)) for i in range(50)]
        if batch < len(kinds):
            name, (text, path) = kinds[batch]
            items.insert(25, text)
        answer = post(http, ("[" + ",".join(items) + "]").encode())
        answers.append(answer)
        if batch < len(kinds):
            assert answer.status_code == 422, (name, answer.text)
            errors = answer.json()["errors"]  # only the poison item's, each with a reason
            assert {e["index"] for e in errors} == {25}, (name, errors)
            assert all(e["field"].startswith(path) and e["message"] for e in errors), name
        else:
            assert answer.status_code == 202, answer.text
    for name, body in BODY_POISON.items():
        answer = post(http, body)
        answers.append(answer)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["errors"][0]["field"] == "body", name
    assert all(a.status_code < 500 for a in answers)
    # every poison kind is kept in the quarantine, with its reason
    quarantined = held(store, "open")
    # (Infinity and 1e309 read as the same item: one row, seen twice)
    assert sum(r.times for r in quarantined) == len(ITEM_POISON) + len(BODY_POISON)
    assert all(r.errors and r.errors[0]["message"] for r in quarantined)

    # a history an older version stored unchecked, for an account with an escalation
    legacy_poison(store, "delta")
    before = failed_passes()
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    try:
        pipeline = Pipeline(store, runtime, PLAYBOOKS, client)
        evaluated = 0
        for _ in range(10):
            n = pipeline.evaluate_pending()
            evaluated += n
            if n == 0:
                break
    finally:
        runtime.close()
    assert failed_passes() == before
    t = table(SignalRow)
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.c.account_id, t.c.payload, t.c.evaluated_at)).all()
    valid_rows = [r for r in rows if r.account_id in ACCOUNTS]
    assert len(valid_rows) == 1000
    assert all(r.evaluated_at is not None for r in valid_rows)
    assert all(r.payload["active_users"] == 4 for r in valid_rows)  # text "4", stored as 4
    assert {json.loads(r.raw).get("account_id") for r in held(store, "open", "pipeline")} == {
        "delta"
    }

    # the account whose history cannot be derived: its escalation answers 200, with why
    api = http.get(f"/api/escalations/{EAST_ACKED}", headers=bearer("mia"))
    assert api.status_code == 200, api.text
    assert api.json()["health"]["error"].startswith("facts cannot be computed: ")
    with TestClient(app, follow_redirects=False) as pages:
        sign_in(pages, "mia")
        page = pages.get(f"/escalations/{quote(EAST_ACKED, safe='')}")
    assert page.status_code == 200
    assert "facts cannot be computed" in page.text and "Delta Inc" in page.text
