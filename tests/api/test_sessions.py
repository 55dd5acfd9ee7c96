"""Sessions that end: signing out ends every session of the person, a copied cookie
included; so do a new password and `csauto people revoke`. An ended session gets 401 on
every page, and nothing it posts is done."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.conftest import AppFactory
from api.support import EAST_CRITICAL, FAST, SECRET, FakeActions, build_people, sign_in
from csautomation.api import create_app
from csautomation.api.app import SESSION_COOKIE
from csautomation.cli import app as cli
from csautomation.escalation.people import People, SignIn
from csautomation.store.repo import Store

CRITICAL_PAGE = f"/escalations/{quote(EAST_CRITICAL, safe='')}"


@pytest.fixture
def people() -> People:
    """A directory of this test's own: one test changes a password in it."""
    return build_people()


@pytest.fixture
def make_app(store: Store, people: People) -> AppFactory:
    def build(actions: object) -> object:
        return create_app(store, people, actions, session_secret=SECRET, hasher=FAST)  # type: ignore[arg-type]

    return build  # type: ignore[return-value]


@pytest.fixture
def attacker(client: TestClient) -> Iterator[TestClient]:
    """Another browser, which holds nothing of its own yet."""
    with TestClient(client.app, follow_redirects=False) as other:
        yield other


def copy_session(signed_in: TestClient, into: TestClient) -> str:
    cookie = signed_in.cookies[SESSION_COOKIE]
    into.cookies.set(SESSION_COOKIE, cookie)
    return cookie


def assert_ended(browser: TestClient, csrf: str, fake_actions: FakeActions) -> None:
    """Every page refuses the browser's session cookie, sent again each time (a 401 tells
    the browser to drop it; a copy is sent again anyway)."""
    cookie = browser.cookies[SESSION_COOKIE]
    for path in ("/", CRITICAL_PAGE, "/?severity=critical"):
        browser.cookies.set(SESSION_COOKIE, cookie)
        r = browser.get(path)
        assert r.status_code == 401, (path, r.status_code)
        assert "Your session has ended." in r.text and 'href="/login"' in r.text
    browser.cookies.set(SESSION_COOKIE, cookie)
    r = browser.post(f"{CRITICAL_PAGE}/snooze", data={"csrf": csrf, "until": "2026-03-03T10:00"})
    assert r.status_code == 401
    assert fake_actions.calls == []
    browser.cookies.set(SESSION_COOKIE, cookie)


def test_signing_out_ends_every_session_of_the_person(
    client: TestClient, attacker: TestClient, fake_actions: FakeActions
) -> None:
    csrf = sign_in(client, "mia")
    copy_session(client, attacker)
    with TestClient(client.app, follow_redirects=False) as laptop:
        sign_in(laptop, "mia")  # the same person on another device
        with TestClient(client.app, follow_redirects=False) as noahs:
            sign_in(noahs, "noah")
            assert attacker.get("/").status_code == 200  # the copy works until sign-out

            r = client.post("/logout", data={"csrf": csrf})
            assert (r.status_code, r.headers["location"]) == (303, "/login")
            assert_ended(attacker, csrf, fake_actions)
            assert laptop.get("/").status_code == 401
            assert noahs.get("/").status_code == 200  # another person's session goes on
    # without the cookie (the 401 cleared it), the page sends the browser to sign in
    assert client.get("/").status_code == 303
    sign_in(client, "mia")
    assert client.get("/").status_code == 200


def test_a_new_password_ends_the_sessions_made_with_the_old_one(
    client: TestClient,
    attacker: TestClient,
    store: Store,
    people: People,
    fake_actions: FakeActions,
) -> None:
    csrf = sign_in(client, "mia")
    copy_session(client, attacker)
    # people.yaml with mia's new password, read by the restarted server (the same key)
    changed = People(
        teams=people.teams,
        people=[
            p.model_copy(update={"sign_in": SignIn(password_hash=FAST.hash("a-new-password"))})
            if p.id == "mia"
            else p
            for p in people.people
        ],
    )
    restarted = create_app(store, changed, fake_actions, session_secret=SECRET, hasher=FAST)
    with TestClient(restarted, follow_redirects=False) as after:
        copy_session(client, after)
        assert_ended(after, csrf, fake_actions)


def test_revoke_ends_every_session_of_the_person(
    client: TestClient,
    attacker: TestClient,
    people: People,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_actions: FakeActions,
) -> None:
    csrf = sign_in(client, "mia")
    copy_session(client, attacker)
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(people.model_dump(mode="json")))
    monkeypatch.setenv("CSAUTO_PEOPLE_PATH", str(path))

    runner = CliRunner()
    result = runner.invoke(cli, ["people", "revoke", "mai", "--database-url", db_url])
    assert result.exit_code == 1
    assert "mai: no such person" in result.output and "did you mean 'mia'?" in result.output
    assert client.get("/").status_code == 200

    result = runner.invoke(cli, ["people", "revoke", "mia", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "every session of mia has ended" in result.output
    assert_ended(client, csrf, fake_actions)
    assert_ended(attacker, csrf, fake_actions)
