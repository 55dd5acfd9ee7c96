"""Intercom's and Segment's webhooks over the real app (uvicorn on 127.0.0.1, httpx), with
the mappings shipped in sources.yaml: a signed delivery becomes a stored signal (committed
before the answer), a redelivery stores nothing twice, a bad signature is refused with
nothing kept, a malformed or unmappable event is held in the quarantine with its reason
(and answered 200, since the vendor would only retry it), hostile text is kept as data,
and the stored signals fire the shipped support rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.support import FAST, NOW, SECRET, FakeActions, build_people, populate
from csautomation.api import create_app
from csautomation.api.server import BackgroundServer
from csautomation.errors import ConfigFileError
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.ingest.sources import Sources, load_sources
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.engine import table
from csautomation.store.identities import user_account
from csautomation.store.quarantine import held
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow

ROOT = Path(__file__).resolve().parents[2]
INTERCOM_SECRET = "intercom-client-secret-" + "c" * 20
SEGMENT_SECRET = "segment-shared-secret-" + "s" * 20
ENV = {
    "CSAUTO_SOURCE_INTERCOM_CLIENT_SECRET": INTERCOM_SECRET,
    "CSAUTO_SOURCE_PRODUCT_EVENTS_SECRET": SEGMENT_SECRET,
}


def shipped_sources() -> Sources:
    """sources.yaml as shipped, its Intercom and Segment sources turned on."""
    declared = load_sources(ROOT / "sources.yaml", ENV).declared
    on = {n: s.model_copy(update={"enabled": True}) for n, s in declared.items()}
    return Sources(on, ENV)


@pytest.fixture
def store(store: Store) -> Store:
    populate(store)
    return store


@pytest.fixture
def http(store: Store) -> Iterator[httpx.Client]:
    app = create_app(
        store,
        build_people(),
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        sources=shipped_sources(),
    )
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def stored(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table(SignalRow))).scalar_one())


def recent(hours: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


# -- Intercom ---------------------------------------------------------------------------------
def notification(
    topic: str, conversation: str = "215", account: str | None = "acme", **item: Any
) -> dict[str, Any]:
    conv: dict[str, Any] = {
        "type": "conversation",
        "id": conversation,
        "created_at": int(recent(2).timestamp()),
        "updated_at": int(recent().timestamp()),
        "state": "open",
        "priority": "not_priority",
        "source": {"type": "conversation", "subject": "Exports fail", "body": "<p>help</p>"},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "c1"}]},
        "custom_attributes": {"account_id": account} if account else {},
        **item,
    }
    return {
        "type": "notification_event",
        "app_id": "a86dr8yl",
        "id": f"notif_{topic}_{conversation}",
        "topic": topic,
        "created_at": int(recent().timestamp()),
        "data": {"type": "notification_event_data", "item": conv},
    }


def intercom(http: httpx.Client, body: Any, secret: str = INTERCOM_SECRET) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sig = "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
    headers = {"X-Hub-Signature": sig, "Content-Type": "application/json"}
    return http.post("/v1/intercom/intercom", content=raw, headers=headers)


def rated(conversation: str, stars: int) -> dict[str, Any]:
    rating = {"rating": stars, "remark": "", "created_at": int(recent().timestamp())}
    return notification("conversation.rating.added", conversation, conversation_rating=rating)


def test_an_intercom_conversation_is_one_stored_ticket_however_often_it_is_delivered(
    http: httpx.Client, store: Store
) -> None:
    r = intercom(http, notification("conversation.user.created", priority="priority"))
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1
    [signal] = store.signals_for("acme")
    assert signal.idempotency_key == "intercom:215:support_ticket"
    assert signal.payload == {"priority": "high", "subject": "Exports fail"}
    # the same notification again (a replay or Intercom's retry), then the conversation's
    # later notifications: one conversation, one ticket
    again = intercom(http, notification("conversation.user.created", priority="priority"))
    closed = intercom(http, notification("conversation.admin.closed"))
    assert again.json()["duplicates"] == 1 and closed.json()["duplicates"] == 1
    assert stored(store) == 1
    # a topic the mapping leaves out, and Intercom's set-up ping: answered, nothing kept
    noted = intercom(http, notification("conversation.admin.noted"))
    ping = intercom(http, {"type": "notification_event", "id": "notif_p", "topic": "ping"})
    assert noted.json()["ignored"][0]["reason"] == "not mapped"
    assert ping.status_code == 200 and stored(store) == 1 and held(store) == []


def test_a_bad_intercom_signature_is_refused_and_nothing_is_kept(
    http: httpx.Client, store: Store
) -> None:
    body = notification("conversation.user.created")
    forged = intercom(http, body, secret="not-the-client-secret")
    unsigned = http.post("/v1/intercom/intercom", json=body)
    raw = json.dumps(body).encode()
    sig = "sha1=" + hmac.new(INTERCOM_SECRET.encode(), raw, hashlib.sha1).hexdigest()
    tampered = http.post(
        "/v1/intercom/intercom",
        content=raw.replace(b"Exports", b"Imports"),
        headers={"X-Hub-Signature": sig},
    )
    segment_path = http.post(
        "/v1/intercom/product-events", content=raw, headers={"X-Hub-Signature": sig}
    )
    odd = http.post(  # a header of non-ASCII bytes
        "/v1/intercom/intercom", content=raw, headers={"X-Hub-Signature": "sha1=éé".encode()}
    )
    assert [r.status_code for r in (forged, unsigned, tampered, segment_path, odd)] == [401] * 5
    assert "X-Hub-Signature" in unsigned.json()["detail"]
    assert INTERCOM_SECRET not in forged.text + unsigned.text
    assert stored(store) == 0 and held(store) == []


def test_malformed_intercom_notifications_are_held_with_their_reason(
    http: httpx.Client, store: Store
) -> None:
    cases = {
        b"{not json": "body",
        json.dumps({"type": "notification_event", "topic": "x"}).encode(): "id",
        json.dumps(rated("301", 9)).encode(): "data.item.conversation_rating.rating",
        json.dumps(
            notification("conversation.user.created", "302", account=None)
        ).encode(): "account_id",
        json.dumps(
            notification("conversation.user.created", "303", account="nobody")
        ).encode(): "account_id",
        json.dumps({**rated("304", 4), "created_at": "yesterday"}).encode(): "created_at",
    }
    for raw, where in cases.items():
        r = intercom(http, raw)
        assert r.status_code == 200, r.text  # held: Intercom would only retry it
        body = r.json()
        assert [h["field"] for h in body["held"]] == [where], body
        assert body["quarantine_ids"] and where in body["detail"]
    rows = held(store, source="intercom")
    assert len(rows) == len(cases) and stored(store) == 0
    assert "9 is not one of the mapped values" in json.dumps([r.errors for r in rows])


def test_hostile_text_is_kept_as_data_or_held(http: httpx.Client, store: Store) -> None:
    hostile = "<script>alert(1)</script> {{ 7*7 }} ' OR 1=1 -- " + "é" * 300
    ok = intercom(
        http, notification("conversation.user.created", "401", source={"subject": hostile})
    )
    assert ok.json()["stored"] == 1
    [signal] = store.signals_for("acme")
    assert signal.payload["subject"] == hostile  # data, never evaluated
    nul = intercom(
        http, notification("conversation.user.created", "402", source={"subject": "a\x00b"})
    )
    deep = intercom(http, b'{"a":' * 40 + b"1" + b"}" * 40)
    assert nul.json()["held"][0]["field"] == "payload.subject"
    assert "nested deeper" in deep.json()["held"][0]["message"]
    assert stored(store) == 1


def test_two_bad_intercom_ratings_fire_the_support_escalation_rule(
    http: httpx.Client, store: Store
) -> None:
    with_history(store, "acme")
    for conversation in ("501", "502"):
        assert intercom(http, rated(conversation, 1)).json()["stored"] == 2  # nps + escalation
    signals = [s for s in store.signals_for("acme") if s.type.value != "usage_daily"]
    assert (
        sorted(s.type.value for s in signals) == ["nps_response"] * 2 + ["support_escalation"] * 2
    )
    assert {s.payload["score"] for s in signals if s.type.value == "nps_response"} == {0}
    fired = evaluate(store, "support_escalation")
    assert "support-escalation-spike" in fired


def with_history(store: Store, account: str) -> None:
    """The account's usage from 40 days back: the 30-day support facts need 30 days."""
    day = datetime.now(UTC) - timedelta(days=40)
    payload = {"logins": 30, "active_users": 5}
    store.add_signals(
        [Signal(type="usage_daily", account_id=account, occurred_at=day, payload=payload)]
    )


def evaluate(store: Store, trigger: str, account_id: str = "acme") -> list[str]:
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), reload_interval=3600)
    try:
        account = store.account(account_id)
        assert account is not None
        at = datetime.now(UTC)
        found = runtime.evaluate_account(account, store.signals_for(account_id), at, trigger)
        return [m.rule_id for m in found.fired]
    finally:
        runtime.close()


# -- Segment ----------------------------------------------------------------------------------
def call(kind: str, message_id: str, user: str = "u-1", **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": message_id,
        "userId": user,
        "timestamp": recent().isoformat().replace("+00:00", "Z"),
        **fields,
    }


def segment(http: httpx.Client, body: Any, secret: str = SEGMENT_SECRET) -> httpx.Response:
    raw = json.dumps(body).encode()
    sig = hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
    headers = {"X-Signature": sig, "Content-Type": "application/json"}
    return http.post("/v1/segment/product-events", content=raw, headers=headers)


def write_key(key: str = SEGMENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_a_group_call_links_a_user_whose_track_calls_land_on_the_account(
    http: httpx.Client, store: Store
) -> None:
    nps = call("track", "m-2", event="NPS Survey Submitted", properties={"score": 3})
    early = segment(http, nps)  # before the group call: held, the account unknown
    assert early.json()["held"][0]["field"] == "account_id"
    linked = segment(http, call("group", "m-1", groupId="acme", traits={"name": "Acme"}))
    assert linked.status_code == 200 and linked.json()["linked"] == 1
    assert user_account(store, "product-events", "u-1") == "acme"
    r = segment(http, call("track", "m-3", event="NPS Survey Submitted", properties={"score": 3}))
    assert r.json()["stored"] == 1
    [signal] = store.signals_for("acme")
    assert (signal.idempotency_key, signal.payload) == ("segment:m-3:nps_response", {"score": 3})
    assert (
        segment(
            http, call("track", "m-3", event="NPS Survey Submitted", properties={"score": 3})
        ).json()["duplicates"]
        == 1
    )
    # a page call and an event nobody mapped: answered, nothing kept
    other = segment(http, call("track", "m-4", event="Button Clicked"))
    assert other.json()["ignored"][0]["reason"] == "not mapped" and stored(store) == 1


def test_a_segment_batch_with_the_write_key_is_taken_in_order(
    http: httpx.Client, store: Store
) -> None:
    batch = {
        "batch": [
            call("group", "b-1", user="u-9", groupId="beta"),
            *(
                call(
                    "track",
                    f"b-{i}",
                    user="u-9",
                    event="Support Request Submitted",
                    properties={"priority": "urgent", "subject": f"Down #{i}"},
                )  # fmt: skip
                for i in (2, 3, 4)
            ),
            call("page", "b-5", user="u-9"),
            {"type": "track", "event": "NPS Survey Submitted", "userId": "u-9"},  # no messageId
        ],
        "context": {"library": {"name": "analytics-python"}},
    }
    with_history(store, "beta")
    r = http.post("/v1/segment/product-events", json=batch, headers=write_key())
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["linked"], body["stored"]) == (1, 3)
    assert [h["field"] for h in body["held"]] == ["messageId"]
    tickets = [s for s in store.signals_for("beta") if s.type.value == "support_ticket"]
    assert [s.payload["priority"] for s in tickets] == ["urgent"] * 3
    # the same batch again: nothing new
    again = http.post("/v1/segment/product-events", json=batch, headers=write_key())
    assert again.json()["duplicates"] == 3 and stored(store) == 4  # with the history's one
    # three urgent tickets in 30 days: the support rule fires
    assert "support-escalation-spike" in evaluate(store, "support_ticket", "beta")


def test_a_bad_segment_signature_or_write_key_is_refused(http: httpx.Client, store: Store) -> None:
    linking = call("group", "x-1", groupId="acme")
    forged = segment(http, linking, secret="wrong")
    wrong_key = http.post("/v1/segment/product-events", json=linking, headers=write_key("nope"))
    none = http.post("/v1/segment/product-events", json=linking)
    garbled = http.post(
        "/v1/segment/product-events", json=linking, headers={"Authorization": "Basic !!!"}
    )
    unknown = http.post("/v1/segment/nobody", json=linking, headers=write_key())
    assert [r.status_code for r in (forged, wrong_key, none, garbled, unknown)] == [401] * 5
    assert "X-Signature" in none.json()["detail"]
    assert user_account(store, "product-events", "u-1") is None and held(store) == []


def test_malformed_segment_calls_are_held_with_their_reason(
    http: httpx.Client, store: Store
) -> None:
    r = segment(
        http,
        {
            "batch": [
                call("group", "g-1", groupId="nobody"),
                "text",
                call(
                    "track",
                    "t-1",
                    event="NPS Survey Submitted",
                    context={"groupId": "acme"},
                    properties={"score": "eleven"},
                ),
            ]
        },
    )
    body = r.json()
    assert r.status_code == 200
    assert [(h["index"], h["field"]) for h in body["held"]] == [
        (0, "groupId"),
        (1, ""),
        (2, "payload.score"),
    ]
    assert len(held(store, source="product-events")) == 3 and stored(store) == 0


def test_a_bad_mapping_is_a_located_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  ic:\n"
        "    auth: intercom\n"
        "    secret_env: IC_SECRET\n"
        "    mapping:\n"
        "      events:\n"
        "        conversation.user.created:\n"
        "          type: support_ticket\n"
        "          payload:\n"
        "            urgency: {from: data.item.priority}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as bad:
        load_sources(path)
    [problem] = bad.value.problems
    assert (problem.file, problem.line) == (str(path), 7)  # the event's line
    assert "support_ticket has no payload field urgency (its fields: priority, subject)" in str(
        problem
    )
