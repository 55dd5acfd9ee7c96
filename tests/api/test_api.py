"""The JSON API against a real SQLite store and the fake workflow actions: who sees what,
filters and urgency order, and each refusal with its status and a message naming the
problem (401, 403 before anything is signalled, 404 for a missing escalation and another
team's alike, 409, 422), and actions' arguments checked against the caller's teams and
bounds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.support import (
    EAST_ACKED,
    EAST_CRITICAL,
    EAST_MEDIUM,
    EAST_RESOLVED,
    NOW,
    WEST_HIGH,
    FakeActions,
    bearer,
    sign_in,
)
from csautomation.api.review import SNOOZE_MAX
from csautomation.store.escalations import get_escalation
from csautomation.store.repo import Store


def ids(client: TestClient, who: str, **params: Any) -> list[str]:
    r = client.get("/api/escalations", params=params, headers=bearer(who))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["escalations"])
    return [e["workflow_id"] for e in body["escalations"]]


def test_every_api_route_needs_a_token(client: TestClient) -> None:
    routes = [
        ("GET", "/api/escalations"),
        ("GET", f"/api/escalations/{EAST_CRITICAL}"),
        ("POST", f"/api/escalations/{EAST_CRITICAL}/acknowledge"),
    ]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "Bearer" in r.json()["detail"] or "unknown" in r.json()["detail"]


def test_a_session_cookie_does_not_open_the_api(client: TestClient) -> None:
    sign_in(client, "mia")
    assert client.get("/api/escalations").status_code == 401


def test_admin_sees_every_team_most_urgent_first(client: TestClient) -> None:
    # critical first; then the highs, the overdue west one before the acknowledged one
    # (which has no deadline); then the medium
    assert ids(client, "ada") == [EAST_CRITICAL, WEST_HIGH, EAST_ACKED, EAST_MEDIUM]


def test_a_manager_sees_only_their_teams(client: TestClient) -> None:
    assert ids(client, "mia") == [EAST_CRITICAL, EAST_ACKED, EAST_MEDIUM]
    assert ids(client, "noah") == [WEST_HIGH]
    assert ids(client, "dora") == [EAST_CRITICAL, WEST_HIGH, EAST_ACKED, EAST_MEDIUM]
    # asking for another team's escalations finds nothing rather than widening the scope
    assert ids(client, "noah", team="east") == []


def test_a_csm_sees_only_what_they_hold(client: TestClient) -> None:
    assert ids(client, "cara") == [EAST_MEDIUM]
    assert ids(client, "cara", holder="mia") == []
    assert ids(client, "otto") == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"severity": "high"}, [WEST_HIGH, EAST_ACKED]),
        ({"level": 2}, [EAST_CRITICAL]),
        ({"team": "west"}, [WEST_HIGH]),
        ({"holder": "mia"}, [EAST_CRITICAL, EAST_ACKED]),
        ({"status": "acknowledged"}, [EAST_ACKED]),
        ({"status": "resolved,acknowledged"}, [EAST_RESOLVED, EAST_ACKED]),
        ({"status": "all", "team": "east", "severity": "high"}, [EAST_RESOLVED, EAST_ACKED]),
        ({"min_age_hours": 3}, [EAST_CRITICAL, EAST_ACKED]),
        ({"min_age_hours": 1.5, "severity": "high"}, [WEST_HIGH, EAST_ACKED]),
    ],
)
def test_filters(client: TestClient, params: dict[str, Any], expected: list[str]) -> None:
    assert ids(client, "ada", **params) == expected


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"severity": "urgent"}, "severity", "'critical'"),
        ({"level": "two"}, "level", "integer"),
        ({"level": 0}, "level", "greater than or equal to 1"),
        ({"min_age_hours": -1}, "min_age_hours", "greater than or equal to 0"),
        ({"status": "closed"}, "status", "'open'"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_bad_filters_are_named(
    client: TestClient, params: dict[str, Any], field: str, words: str
) -> None:
    r = client.get("/api/escalations", params=params, headers=bearer("ada"))
    assert r.status_code == 422
    body = r.json()
    assert body["errors"][0]["field"].split(".")[0] == field  # status.0: the first status
    assert body["detail"].startswith(field)
    assert words in body["detail"]


def test_detail_has_state_plan_health_and_explain(client: TestClient) -> None:
    r = client.get(f"/api/escalations/{EAST_CRITICAL}", headers=bearer("mia"))
    assert r.status_code == 200
    d = r.json()
    assert d["state"]["workflow_id"] == EAST_CRITICAL
    assert d["state"]["team"] == "east"
    assert [lv["level"] for lv in d["plan"]["levels"]] == [1, 2, 3]
    assert d["next"]["names"] == ["Dora Director"]
    assert d["next"]["at"].startswith((NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    assert d["account"]["name"] == "Acme Corp"
    assert 0 <= d["health"]["score"] <= 100
    assert d["health"]["band"] in ("green", "yellow", "red")
    assert "account_characteristics" in d["health"]["components"]
    assert d["explain"]["rule_id"] == "usage-drop"
    assert d["explain"]["conditions"]["result"] is True
    assert d["can_act"] is True


def test_another_teams_escalation_answers_as_a_missing_one(client: TestClient) -> None:
    # the same status and words: the answer does not tell that it exists
    r = client.get(f"/api/escalations/{WEST_HIGH}", headers=bearer("mia"))
    assert r.status_code == 404
    assert r.json()["detail"] == f"no escalation {WEST_HIGH}"
    r = client.get("/api/escalations/escalation:nope:x:1", headers=bearer("mia"))
    assert r.status_code == 404
    assert r.json()["detail"] == "no escalation escalation:nope:x:1"


def test_acknowledge_signals_as_the_caller_and_returns_the_fresh_state(
    client: TestClient, fake_actions: FakeActions
) -> None:
    r = client.post(
        f"/api/escalations/{EAST_CRITICAL}/acknowledge",
        json={"note": "on it", "by": "ada"},  # `by` is never taken from the request
        headers=bearer("mia"),
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "by"
    assert fake_actions.calls == []

    r = client.post(
        f"/api/escalations/{EAST_CRITICAL}/acknowledge",
        json={"note": "on it"},
        headers=bearer("mia"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    assert r.json()["timeline"][-1]["by"] == "mia"
    [(kind, wid, action)] = fake_actions.calls
    assert (kind, wid, action.by, action.note) == ("acknowledge", EAST_CRITICAL, "mia", "on it")


def test_acknowledge_needs_no_body(client: TestClient, fake_actions: FakeActions) -> None:
    r = client.post(f"/api/escalations/{EAST_MEDIUM}/acknowledge", headers=bearer("dora"))
    assert r.status_code == 200
    assert fake_actions.calls[0][2].by == "dora"


def test_resolve_reassign_snooze(client: TestClient, fake_actions: FakeActions) -> None:
    h = bearer("mia")
    until = (NOW + timedelta(hours=4)).isoformat()
    r = client.post(f"/api/escalations/{EAST_MEDIUM}/snooze", json={"until": until}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "snoozed"
    r = client.post(f"/api/escalations/{EAST_MEDIUM}/reassign", json={"to": "cara"}, headers=h)
    assert r.status_code == 200 and r.json()["holder"] == "cara"
    r = client.post(
        f"/api/escalations/{EAST_MEDIUM}/resolve", json={"note": "  called them  "}, headers=h
    )
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    assert [(k, a.by) for k, _, a in fake_actions.calls] == [
        ("snooze", "mia"),
        ("reassign", "mia"),
        ("resolve", "mia"),
    ]
    snooze, reassign, resolve = (a for _, _, a in fake_actions.calls)
    assert snooze.until == NOW + timedelta(hours=4)
    assert reassign.to == "cara"
    assert resolve.note == "called them"
    # resolved now: further actions conflict, and nothing is signalled
    r = client.post(f"/api/escalations/{EAST_MEDIUM}/acknowledge", headers=h)
    assert r.status_code == 409
    assert "already resolved" in r.json()["detail"]
    assert len(fake_actions.calls) == 3


@pytest.mark.parametrize("action", ["acknowledge", "resolve", "reassign", "snooze"])
def test_another_teams_escalation_is_not_found_before_anything_is_signalled(
    client: TestClient, fake_actions: FakeActions, action: str
) -> None:
    body = {
        "acknowledge": {"note": "x"},
        "resolve": {"note": "x"},
        "reassign": {"to": "noah"},
        "snooze": {"until": (NOW + timedelta(hours=1)).isoformat()},
    }[action]
    r = client.post(f"/api/escalations/{WEST_HIGH}/{action}", json=body, headers=bearer("mia"))
    assert r.status_code == 404
    # even with a body that is wrong, the scope is checked first
    r = client.post(
        f"/api/escalations/{WEST_HIGH}/{action}", json={"bad": 1}, headers=bearer("mia")
    )
    assert r.status_code == 404
    assert fake_actions.calls == []


@pytest.mark.parametrize(
    ("actor", "to"),
    [("mia", "noah"), ("mia", "carl"), ("mia", "nobody"), ("noah", "cara"), ("dora", "nobody")],
)
def test_reassign_only_within_the_actors_teams(
    client: TestClient, fake_actions: FakeActions, store: Store, actor: str, to: str
) -> None:
    wid = EAST_MEDIUM if actor != "noah" else WEST_HIGH
    r = client.post(f"/api/escalations/{wid}/reassign", json={"to": to}, headers=bearer(actor))
    assert r.status_code == 403, r.text
    # an unknown person and another team's answer alike
    assert r.json()["detail"].startswith(f"to: '{to}' is not a person in your teams")
    assert fake_actions.calls == []
    stored = get_escalation(store, wid)
    assert stored is not None and stored.holder == ("cara" if wid == EAST_MEDIUM else "carl")


def test_reassign_within_the_teams_and_by_an_admin(
    client: TestClient, fake_actions: FakeActions
) -> None:
    r = client.post(
        f"/api/escalations/{WEST_HIGH}/reassign", json={"to": "cara"}, headers=bearer("dora")
    )
    assert r.status_code == 200 and r.json()["holder"] == "cara"  # a director of both teams
    r = client.post(
        f"/api/escalations/{EAST_MEDIUM}/reassign", json={"to": "carl"}, headers=bearer("ada")
    )
    assert r.status_code == 200 and r.json()["holder"] == "carl"
    r = client.post(
        f"/api/escalations/{EAST_MEDIUM}/reassign", json={"to": "nobody"}, headers=bearer("ada")
    )
    assert r.status_code == 422 and r.json()["detail"] == "to: unknown person 'nobody'"
    assert [a.to for _, _, a in fake_actions.calls] == ["cara", "carl"]


def test_snooze_ends_within_its_bounds(client: TestClient, fake_actions: FakeActions) -> None:
    h = bearer("mia")
    url = f"/api/escalations/{EAST_MEDIUM}/snooze"
    for until in ("9999-12-31T23:59:00+00:00", (NOW + SNOOZE_MAX + timedelta(minutes=1))):
        r = client.post(url, json={"until": str(until).replace(" ", "T")}, headers=h)
        assert r.status_code == 422, r.text
        assert r.json() == {
            "detail": "until: must be at most 30 days ahead (by 2026-04-01 10:00 UTC)",
            "field": "until",
        }
    assert fake_actions.calls == []
    r = client.post(url, json={"until": (NOW + SNOOZE_MAX).isoformat()}, headers=h)
    assert r.status_code == 200 and r.json()["snoozed_until"] == "2026-04-01T10:00:00Z"


def test_read_only_roles_cannot_act(client: TestClient, fake_actions: FakeActions) -> None:
    r = client.post(f"/api/escalations/{EAST_MEDIUM}/acknowledge", headers=bearer("cara"))
    assert r.status_code == 403
    assert "read-only" in r.json()["detail"]
    assert fake_actions.calls == []


def test_unknown_escalation_is_not_found(client: TestClient, fake_actions: FakeActions) -> None:
    r = client.post("/api/escalations/escalation:nope:x:1/acknowledge", headers=bearer("ada"))
    assert r.status_code == 404
    assert fake_actions.calls == []


def test_a_workflow_that_is_gone_or_closed(client: TestClient, fake_actions: FakeActions) -> None:
    fake_actions.gone.add(EAST_CRITICAL)
    fake_actions.closed.add(EAST_MEDIUM)
    r = client.post(f"/api/escalations/{EAST_CRITICAL}/acknowledge", headers=bearer("mia"))
    assert r.status_code == 404
    assert "no escalation workflow" in r.json()["detail"]
    r = client.post(f"/api/escalations/{EAST_MEDIUM}/acknowledge", headers=bearer("mia"))
    assert r.status_code == 409
    assert "has closed" in r.json()["detail"]


@pytest.mark.parametrize(
    ("action", "body", "field", "words"),
    [
        ("resolve", {}, "note", "Field required"),
        ("resolve", {"note": "   "}, "note", "a note is required to resolve"),
        ("resolve", {"note": "x" * 4001}, "note", "at most 4000"),
        ("reassign", {}, "to", "Field required"),
        ("snooze", {}, "until", "Field required"),
        ("snooze", {"until": "tomorrow"}, "until", "datetime"),
        ("snooze", {"until": "2026-03-03T10:00:00"}, "until", "timezone"),
        ("snooze", {"until": (NOW - timedelta(minutes=1)).isoformat()}, "until", "in the future"),
        ("acknowledge", {"note": 5}, "note", "string"),
    ],
)
def test_bad_bodies_are_named(
    client: TestClient,
    fake_actions: FakeActions,
    action: str,
    body: dict[str, Any],
    field: str,
    words: str,
) -> None:
    r = client.post(f"/api/escalations/{EAST_CRITICAL}/{action}", json=body, headers=bearer("mia"))
    assert r.status_code == 422, r.text
    got = r.json()
    assert got["detail"].startswith(f"{field}: "), got
    assert words in got["detail"], got
    assert fake_actions.calls == []


def test_malformed_json_is_a_clear_422(client: TestClient) -> None:
    r = client.post(
        f"/api/escalations/{EAST_CRITICAL}/resolve",
        content=b'{"note": ',
        headers={**bearer("mia"), "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"] == "body: is not valid JSON"
