"""The intercom_conversations pull against the fake Intercom over HTTPS (httpx): pages
followed by `starting_after`, a 429 waited out as its Retry-After says, conversations held
in the quarantine with their reason, a re-run that stores nothing twice, the webhook's keys
(one conversation is one signal whichever way it came) and a support rule firing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csautomation.errors import ConfigError, ConnectorAuthError
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.ingest.pulls import PullContext, run_pull
from csautomation.ingest.pulls import intercom as pull_module
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.pull_tables import load_cursor
from csautomation.store.quarantine import held
from csautomation.store.repo import Store
from factories import account
from fakes.intercom import TOKEN, FakeIntercom

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)


def conversation(
    cid: str, hours_ago: float, acct: str | None = "ACME", **extra: Any
) -> dict[str, Any]:
    at = int((NOW - timedelta(hours=hours_ago)).timestamp())
    return {
        "type": "conversation",
        "id": cid,
        "created_at": at - 600,
        "updated_at": at,
        "state": "closed",
        "open": False,
        "priority": "not_priority",
        "source": {"type": "conversation", "subject": f"Question {cid}"},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": f"c{cid}"}]},
        "custom_attributes": {"account_id": acct} if acct else {},
        **extra,
    }


def rating(stars: Any, hours_ago: float = 1) -> dict[str, Any]:
    at = int((NOW - timedelta(hours=hours_ago)).timestamp())
    return {"conversation_rating": {"rating": stars, "remark": "", "created_at": at}}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIntercom]:
    monkeypatch.setenv("CSAUTO_INTERCOM_TOKEN", TOKEN)
    with FakeIntercom() as server:
        assert isinstance(server, FakeIntercom)
        yield server


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(pull_module, "SLEEP", waited.append)
    return waited


@pytest.fixture
def ctx(store: Store, tmp_path: Path) -> PullContext:
    store.upsert_accounts([account(), account(id="BETA", name="Beta")])
    day = NOW - timedelta(days=40)  # history: the 30-day support facts need 30 days
    usage = {"logins": 30, "active_users": 5}
    store.add_signals(
        [Signal(type="usage_daily", account_id="ACME", occurred_at=day, payload=usage)]
    )
    return PullContext(store, tmp_path, NOW)


def options(fake: FakeIntercom, tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {
        "base_url": fake.url,
        "ca_bundle": fake.ca_file(tmp_path),
        "sources_file": str(ROOT / "sources.yaml"),
        "per_page": 2,
        **more,
    }


def test_conversations_become_signals_across_pages_through_a_429(
    fake: FakeIntercom, ctx: PullContext, waits: list[float], tmp_path: Path
) -> None:
    fake.add(conversation("11", 30, priority="priority"))
    fake.add(conversation("12", 20, **rating(1)))
    fake.add(conversation("13", 10, **rating(2)))
    fake.add(conversation("14", 5, acct="BETA", **rating(5)))
    fake.add(conversation("15", 4, **rating(9)))  # a rating the mapping does not know
    fake.add(conversation("16", 3, acct=None))  # no account to put it on
    fake.add(conversation("17", 2, acct="NOBODY"))  # an account we do not have
    fake.rate_limited = 1
    result = run_pull("intercom_conversations", options(fake, tmp_path), ctx)
    assert waits == [1.0]  # Retry-After honoured, once
    assert result.fetched == 7
    searches = list(fake.calls("POST", "/conversations/search"))
    assert len(searches) == 1 + 4  # the 429, then four pages of two
    assert all(r.headers["intercom-version"] == "2.11" for r in searches)
    assert [r.json()["pagination"].get("starting_after") is None for r in searches[1:]] == [
        True,
        False,
        False,
        False,
    ]
    acme = {s.idempotency_key: s for s in ctx.store.signals_for("ACME")}
    # the webhook's keys: a conversation delivered both ways is one signal
    assert {
        "intercom:11:support_ticket",
        "intercom:11:support_escalation",
        "intercom:12:nps_response",
        "intercom:12:support_escalation",
        "intercom:13:support_escalation",
    } <= set(acme)
    assert acme["intercom:11:support_ticket"].payload == {
        "priority": "high",
        "subject": "Question 11",
    }
    assert acme["intercom:12:nps_response"].payload == {"score": 0}
    assert [s.payload for s in ctx.store.signals_for("BETA") if s.type.value == "nps_response"] == [
        {"score": 10}
    ]
    reasons = {
        r.errors[0]["field"]: r.errors[0]["message"] for r in held(ctx.store, source="intercom")
    }
    assert "9 is not one of the mapped values" in reasons["data.item.conversation_rating.rating"]
    assert "no account found" in reasons["account_id"] or "unknown account" in reasons["account_id"]
    assert len(held(ctx.store, source="intercom")) == 3
    # the cursor: past what was seen, less a minute
    newest = int((NOW - timedelta(hours=2)).timestamp())
    assert (
        load_cursor(ctx.store.engine, "intercom_conversations", "intercom")
        == f"{newest - 60}:{newest - 60}:"
    )
    # three escalations in 30 days: the support rule fires
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), reload_interval=3600)
    try:
        acme_account = ctx.store.account("ACME")
        assert acme_account is not None
        ev = runtime.evaluate_account(
            acme_account, ctx.store.signals_for("ACME"), NOW, "support_escalation"
        )
        assert "support-escalation-spike" in [m.rule_id for m in ev.fired]
    finally:
        runtime.close()


def test_a_rerun_brings_nothing_twice(
    fake: FakeIntercom, ctx: PullContext, waits: list[float], tmp_path: Path
) -> None:
    for i in range(5):
        fake.add(conversation(str(20 + i), 10 - i, **rating(4)))
    fake.add(conversation("29", 1, **rating(0)))  # held
    first = run_pull("intercom_conversations", options(fake, tmp_path), ctx)
    # a ticket and a score each; the last one's ticket too, its rating held (each of a
    # conversation's notifications stands alone, as the webhook's do)
    assert first.stored == 11
    # from scratch (the cursor gone), and from the cursor: nothing new either way
    again = run_pull("intercom_conversations", options(fake, tmp_path, name="fresh"), ctx)
    later = run_pull("intercom_conversations", options(fake, tmp_path), ctx)
    assert (again.stored, later.stored) == (0, 0)
    assert later.fetched == 1  # the cursor's minute of overlap re-reads the newest only
    [row] = held(ctx.store, source="intercom")
    assert row.times == 3  # one row, seen again by each run that read it
    assert waits == []


def test_a_refused_token_or_missing_setup_stops_the_pull(
    fake: FakeIntercom,
    ctx: PullContext,
    waits: list[float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.add(conversation("31", 1))
    monkeypatch.setenv("CSAUTO_INTERCOM_TOKEN", "not-the-token")
    with pytest.raises(ConnectorAuthError) as refused:
        run_pull("intercom_conversations", options(fake, tmp_path), ctx)
    assert "Access Token Invalid" in str(refused.value) and "not-the-token" not in str(
        refused.value
    )
    assert waits == [] and len(list(fake.calls("POST", "/conversations/search"))) == 1
    monkeypatch.delenv("CSAUTO_INTERCOM_TOKEN")
    with pytest.raises(ConfigError, match="CSAUTO_INTERCOM_TOKEN is not set"):
        run_pull("intercom_conversations", options(fake, tmp_path), ctx)
    monkeypatch.setenv("CSAUTO_INTERCOM_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="no source 'product-events' with auth: intercom"):
        run_pull("intercom_conversations", options(fake, tmp_path, source="product-events"), ctx)
    with pytest.raises(ConfigError, match="per_page"):
        run_pull("intercom_conversations", options(fake, tmp_path, per_page=500), ctx)
    assert [s.type.value for s in ctx.store.signals_for("ACME")] == ["usage_daily"]
