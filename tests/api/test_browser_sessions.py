"""Sessions that end and actions checked on the server, in a real browser (Debian's
chromium, as tests/api/test_browser.py drives it) against the app served by uvicorn:

- after sign-out, the old cookie gets 401 on every page and API route;
- a cross-team reassign (a form tampered with in the browser, and the API) gets 403 and
  changes nothing;
- ten wrong passwords from one address do not stop the right password from another
  (addresses as a proxy in front gives them: X-Forwarded-For, which uvicorn trusts from
  127.0.0.1).

Each test saves a screenshot in .csauto/screenshots/.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, expect, sync_playwright
from starlette.routing import BaseRoute

from api.conftest import AppFactory
from api.support import EAST_CRITICAL, FakeActions, bearer, password
from api.test_browser import SCREENSHOTS, chromium
from csautomation.api.app import SESSION_COOKIE
from csautomation.api.server import BackgroundServer
from csautomation.store.escalations import get_escalation
from csautomation.store.repo import Store

CRITICAL_PAGE = f"/escalations/{quote(EAST_CRITICAL, safe='')}"
# routes that answer without a session or a token, by design
PUBLIC = {"/login", "/static/app.css", "/docs", "/openapi.json", "/health/live", "/health/ready"}
PUBLIC |= {"/metrics", "/static/app.js", "/static/charts.js", "/static/vendor/chart.umd.min.js"}


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = chromium()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served(make_app: AppFactory, fake_actions: FakeActions) -> Iterator[tuple[FastAPI, str]]:
    app = make_app(fake_actions)
    with BackgroundServer(app) as server:
        yield app, server.url


def keep(shot: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)
    print(f"screenshot: {SCREENSHOTS / shot.name}")


def every_route(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route of the app, those of included routers too."""
    for route in routes:
        path = getattr(route, "path", None)
        if path is None:  # an included router
            inner = route.original_router  # type: ignore[attr-defined]
            yield from every_route(inner.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, prefix + path


def filled(path: str) -> str:
    values = {
        "workflow_id": quote(EAST_CRITICAL, safe=""),
        "kind": "snooze",
        "row_id": "1",
        "task_id": "1",
        "rule_id": "usage-drop",
        "source": "intercom",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def sign_in(page: Any, base: str, who: str, secret: str) -> None:
    page.goto(base + "/login")
    page.get_by_test_id("login-name").fill(who)
    page.get_by_test_id("login-password").fill(secret)
    page.get_by_test_id("login-button").click()


def test_after_sign_out_the_old_cookie_gets_401_everywhere(
    browser: Browser, served: tuple[FastAPI, str], fake_actions: FakeActions, tmp_path: Path
) -> None:
    app, base = served
    mine = browser.new_context(viewport={"width": 1280, "height": 800})
    page = mine.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, base, "mia", password("mia"))
    expect(page.get_by_test_id("escalation-row")).to_have_count(3)
    [cookie] = [c for c in mine.cookies() if c["name"] == SESSION_COOKIE]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")

    page.get_by_test_id("logout-button").click()
    expect(page).to_have_url(re.compile(r"/login$"))

    # the copy taken before sign-out, in another browser
    theirs = browser.new_context(viewport={"width": 1280, "height": 800})
    theirs.add_cookies([cookie])  # type: ignore[list-item]
    stolen = theirs.new_page()
    response = stolen.goto(base + "/")
    assert response is not None and response.status == 401
    expect(stolen.get_by_test_id("error-message")).to_have_text("Your session has ended.")
    shot = tmp_path / "session-ended.png"
    stolen.screenshot(path=str(shot), full_page=True)

    answers: dict[tuple[str, str], int] = {}
    with httpx.Client(base_url=base) as http:
        for method, path in every_route(app.routes):
            if path in PUBLIC:
                continue
            r = http.request(
                method,
                filled(path),
                headers={"cookie": f"{SESSION_COOKIE}={cookie['value']}"},
                data={"csrf": csrf or "", "until": "2026-03-03T10:00", "note": "x"},
            )
            answers[(method, path)] = r.status_code
    assert ("GET", "/") in answers and ("POST", "/api/escalations/{workflow_id}/snooze") in answers
    assert {k: v for k, v in answers.items() if v != 401} == {}, answers
    assert len(answers) >= 15
    assert fake_actions.calls == []
    keep(shot)


def test_a_cross_team_reassign_gets_403_and_changes_nothing(
    browser: Browser,
    served: tuple[FastAPI, str],
    fake_actions: FakeActions,
    store: Store,
    tmp_path: Path,
) -> None:
    _, base = served
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(10_000)
    sign_in(page, base, "mia", password("mia"))
    page.goto(base + CRITICAL_PAGE)
    expect(page.get_by_test_id("holder")).to_have_text("Mia Manager")
    choices = page.get_by_test_id("reassign-to").locator("option")
    offered = choices.evaluate_all("options => options.map(o => o.value)")
    assert "noah" not in offered and "carl" not in offered  # the form offers east only
    # as someone with the browser's developer tools would: another team's person added
    page.get_by_test_id("reassign-to").evaluate(
        "select => select.add(new Option('Noah Manager (west)', 'noah'))"
    )
    page.get_by_test_id("reassign-to").select_option("noah")
    with page.expect_response(re.compile(r"/reassign$")) as answer:
        page.get_by_test_id("reassign-button").click()
    assert answer.value.status == 403
    expect(page.get_by_test_id("error-message")).to_contain_text(
        "'noah' is not a person in your teams (east)"
    )
    shot = tmp_path / "cross-team-reassign.png"
    page.screenshot(path=str(shot), full_page=True)

    with httpx.Client(base_url=base) as http:
        for to in ("carl", "otto-from-ops", "noah"):
            r = http.post(
                f"/api/escalations/{EAST_CRITICAL}/reassign", json={"to": to}, headers=bearer("mia")
            )
            assert r.status_code == 403, r.text
    assert fake_actions.calls == []
    stored = get_escalation(store, EAST_CRITICAL)
    assert stored is not None and stored.holder == "mia"
    page.goto(base + CRITICAL_PAGE)
    expect(page.get_by_test_id("holder")).to_have_text("Mia Manager")
    keep(shot)


def test_ten_wrong_passwords_from_one_address_do_not_stop_another(
    browser: Browser, served: tuple[FastAPI, str], tmp_path: Path
) -> None:
    app, base = served
    # the throttles' clock stands still: a wait never runs out while a loaded machine is
    # slow between two tries (the waits' growth is tested in test_pages.py)
    still = time.monotonic()
    for throttle in (app.state.authn.throttle, app.state.authn.clients):
        throttle.clock = lambda: still
    guesser = browser.new_context(
        viewport={"width": 1280, "height": 800},
        extra_http_headers={"x-forwarded-for": "198.51.100.7"},
    ).new_page()
    guesser.set_default_timeout(10_000)
    statuses = []
    guessed = tmp_path / "sign-in-waits.png"
    for i in range(10):
        guesser.goto(base + "/login")
        guesser.get_by_test_id("login-name").fill("mia@example.com" if i % 2 else "mia")
        guesser.get_by_test_id("login-password").fill(f"guess-{i}")
        with guesser.expect_response(re.compile(r"/login$")) as answer:
            guesser.get_by_test_id("login-button").click()
        statuses.append(answer.value.status)
        if i == 4:
            expect(guesser.get_by_test_id("login-error")).to_contain_text(
                "Too many failed sign-ins: try again in 2 second(s)."
            )
            guesser.screenshot(path=str(guessed), full_page=True)
    # an alias counts as the same person; after 4 failures a wait (2 s, then 4, 8 ...)
    # refuses the next tries without counting them: never a lock
    assert statuses[:5] == [400] * 4 + [429], statuses
    assert statuses[5:] == [429] * 5, statuses  # refused without being counted

    # the right password from another address is not held
    mia = browser.new_context(
        viewport={"width": 1280, "height": 800},
        extra_http_headers={"x-forwarded-for": "203.0.113.9"},
    ).new_page()
    mia.set_default_timeout(10_000)
    sign_in(mia, base, "mia", password("mia"))
    expect(mia.get_by_test_id("signed-in-as")).to_contain_text("Mia Manager")
    expect(mia.get_by_test_id("escalation-row")).to_have_count(3)
    shot = tmp_path / "sign-in-from-another-address.png"
    mia.screenshot(path=str(shot), full_page=True)
    keep(guessed)
    keep(shot)
