"""Accessibility of the pages people live in, checked with axe-core in Debian's chromium:
sign-in, the managers' list, one escalation, "My work", the error page, the rules
overview and a rule's page. No serious or critical violation on any of them; a keyboard
alone signs in, opens an escalation and acknowledges it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from api.axe import check
from api.support import EAST_CRITICAL, NOW, FakeActions, password
from api.test_browser import SCREENSHOTS, chromium
from csautomation.api import EscalationActions
from csautomation.store.repo import Store, create_local_task
from csautomation.store.tables import LocalTaskRow


def _sign_in(page: Page, base: str, who: str) -> None:
    page.goto(base + "/login")
    page.get_by_test_id("login-name").fill(who)
    page.get_by_test_id("login-password").fill(password(who))
    page.get_by_test_id("login-button").click()
    expect(page.get_by_test_id("signed-in-as")).to_be_visible()


def _shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"a11y-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)


def test_no_serious_violation_on_any_page(
    serve_app: Callable[[EscalationActions], str],
    fake_actions: FakeActions,
    store: Store,
    tmp_path: Path,
) -> None:
    create_local_task(
        store,
        LocalTaskRow(
            idempotency_key="a11y-1",
            workflow_id="playbook:usage-drop:beta:1",
            step_id="outreach",
            account_id="beta",
            assignee="cara",
            subject="Usage is down at Beta: call the champion",
            description="Find out what changed.\nAgree a plan.",
            due_at=NOW + timedelta(days=2),
        ),
    )
    base = serve_app(fake_actions)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.goto(base + "/login")
            check(page, "sign-in")
            page.get_by_test_id("login-name").fill("mia")
            page.get_by_test_id("login-password").fill("wrong")
            page.get_by_test_id("login-button").click()
            expect(page.get_by_role("alert")).to_be_visible()
            check(page, "sign-in with an error")
            _shot(page, tmp_path, "sign-in-error")

            _sign_in(page, base, "mia")
            expect(page.get_by_test_id("escalation-row").first).to_be_visible()
            check(page, "list")
            _shot(page, tmp_path, "list")

            page.goto(base + "/?severity=purple")
            check(page, "list with a bad filter")

            page.goto(base + "/escalations/" + EAST_CRITICAL)
            expect(page.get_by_test_id("status")).to_have_text("open")
            check(page, "detail")
            _shot(page, tmp_path, "detail")

            page.goto(base + "/escalations/nothing-here")
            check(page, "not found")

            for path in ("/rules", "/rules/usage-drop"):  # the overview and a rule's page
                response = page.goto(base + path)
                assert response is not None and response.status == 200, path
                expect(page.locator("canvas").first).to_be_visible()
                check(page, path)
                _shot(page, tmp_path, path.strip("/").replace("/", "-"))

            page.goto(base + "/")
            page.get_by_test_id("logout-button").click()
            _sign_in(page, base, "cara")
            page.goto(base + "/my-work")
            expect(page.get_by_test_id("task-row")).to_have_count(1)
            check(page, "my work")
            _shot(page, tmp_path, "my-work")
        finally:
            browser.close()


def test_a_keyboard_alone_signs_in_and_acknowledges(
    serve_app: Callable[[EscalationActions], str],
    fake_actions: FakeActions,
    tmp_path: Path,
) -> None:
    base = serve_app(fake_actions)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.goto(base + "/login")
            page.keyboard.press("Tab")  # the first field takes the focus from the keyboard
            _tab_to(page, "login-name")
            page.keyboard.type("mia")
            _tab_to(page, "login-password")
            page.keyboard.type(password("mia"))
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("signed-in-as")).to_contain_text("Mia Manager")

            link = page.locator(
                f'[data-workflow-id="{EAST_CRITICAL}"] [data-testid="escalation-link"]'
            )
            _tab_to(page, element=link)
            page.keyboard.press("Enter")
            expect(page).to_have_url(re.compile(re.escape(EAST_CRITICAL.replace(":", "%3A"))))

            _tab_to(page, "acknowledge-button")
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("status")).to_have_text("acknowledged")
            _shot(page, tmp_path, "keyboard-acknowledged")
        finally:
            browser.close()


def _tab_to(page: Page, testid: str | None = None, element: object = None, limit: int = 80) -> None:
    """Presses Tab until the element has the focus: it is reachable by keyboard, in order."""
    target = element if element is not None else page.get_by_test_id(testid or "")
    for _ in range(limit):
        if target.evaluate("e => e === document.activeElement"):  # type: ignore[attr-defined]
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{testid or element} never took the focus after {limit} Tab presses")


def test_the_check_sees_a_violation() -> None:
    """The check is live: an unlabelled field and grey-on-grey text fail it."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page()
            page.set_content(
                '<html lang="en"><head><title>t</title></head><body><main><h1>t</h1>'
                '<input type="text"><p style="color:#bbb;background:#ccc">faint</p>'
                "</main></body></html>"
            )
            with pytest.raises(AssertionError) as failed:
                check(page, "a bad page")
            assert "label" in str(failed.value) and "color-contrast" in str(failed.value)
        finally:
            browser.close()
