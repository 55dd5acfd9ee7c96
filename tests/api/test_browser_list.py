"""The managers' list in a real browser (Debian's chromium through Playwright, the app
served by uvicorn): an account's escalations in one group that expands from the keyboard,
each with its rendered reason; acknowledge and reassign from the list and from an
escalation's page change the page in place, with no navigation (a marker set on `window`
before the click is still there after it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from api.axe import check
from api.support import EAST_CRITICAL, EAST_MEDIUM, FakeActions, password
from api.test_browser import SCREENSHOTS, chromium
from api.test_listing import SECOND_ACME, escalation, fired
from csautomation.api import EscalationActions
from csautomation.store.escalations import record_escalation
from csautomation.store.repo import Store

DELTA_ACKED = "escalation:tickets:delta:1"


def keep(shot: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)


def row(page: Page, workflow_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f"[data-testid=escalation-row][data-workflow-id='{workflow_id}']")


def test_list_groups_and_acts_in_place(
    serve_app: Callable[[EscalationActions], str],
    fake_actions: FakeActions,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = chromium()
    record_escalation(store, escalation(SECOND_ACME, "acme", reason="NPS fell to 4"), seq=1)
    fired(store, SECOND_ACME, "acme", 2, {"health.score": 41.4, "health.band": "red"})
    base = serve_app(fake_actions)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.set_default_timeout(10_000)
            page.goto(base + "/login")
            page.get_by_test_id("login-name").fill("mia")
            page.get_by_test_id("login-password").fill(password("mia"))
            page.get_by_test_id("login-button").click()

            # the list shows a rendered reason and groups an account's escalations
            groups = page.get_by_test_id("account-group")
            expect(groups).to_have_count(3)
            acme = groups.first
            expect(acme.get_by_test_id("account-row")).to_contain_text("Acme Corp")
            expand = acme.get_by_test_id("expand")
            expect(expand).to_have_text("2 escalations")
            expect(expand).to_have_attribute("aria-expanded", "false")
            expect(row(page, SECOND_ACME)).to_be_hidden()
            expand.focus()
            page.keyboard.press("Enter")  # keyboard usable
            expect(expand).to_have_attribute("aria-expanded", "true")
            expect(row(page, SECOND_ACME)).to_be_visible()
            expect(row(page, SECOND_ACME).get_by_test_id("reason")).to_have_text("NPS fell to 4")
            expect(row(page, EAST_CRITICAL).get_by_test_id("reason")).to_have_text(
                "logins fell by 70% in 30 days"
            )
            expect(row(page, SECOND_ACME).get_by_test_id("health-at-firing")).to_have_text(
                "41 redon 2026-03-01"
            )
            check(page, "the list with a group expanded")
            shot = tmp_path / "list-grouped.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)

            # an acknowledge updates the row without a reload
            page.evaluate("window.__marker = 1")
            beta = row(page, EAST_MEDIUM)
            expect(beta.get_by_test_id("row-status")).to_have_text("open")
            beta.get_by_test_id("row-acknowledge").click()
            expect(beta.get_by_test_id("row-status")).to_have_text("acknowledged")
            expect(beta.get_by_test_id("row-holder")).to_have_text("Mia Manager")
            expect(beta.get_by_test_id("row-acknowledge")).to_have_count(0)
            expect(page.get_by_test_id("flash")).to_have_text(
                "Acknowledged. Status: acknowledged; held by Mia Manager."
            )
            assert page.evaluate("window.__marker") == 1

            # an acknowledge inside an expanded group: the group stays open
            row(page, SECOND_ACME).get_by_test_id("row-acknowledge").click()
            expect(row(page, SECOND_ACME).get_by_test_id("row-status")).to_have_text("acknowledged")
            expect(acme.get_by_test_id("group-status")).to_have_text("1 open, 1 acknowledged")
            expect(row(page, SECOND_ACME)).to_be_visible()
            expect(page.get_by_test_id("expand")).to_have_attribute("aria-expanded", "true")

            # a reassign changes the holder in place
            delta = row(page, DELTA_ACKED)
            delta.get_by_test_id("row-more").click()
            delta.get_by_test_id("row-reassign-to").select_option("cara")
            delta.get_by_test_id("row-reassign").click()
            expect(delta.get_by_test_id("row-holder")).to_have_text("Cara CSM")
            expect(page.get_by_test_id("flash")).to_contain_text("held by Cara CSM")
            assert page.evaluate("window.__marker") == 1
            check(page, "the list after actions in place")
            shot = tmp_path / "list-after-actions.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)
        finally:
            browser.close()

    done = [(kind, wid, a.by) for kind, wid, a in fake_actions.calls]
    assert done == [
        ("acknowledge", EAST_MEDIUM, "mia"),
        ("acknowledge", SECOND_ACME, "mia"),
        ("reassign", DELTA_ACKED, "mia"),
    ]
    assert fake_actions.calls[2][2].to == "cara"


def test_detail_page_acts_in_place(
    serve_app: Callable[[EscalationActions], str],
    fake_actions: FakeActions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = chromium()
    base = serve_app(fake_actions)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.goto(base + "/login")
            page.get_by_test_id("login-name").fill("mia")
            page.get_by_test_id("login-password").fill(password("mia"))
            page.get_by_test_id("login-button").click()
            row(page, EAST_CRITICAL).get_by_test_id("escalation-link").click()
            expect(page.get_by_test_id("status")).to_have_text("open")
            expect(page.get_by_test_id("health-now-heading")).to_have_text("Now, on 2026-03-02")

            page.evaluate("window.__marker = 1")
            page.get_by_test_id("ack-note").fill("Calling their CTO now")
            page.get_by_test_id("acknowledge-button").click()
            expect(page.get_by_test_id("status")).to_have_text("acknowledged")
            expect(page.get_by_test_id("timeline-row").last).to_contain_text(
                "Calling their CTO now"
            )
            expect(page.get_by_test_id("status")).to_be_focused()

            page.get_by_test_id("reassign-to").select_option("cara")
            page.get_by_test_id("reassign-button").click()
            expect(page.get_by_test_id("holder")).to_have_text("Cara CSM")
            expect(page.get_by_test_id("flash")).to_have_text(
                "Reassigned. Status: acknowledged; held by Cara CSM."
            )
            # a refusal is announced, and nothing on the page changes
            page.get_by_test_id("snooze-until").fill("2020-01-01T09:00")
            page.get_by_test_id("snooze-button").click()
            expect(page.get_by_test_id("flash")).to_have_text(
                "Not done: until: must be in the future"
            )
            expect(page.get_by_test_id("status")).to_have_text("acknowledged")
            assert page.evaluate("window.__marker") == 1
            check(page, "an escalation after actions in place")
            shot = tmp_path / "detail-in-place.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)
        finally:
            browser.close()
    assert [kind for kind, _, _ in fake_actions.calls] == ["acknowledge", "reassign"]
