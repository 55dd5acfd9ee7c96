"""POST /v1/signals over the real app (uvicorn on 127.0.0.1, httpx): token and HMAC sources,
202 only once stored, 422 with every field error and the quarantine, re-processing, and
hypothesis-generated bad payloads that never get a 5xx nor lose an accepted signal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from api.support import FAST, NOW, SECRET, FakeActions, bearer, build_people, populate
from csautomation.api import create_app
from csautomation.api.server import BackgroundServer
from csautomation.connectors.webhook import sign
from csautomation.facts.derive import derive
from csautomation.facts.health import load_health_model
from csautomation.ingest.sources import Sources, SourceSpec, load_sources
from csautomation.ingest.validate import clean_json, unstorable
from csautomation.store.engine import table
from csautomation.store.quarantine import held
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow
from factories import review_account

TOKEN = "analytics-token-" + "t" * 24
HMAC_SECRET = "crm-hmac-secret-" + "s" * 24
ENV = {"ANALYTICS_TOKEN": TOKEN, "CRM_SECRET": HMAC_SECRET}
ROOT = Path(__file__).resolve().parents[2]


def usage(account: str = "acme", day: int = 1, logins: Any = 40, **extra: Any) -> dict[str, Any]:
    return {
        "type": "usage_daily",
        "account_id": account,
        "occurred_at": f"2026-03-{day:02d}T00:00:00Z",
        "payload": {"logins": logins, "active_users": 5},
        **extra,
    }


def sources() -> Sources:
    return Sources(
        {
            "analytics": SourceSpec(
                auth="token", secret_env="ANALYTICS_TOKEN", types=["usage_daily"]
            ),
            "crm": SourceSpec(auth="hmac", secret_env="CRM_SECRET"),
            "unset": SourceSpec(auth="token", secret_env="NOT_SET_ANYWHERE"),
        },
        ENV,
    )


@pytest.fixture
def store(store: Store) -> Store:
    populate(store)
    return store


@pytest.fixture
def woken() -> list[int]:
    return []


@pytest.fixture
def base(store: Store, woken: list[int]) -> Iterator[str]:
    app = create_app(
        store,
        build_people(),
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        sources=sources(),
        on_stored=lambda: woken.append(1),
    )
    with BackgroundServer(app) as server:
        yield server.url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as c:
        yield c


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(body: bytes, source: str = "crm", at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    return {
        "X-Csauto-Source": source,
        "X-Csauto-Timestamp": str(stamp),
        "X-Csauto-Signature": sign(HMAC_SECRET, stamp, body),
        "Content-Type": "application/json",
    }


def stored(store: Store) -> int:
    t = table(SignalRow)
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def test_a_signal_is_acknowledged_only_once_stored_and_wakes_the_pipeline(
    http: httpx.Client, store: Store, woken: list[int]
) -> None:
    r = http.post("/v1/signals", json=usage(idempotency_key="wh:1"), headers=auth())
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": 1,
        "stored": 1,
        "duplicates": 0,
        "signals": [{"index": 0, "idempotency_key": "wh:1", "status": "stored"}],
    }
    # a fresh engine: the row is committed, not only visible in the writer's connection
    other = Store(store.engine.url.render_as_string(hide_password=False))
    assert [s.idempotency_key for s in other.signals_for("acme")] == ["wh:1"]
    other.engine.dispose()
    assert woken


def test_duplicate_deliveries_are_one_signal(http: httpx.Client, store: Store) -> None:
    batch = {"signals": [usage(day=d) for d in (1, 2, 3)]}
    first = http.post("/v1/signals", json=batch, headers=auth())
    again = http.post("/v1/signals", json=batch, headers=auth())
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["stored"] == 3
    assert again.json()["duplicates"] == 3 and again.json()["stored"] == 0
    # the same key twice in one batch, and the Idempotency-Key header for a single one
    twice = http.post("/v1/signals", json=[usage(day=9, logins=1)] * 2, headers=auth())
    assert [s["status"] for s in twice.json()["signals"]] == ["stored", "duplicate"]
    one = http.post("/v1/signals", json=usage(day=10), headers={**auth(), "Idempotency-Key": "k1"})
    retry = http.post(
        "/v1/signals", json=usage(day=10, logins=41), headers={**auth(), "Idempotency-Key": "k1"}
    )
    assert one.json()["signals"][0]["idempotency_key"] == "k1"
    assert retry.json()["duplicates"] == 1
    assert stored(store) == 5


def test_bad_signals_get_every_field_error_and_wait_in_the_quarantine(
    http: httpx.Client, store: Store
) -> None:
    bad = usage(day=2, logins=-1)
    bad["payload"]["active_users"] = "many"
    r = http.post(
        "/v1/signals",
        json={"signals": [usage(day=1), bad, usage(account="nobody", day=3)]},
        headers=auth(),
    )
    assert r.status_code == 422
    body = r.json()
    assert body["stored"] == 1  # the good one is kept all the same
    assert {(e["index"], e["field"]) for e in body["errors"]} == {
        (1, "payload.logins"),
        (1, "payload.active_users"),
        (2, "account_id"),
    }
    assert len(body["quarantine_ids"]) == 2
    rows = held(store)
    assert [r.source for r in rows] == ["analytics", "analytics"]
    assert json.loads(rows[0].raw)["payload"]["logins"] == -1
    # the same bad delivery again is the same quarantine row, seen twice
    http.post("/v1/signals", json={"signals": [bad]}, headers=auth())
    assert [r.times for r in held(store)] == [2, 1]


def test_a_fixed_signal_is_reprocessed(http: httpx.Client, store: Store) -> None:
    bad = usage(day=4, logins=-5, idempotency_key="fix-me")
    qid = http.post("/v1/signals", json=bad, headers=auth()).json()["quarantine_ids"][0]
    # only admins and ops; the original still fails as it was
    assert http.post(f"/v1/quarantine/{qid}/reprocess", headers=bearer("mia")).status_code == 403
    again = http.post(f"/v1/quarantine/{qid}/reprocess", headers=bearer("ada"))
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "payload.logins"
    fixed = {**bad, "payload": {"logins": 5, "active_users": 5}}
    done = http.post(f"/v1/quarantine/{qid}/reprocess", json=fixed, headers=bearer("ada"))
    assert done.status_code == 200, done.text
    assert done.json()["idempotency_key"] == "fix-me"
    assert [s.payload["logins"] for s in store.signals_for("acme")] == [5]
    shown = http.get(f"/v1/quarantine/{qid}", headers=bearer("ada")).json()
    assert (shown["status"], shown["resolved_by"]) == ("reprocessed", "ada")
    assert http.get("/v1/quarantine", headers=bearer("ada")).json()["count"] == 0
    assert http.post(f"/v1/quarantine/{qid}/reprocess", headers=bearer("ada")).status_code == 409
    # and it cannot be discarded any more: it keeps its link to the signal it became
    assert http.post(f"/v1/quarantine/{qid}/discard", headers=bearer("ada")).status_code == 409


def test_a_bad_signal_is_discarded_once(http: httpx.Client, store: Store) -> None:
    qid = http.post("/v1/signals", json=usage(logins=-3), headers=auth()).json()["quarantine_ids"][
        0
    ]
    assert http.post(f"/v1/quarantine/{qid}/discard", headers=bearer("mia")).status_code == 403
    assert http.post(f"/v1/quarantine/{qid}/discard", headers=bearer("ada")).status_code == 200
    assert http.post(f"/v1/quarantine/{qid}/discard", headers=bearer("ada")).status_code == 409
    assert http.post("/v1/quarantine/999/discard", headers=bearer("ada")).status_code == 404
    shown = http.get(f"/v1/quarantine/{qid}", headers=bearer("ada")).json()
    assert (shown["status"], shown["resolved_by"]) == ("discarded", "ada")
    assert store.signals_for("acme") == []


def test_an_unknown_account_is_reprocessed_once_the_account_exists(
    http: httpx.Client, store: Store
) -> None:
    qid = http.post("/v1/signals", json=usage(account="newco"), headers=auth()).json()[
        "quarantine_ids"
    ][0]
    assert http.post(f"/v1/quarantine/{qid}/reprocess", headers=bearer("ada")).status_code == 422
    store.upsert_accounts([review_account("newco", "NewCo")])
    assert http.post(f"/v1/quarantine/{qid}/reprocess", headers=bearer("ada")).status_code == 200
    assert len(store.signals_for("newco")) == 1


def test_sources_prove_who_they_are(http: httpx.Client, store: Store) -> None:
    body = json.dumps(usage(account="beta", day=5)).encode()
    assert http.post("/v1/signals", content=body, headers=signed(body)).status_code == 202
    # a wrong secret, a stale timestamp (a replay), an altered body, no credentials
    forged = {**signed(body), "X-Csauto-Signature": "sha256=" + "0" * 64}
    stale = signed(body, at=time.time() - 3600)
    altered = signed(body)
    tries = [
        http.post("/v1/signals", content=body, headers=forged),
        http.post("/v1/signals", content=body, headers=stale),
        http.post("/v1/signals", content=body.replace(b"beta", b"acme"), headers=altered),
        http.post("/v1/signals", json=usage(), headers=auth("wrong-token")),
        http.post("/v1/signals", json=usage()),
        http.post("/v1/signals", content=body, headers=signed(body, source="analytics")),
    ]
    assert [r.status_code for r in tries] == [401] * 6
    assert all(HMAC_SECRET not in r.text and TOKEN not in r.text for r in tries)
    # a source may only send its own types
    nps = {**usage(), "type": "nps_response", "payload": {"score": 3}}
    r = http.post("/v1/signals", json=nps, headers=auth())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "type"
    assert stored(store) == 1


def test_an_unreadable_body_is_quarantined_as_it_came(http: httpx.Client, store: Store) -> None:
    r = http.post("/v1/signals", content=b"{not json", headers=auth())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
    assert held(store)[0].raw == "{not json"
    assert http.post("/v1/signals", json="text", headers=auth()).status_code == 422
    huge = {"signals": [usage(day=1)] * 1001}
    assert http.post("/v1/signals", json=huge, headers=auth()).status_code == 413


def test_the_api_is_documented_at_docs(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200
    assert "POST /v1/signals" in page.text and "usage_daily" in page.text
    schema = http.get("/openapi.json").json()
    body = schema["paths"]["/v1/signals"]["post"]["requestBody"]["content"]["application/json"]
    refs = {s.get("$ref") for s in body["schema"]["oneOf"]}
    assert "#/components/schemas/Signal" in refs
    assert "Signal" in schema["components"]["schemas"]


def test_the_shipped_sources_file_is_valid() -> None:
    shipped = load_sources(ROOT / "sources.yaml", env={})
    assert set(shipped.specs) >= {"product-analytics", "crm-webhooks"}
    assert shipped.missing_secrets()["product-analytics"] == "CSAUTO_SOURCE_PRODUCT_ANALYTICS_TOKEN"


def test_a_bad_sources_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  shop:\n    auth: tokne\n    secret_env: lower\n")
    from csautomation.errors import ConfigFileError

    with pytest.raises(ConfigFileError) as info:
        load_sources(path)
    text = str(info.value)
    assert f"{path}:3:" in text and "sources.shop.auth" in text
    assert f"{path}:4:" in text and "secret_env" in text


# -- hypothesis: whatever arrives, no 5xx, and everything acknowledged is stored --------
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_values = {
    "type": st.sampled_from(["usage_daily", "meeting", "nps_response", "bogus", ""]) | json_leaf,
    "account_id": st.sampled_from(["acme", "beta", "nobody", "", "x" * 300]) | json_leaf,
    "occurred_at": st.sampled_from(
        ["2026-03-01T00:00:00Z", "2026-02-30T00:00:00Z", "yesterday", "2026-03-01T00:00:00"]
    )
    | json_leaf,
    "payload": st.fixed_dictionaries(
        {},
        optional={
            "logins": st.integers(-5, 10**12) | json_leaf,
            "active_users": st.integers(-1, 100) | json_leaf,
            "score": st.integers(-1, 11),
            "extra": json_value,
        },
    )
    | json_value,
    "idempotency_key": st.text(max_size=250) | json_leaf,
}
signal_like = st.fixed_dictionaries({}, optional=field_values) | json_value


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=st.lists(signal_like, min_size=1, max_size=5),
    wrap=st.sampled_from(["list", "batch", "one"]),
)
def test_no_payload_gets_a_5xx_and_nothing_acknowledged_is_lost(
    http: httpx.Client, store: Store, items: list[Any], wrap: str
) -> None:
    body: Any = {"signals": items} if wrap == "batch" else items if wrap == "list" else items[0]
    headers = {**auth(TOKEN), "Content-Type": "application/json"}
    r = http.post("/v1/signals", content=json.dumps(body).encode(), headers=headers)
    assert r.status_code in (202, 422), r.text
    answer = r.json()
    keys = {s["idempotency_key"] for s in answer.get("signals", [])}
    with store.engine.connect() as conn:
        t = table(SignalRow)
        found = set(
            conn.execute(select(t.c.idempotency_key).where(t.c.idempotency_key.in_(keys))).scalars()
        )
    assert found == keys
    if r.status_code == 422:
        assert answer["errors"] and all({"field", "message"} <= set(e) for e in answer["errors"])


def test_text_no_database_can_hold_is_refused_not_a_5xx(http: httpx.Client, store: Store) -> None:
    # a lone surrogate is valid JSON text but not UTF-8; NUL is refused by PostgreSQL
    body = b'{"type": "usage_daily", "account_id": "acme", "occurred_at": "2026-03-01T00:00:00Z",'
    for tail in (
        b' "payload": {"logins": 1, "active_users": 1}, "idempotency_key": "\\ud800"}',
        b' "payload": {"logins": 1, "active_users": 1}, "idempotency_key": "a\\u0000b"}',
    ):
        r = http.post("/v1/signals", content=body + tail, headers=auth())
        assert r.status_code == 422, r.text
    assert stored(store) == 0
    assert len(held(store)) == 2


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(data=JSON_VALUES, ascii_only=st.booleans())
@settings(max_examples=300, deadline=None)
def test_the_raw_text_shortcut_never_lets_an_unstorable_string_through(
    data: Any, ascii_only: bool
) -> None:
    """The intake skips the walk for unstorable strings when the raw body cannot hold one:
    whenever it skips, the walk would have found nothing."""
    raw = json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if clean_json(raw):
        assert unstorable(json.loads(raw)) == []


# -- strict at the door: what is stored is what was validated ---------------------------------
def _payload_of(store: Store, key: str) -> dict[str, Any]:
    t = table(SignalRow)
    with store.engine.connect() as conn:
        return dict(
            conn.execute(select(t.c.payload).where(t.c.idempotency_key == key)).scalar_one()
        )


def post_raw(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post(
        "/v1/signals", content=body, headers={**auth(), "Content-Type": "application/json"}
    )


def test_numbers_as_text_are_stored_as_numbers(http: httpx.Client, store: Store) -> None:
    r = http.post("/v1/signals", json=usage(logins="5", idempotency_key="text-5"), headers=auth())
    assert r.status_code == 202, r.text
    stored_payload = _payload_of(store, "text-5")
    assert stored_payload == {"logins": 5, "active_users": 5}
    assert type(stored_payload["logins"]) is int
    history = store.signals_for("acme")
    assert [s.payload["logins"] for s in history] == [5]
    # what derivation meets: the number (text made numpy fail on a '<U1' array)
    facts = derive(review_account("acme", "Acme"), history, date(2026, 3, 1), load_health_model())
    assert facts.record()["usage.days_since_last_login"] == 0


def _poison(what: str, payload: bytes, field: str, reason: str) -> Any:
    return pytest.param(payload, field, reason, id=what)


POISON = [
    # the signal's payload as JSON text, the field named, words of the reason
    _poison("a boolean", b'{"logins": true, "active_users": 5}', "payload.logins", "boolean"),
    _poison("Infinity", b'{"logins": Infinity, "active_users": 5}', "payload.logins", "Infinity"),
    _poison("NaN", b'{"logins": 1, "active_users": NaN}', "payload.active_users", "NaN"),
    _poison("1e309", b'{"logins": 1e309, "active_users": 5}', "payload.logins", "Infinity"),
    _poison(
        "a 400-digit integer",
        b'{"logins": ' + b"9" * 400 + b', "active_users": 5}',
        "payload.logins",
        "out of range",
    ),
    _poison("text", b'{"logins": "5 or so", "active_users": 5}', "payload.logins", "decimal"),
    _poison("another type's payload", b'{"score": 9}', "payload.score", "Extra inputs"),
    _poison("a payload not an object", b"[1, 2]", "payload", "dictionary"),
]


@pytest.mark.parametrize(("payload", "field", "reason"), POISON)
def test_poison_is_refused_with_its_path_and_quarantined_and_the_rest_stored(
    http: httpx.Client, store: Store, payload: bytes, field: str, reason: str
) -> None:
    good = json.dumps(usage(day=1)).encode()
    bad = b'{"type": "usage_daily", "account_id": "acme", "occurred_at": "2026-03-02T00:00:00Z"'
    r = post_raw(http, b'{"signals": [' + good + b", " + bad + b', "payload": ' + payload + b"}]}")
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["stored"] == 1
    assert {e["index"] for e in answer["errors"]} == {1}
    [message] = [e["message"] for e in answer["errors"] if e["field"] == field]
    assert reason in message, answer["errors"]
    [row] = held(store)
    assert {"field": field, "message": message} in row.errors
    assert [s.day.day for s in store.signals_for("acme")] == [1]


def test_a_time_outside_the_window_is_refused(http: httpx.Client, store: Store) -> None:
    ancient = usage() | {"occurred_at": "0001-01-01T00:00:00+05:00"}
    future = usage() | {"occurred_at": "2999-01-01T00:00:00Z"}
    seconds = usage() | {"occurred_at": 1_772_323_200}
    r = http.post("/v1/signals", json=[ancient, future, seconds], headers=auth())
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(i, "occurred_at") for i in range(3)]
    assert "CSAUTO_SIGNAL_EARLIEST" in errors[0]["message"]
    assert "CSAUTO_SIGNAL_MAX_AHEAD" in errors[1]["message"]
    assert "ISO 8601" in errors[2]["message"]
    assert stored(store) == 0 and len(held(store)) == 3


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 2000 + b"]" * 2000, "nested deeper than 32 levels"),
        (b'{"signals": [' * 40 + b"]}" * 40, "nested deeper than 32 levels"),
        (b'{"payload": {"logins": ' + b"1" * 5000 + b"}}", "5,000 characters long"),
        (b'{"payload": {"arr": 1.' + b"5" * 5000 + b"}}", "characters long"),
    ],
    ids=["2000 deep", "40 deep", "a 5000-digit integer", "a 5000-digit decimal"],
)
def test_text_beyond_the_bounds_is_unreadable_not_a_5xx(
    http: httpx.Client, store: Store, body: bytes, reason: str
) -> None:
    r = post_raw(http, body)
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "body" and reason in error["message"]
    [row] = held(store)
    assert row.raw.encode() == body[: len(row.raw)] and row.errors[0]["message"] == error["message"]
    # re-processed as it was kept, it is still unreadable, said so (not a 500)
    again = http.post(f"/v1/quarantine/{row.id}/reprocess", headers=bearer("ada"))
    assert again.status_code == 422 and "still unreadable" in again.text
    # and so is the same text sent as the corrected signal
    fixed = http.post(f"/v1/quarantine/{row.id}/reprocess", content=body, headers=bearer("ada"))
    assert fixed.status_code == 422 and reason in fixed.json()["errors"][0]["message"]
    assert stored(store) == 0
