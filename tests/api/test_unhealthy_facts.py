"""An account whose facts cannot be computed (a stored signal they cannot be derived from,
stored before validation was strict or by hand) still has its escalation page and API:
200, with the reason, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import quote

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import insert

from api.support import EAST_CRITICAL, NOW, FakeActions, bearer, sign_in
from csautomation.api import EscalationActions
from csautomation.store.engine import table
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow

PAGE = f"/escalations/{quote(EAST_CRITICAL, safe='')}"


def poison(store: Store, account_id: str) -> None:
    """Logins as a string: the row a CSV import stored before numbers were typed."""
    with store.engine.begin() as conn:
        conn.execute(
            insert(table(SignalRow)).values(
                idempotency_key=f"poison:{account_id}",
                account_id=account_id,
                type="usage_daily",
                occurred_at=NOW - timedelta(days=1),
                payload={"logins": "5", "active_users": "<b>2</b>"},
                received_at=NOW,
            )
        )


def test_the_api_answers_with_why_the_facts_cannot_be_computed(
    store: Store,
    fake_actions: FakeActions,
    serve_app: Callable[[EscalationActions], str],
) -> None:
    poison(store, "acme")
    base = serve_app(fake_actions)
    r = httpx.get(f"{base}/api/escalations/{EAST_CRITICAL}", headers=bearer("mia"))
    assert r.status_code == 200, r.text
    health = r.json()["health"]
    assert health["error"].startswith("facts cannot be computed: ")
    assert "Error" in health["error"] and "Traceback" not in health["error"]
    assert health["score"] is None and health["components"] == {}
    assert r.json()["state"]["workflow_id"] == EAST_CRITICAL  # the rest is all there
    assert r.json()["can_act"] is True


def test_the_page_answers_with_why_the_facts_cannot_be_computed(
    store: Store, client: TestClient
) -> None:
    poison(store, "acme")
    sign_in(client, "mia")
    r = client.get(PAGE)
    assert r.status_code == 200
    html = r.text
    assert 'data-testid="health-error">facts cannot be computed: ' in html
    assert 'data-testid="health-score"' not in html
    assert "<b>2</b>" not in html  # whatever the reason quotes is escaped
    assert 'data-testid="acknowledge-button"' in html  # still workable


def test_a_healthy_account_has_no_error(client: TestClient) -> None:
    r = client.get(f"/api/escalations/{EAST_CRITICAL}", headers=bearer("mia"))
    assert r.status_code == 200 and r.json()["health"]["error"] is None
    assert r.json()["health"]["score"] is not None
