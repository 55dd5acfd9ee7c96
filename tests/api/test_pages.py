"""The pages: sign-in and sign-out, the list and the detail within the person's scope,
and the action forms, which need the session's CSRF token, act as the signed-in person
and redirect back with a flash message."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.support import (
    EAST_CRITICAL,
    EAST_MEDIUM,
    NOW,
    WEST_HIGH,
    FakeActions,
    csrf_of,
    password,
    sign_in,
)
from csautomation.api.app import SESSION_COOKIE
from csautomation.api.auth import CLIENT_FREE_FAILURES, Throttle

CRITICAL_PAGE = f"/escalations/{quote(EAST_CRITICAL, safe='')}"
WEST_PAGE = f"/escalations/{quote(WEST_HIGH, safe='')}"


def test_pages_redirect_to_sign_in(client: TestClient) -> None:
    r = client.get("/")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=/")
    r = client.get(CRITICAL_PAGE)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=" + quote(f"/escalations/{EAST_CRITICAL}")
    r = client.get("/?severity=high")
    assert r.headers["location"] == "/login?next=/%3Fseverity%3Dhigh"
    r = client.post(f"{CRITICAL_PAGE}/acknowledge", data={"csrf": "x"})
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=/")


def test_sign_in_and_out(client: TestClient) -> None:
    page = client.get("/login?next=/%3Fseverity%3Dcritical")
    assert page.status_code == 200
    assert 'name="next" value="/?severity=critical"' in page.text
    r = client.post(
        "/login",
        data={
            "login": "mia@example.com",  # the email works as well as the id
            "password": password("mia"),
            "csrf": csrf_of(page.text),
            "next": "/?severity=critical",
        },
    )
    assert (r.status_code, r.headers["location"]) == (303, "/?severity=critical")
    listing = client.get("/?severity=critical")
    assert listing.status_code == 200
    assert "Mia Manager · manager · east" in listing.text
    # signed in already: /login goes on to the page
    assert client.get("/login").status_code == 303

    r = client.post("/logout", data={"csrf": csrf_of(listing.text)})
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert "Signed out." in client.get("/login").text
    assert client.get("/").status_code == 303


@pytest.mark.parametrize(
    ("login", "secret"),
    [("mia", "wrong password"), ("nobody", "whatever1"), ("carl", "carl-correct-horse"), ("", "")],
)
def test_sign_in_refused(client: TestClient, login: str, secret: str) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"login": login, "password": secret, "csrf": csrf_of(page.text)})
    assert r.status_code == 400
    assert "Unknown user or wrong password." in r.text
    assert client.get("/").status_code == 303


def attempt(client: TestClient, login: str, secret: str) -> tuple[int, str]:
    page = client.get("/login")
    data = {"login": login, "password": secret, "csrf": csrf_of(page.text)}
    r = client.post("/login", data=data)
    return r.status_code, r.text


def test_guessing_a_password_makes_that_person_and_address_wait(client: TestClient) -> None:
    assert [attempt(client, "mia", f"guess-{i}")[0] for i in range(3)] == [400] * 3
    status, text = attempt(client, "mia@example.com", "guess-4")  # an alias: the same person
    assert status == 400
    status, text = attempt(client, "mia", password("mia"))
    assert status == 429  # even the right password, for 2 seconds from this address
    assert "Too many failed sign-ins: try again in 2 second(s)." in text
    assert attempt(client, "noah", password("noah"))[0] == 303  # another person is not held


def test_wrong_passwords_from_one_address_do_not_hold_another(client: TestClient) -> None:
    statuses = [attempt(client, "mia", f"guess-{i}")[0] for i in range(10)]
    assert statuses == [400] * 4 + [429] * 6  # then a wait, not more failures
    with TestClient(client.app, follow_redirects=False, client=("203.0.113.9", 4000)) as other:
        assert attempt(other, "mia", password("mia"))[0] == 303
        assert "Mia Manager" in other.get("/").text


def test_many_people_guessed_from_one_address_make_that_address_wait(
    client: TestClient,
) -> None:
    # one failure for each of many logins: no person waits, the address does after 20
    statuses = [attempt(client, f"someone-{i}", "guess")[0] for i in range(CLIENT_FREE_FAILURES)]
    assert statuses == [400] * CLIENT_FREE_FAILURES
    assert attempt(client, "another", "guess")[0] == 400
    status, text = attempt(client, "noah", password("noah"))
    assert status == 429 and "try again in 2 second(s)" in text
    with TestClient(client.app, follow_redirects=False, client=("203.0.113.9", 4000)) as other:
        assert attempt(other, "noah", password("noah"))[0] == 303


def test_the_throttle_grows_its_wait_and_never_locks() -> None:
    now = [0.0]
    throttle = Throttle(free=3, cap=60.0, forget=600.0, clock=lambda: now[0])
    waits = []
    for _ in range(10):
        throttle.failed("mia|a")
        waits.append(throttle.wait("mia|a"))
    assert waits == [0.0, 0.0, 0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert throttle.wait("mia|b") == 0.0  # from another address: no wait
    now[0] = 30.0
    assert throttle.wait("mia|a") == 30.0  # the wait always ends
    now[0] = 60.0
    assert throttle.wait("mia|a") == 0.0
    throttle.failed("mia|a")
    assert throttle.wait("mia|a") == 60.0  # the 11th failure in a row
    now[0] = 700.0  # forgotten 600 s after the last failure
    assert throttle.wait("mia|a") == 0.0
    throttle.failed("mia|a")
    assert throttle.wait("mia|a") == 0.0
    throttle.succeeded("mia|a")
    assert throttle.wait("mia|a") == 0.0


def test_sign_in_needs_the_form_token(client: TestClient) -> None:
    client.get("/login")
    r = client.post("/login", data={"login": "mia", "password": password("mia")})
    assert r.status_code == 403
    assert "the form has expired" in r.text
    r = client.post("/login", data={"login": "mia", "password": password("mia"), "csrf": "x"})
    assert r.status_code == 403


def test_sign_in_never_redirects_off_site(client: TestClient) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        page = client.get("/login")
        r = client.post(
            "/login",
            data={
                "login": "mia",
                "password": password("mia"),
                "csrf": csrf_of(page.text),
                "next": target,
            },
        )
        assert r.headers["location"] == "/"
        client.cookies.clear()


def test_a_tampered_session_is_no_session(client: TestClient) -> None:
    sign_in(client, "cara")
    cookie = client.cookies[SESSION_COOKIE]
    payload, rest = cookie.split(".", 1)  # base64 JSON, then timestamp and signature
    claims = json.loads(base64.b64decode(payload + "=="))
    assert claims["user"] == "cara"
    admin = base64.b64encode(json.dumps({**claims, "user": "ada"}).encode()).decode()
    flipped = cookie[:-3] + ("AAA" if cookie[-3:] != "AAA" else "BBB")
    client.cookies.clear()
    for value in (flipped, f"{admin}.{rest}"):
        client.cookies.set(SESSION_COOKIE, value)
        assert client.get("/").status_code == 303
        client.cookies.clear()


def test_list_shows_the_managers_team_only(client: TestClient) -> None:
    sign_in(client, "mia")
    html = client.get("/").text
    assert html.count('data-testid="escalation-row"') == 3
    assert EAST_CRITICAL in html and EAST_MEDIUM in html
    assert WEST_HIGH not in html and "Gamma" not in html
    # account names are escaped
    assert "Beta &lt;b&gt;Bold&lt;/b&gt; Ltd" in html and "<b>Bold</b>" not in html
    # urgency order, with age and the time left to acknowledge
    assert html.index("Acme Corp") < html.index("Delta Inc") < html.index("Beta")
    assert "5 h" in html and "1 h" in html


def test_list_filters(client: TestClient) -> None:
    sign_in(client, "ada")
    html = client.get("/?severity=high&team=&level=").text
    assert html.count('data-testid="escalation-row"') == 2
    assert "overdue by 10 min" in html  # the west escalation's deadline has passed
    html = client.get("/?min_age_hours=24").text
    assert html.count('data-testid="escalation-row"') == 1
    html = client.get("/?level=zero").text
    assert "Filter ignored: level: Input should be a valid integer" in html
    assert html.count('data-testid="escalation-row"') == 4


def test_detail_page(client: TestClient) -> None:
    sign_in(client, "mia")
    r = client.get(CRITICAL_PAGE)
    assert r.status_code == 200
    html = r.text
    assert 'data-testid="status">open<' in html
    assert "Next: Dora Director (director), level 3, at 2026-03-02 11:00 UTC" in html
    assert html.count('data-testid="timeline-row"') == 2
    assert 'data-testid="health-score"' in html
    assert "usage.logins_change_30d_pct" in html and "Rule <code>usage-drop</code>" in html
    for button in ("acknowledge", "resolve", "reassign", "snooze"):
        assert f'data-testid="{button}-button"' in html
    assert "1 h left" in html


def test_detail_refusals(client: TestClient) -> None:
    sign_in(client, "mia")
    r = client.get(WEST_PAGE)  # another team's: as if there were none
    assert r.status_code == 404
    assert f"no escalation {WEST_HIGH}" in r.text
    r = client.get("/escalations/escalation%3Anope")
    assert r.status_code == 404
    assert "no escalation escalation:nope" in r.text


def test_read_only_roles_get_no_forms(client: TestClient, fake_actions: FakeActions) -> None:
    csrf = sign_in(client, "cara")
    html = client.get(f"/escalations/{quote(EAST_MEDIUM, safe='')}").text
    assert "acknowledge-button" not in html and "Read-only" in html
    r = client.post(f"/escalations/{quote(EAST_MEDIUM, safe='')}/acknowledge", data={"csrf": csrf})
    assert r.status_code == 403
    assert fake_actions.calls == []


def test_acknowledge_by_form_acts_as_the_signed_in_person(
    client: TestClient, fake_actions: FakeActions
) -> None:
    csrf = sign_in(client, "mia")
    r = client.post(
        f"{CRITICAL_PAGE}/acknowledge", data={"csrf": csrf, "note": "on it", "by": "ada"}
    )
    assert (r.status_code, r.headers["location"]) == (303, CRITICAL_PAGE)
    [(kind, wid, action)] = fake_actions.calls
    assert (kind, wid, action.by, action.note) == ("acknowledge", EAST_CRITICAL, "mia", "on it")
    html = client.get(CRITICAL_PAGE).text
    assert "Acknowledged. Status: acknowledged; held by Mia Manager." in html
    assert 'data-testid="status">acknowledged<' in html
    assert "acknowledge-button" not in html  # acknowledged already
    # the flash is shown once
    assert "Acknowledged. Status" not in client.get(CRITICAL_PAGE).text


def test_forms_need_the_sessions_csrf_token(client: TestClient, fake_actions: FakeActions) -> None:
    sign_in(client, "mia")
    for data in ({}, {"csrf": ""}, {"csrf": "forged"}):
        r = client.post(f"{CRITICAL_PAGE}/acknowledge", data=data)
        assert r.status_code == 403
        assert "the form has expired" in r.text
    # a token from another session does not do either
    with TestClient(client.app, follow_redirects=False) as other:
        theirs = sign_in(other, "ada")
    assert client.post(f"{CRITICAL_PAGE}/acknowledge", data={"csrf": theirs}).status_code == 403
    # nor does JSON in place of the form
    r = client.post(f"{CRITICAL_PAGE}/acknowledge", json={"csrf": theirs})
    assert r.status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert fake_actions.calls == []


def test_form_input_problems_come_back_as_a_flash(
    client: TestClient, fake_actions: FakeActions
) -> None:
    csrf = sign_in(client, "mia")
    cases = [
        ("resolve", {"note": "  "}, "note: a note is required to resolve"),
        ("snooze", {"until": "9999-12-31T23:59"}, "until: must be at most 30 days ahead"),
        ("snooze", {"until": "2026-03-02T09:00"}, "until: must be in the future"),
        ("snooze", {"until": "soon"}, "until: Input should be a valid datetime"),
    ]
    for action, data, message in cases:
        r = client.post(f"{CRITICAL_PAGE}/{action}", data={"csrf": csrf, **data})
        assert (r.status_code, r.headers["location"]) == (303, CRITICAL_PAGE)
        assert f"Not done: {message}" in client.get(CRITICAL_PAGE).text
    assert client.post(f"{CRITICAL_PAGE}/explode", data={"csrf": csrf}).status_code == 404
    assert fake_actions.calls == []


@pytest.mark.parametrize("to", ["noah", "carl", "nobody"])
def test_reassign_by_form_outside_the_team_is_refused(
    client: TestClient, fake_actions: FakeActions, to: str
) -> None:
    csrf = sign_in(client, "mia")
    r = client.post(f"{CRITICAL_PAGE}/reassign", data={"csrf": csrf, "to": to})
    assert r.status_code == 403
    assert f"to: &#39;{to}&#39; is not a person in your teams (east)" in r.text
    assert fake_actions.calls == []
    assert 'data-testid="holder">Mia Manager<' in client.get(CRITICAL_PAGE).text


def test_snooze_reassign_resolve_by_form(client: TestClient, fake_actions: FakeActions) -> None:
    csrf = sign_in(client, "mia")
    until = (NOW + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")  # datetime-local: UTC
    client.post(f"{CRITICAL_PAGE}/snooze", data={"csrf": csrf, "until": until})
    client.post(f"{CRITICAL_PAGE}/reassign", data={"csrf": csrf, "to": "cara"})
    client.post(f"{CRITICAL_PAGE}/resolve", data={"csrf": csrf, "note": "<script>x</script>"})
    snooze, reassign, resolve = (a for _, _, a in fake_actions.calls)
    assert snooze.until == NOW + timedelta(hours=3)
    assert reassign.to == "cara"
    assert resolve.note == "<script>x</script>"
    html = client.get(CRITICAL_PAGE).text
    assert "Resolved. Status: resolved" in html
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    # resolved: no forms, and a late form post is refused with a message
    assert "resolve-button" not in html
    client.post(f"{CRITICAL_PAGE}/acknowledge", data={"csrf": csrf})
    assert "Not done: escalation " in client.get(CRITICAL_PAGE).text
    assert len(fake_actions.calls) == 3


def test_another_teams_escalation_by_form(client: TestClient, fake_actions: FakeActions) -> None:
    csrf = sign_in(client, "mia")
    r = client.post(f"{WEST_PAGE}/acknowledge", data={"csrf": csrf})
    assert r.status_code == 404
    assert fake_actions.calls == []


def test_security_headers_and_stylesheet(client: TestClient) -> None:
    r = client.get("/login")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    css = client.get("/static/app.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"] == "max-age=3600"
