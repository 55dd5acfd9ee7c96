"""The review page in a real browser: Debian's chromium, driven by Playwright, against the
app served by uvicorn on 127.0.0.1. A manager signs in, sees only their team's
escalations, filters, opens one and acknowledges it; the other manager's token cannot act
on it through the API.

The browser is /usr/bin/chromium (`make browser` installs it; CSAUTO_CHROMIUM names
another); Playwright never downloads one. CSAUTO_SKIP_BROWSER=1 skips this test on a
machine without it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from api.support import EAST_CRITICAL, WEST_HIGH, FakeActions, bearer, password
from csautomation.api import EscalationActions

ROOT = Path(__file__).parents[2]
SCREENSHOTS = ROOT / ".csauto" / "screenshots"  # .csauto/ is gitignored


def chromium() -> str:
    path = os.environ.get("CSAUTO_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).exists():
        path = shutil.which("chromium") or path
    if not Path(path).exists():
        if os.environ.get("CSAUTO_SKIP_BROWSER") == "1":
            pytest.skip("no chromium, and CSAUTO_SKIP_BROWSER=1")
        pytest.fail(
            f"{path} is missing: run `make browser` (it installs Debian's chromium), "
            "or set CSAUTO_CHROMIUM to a Chromium binary"
        )
    return path


def test_manager_reviews_and_acknowledges(
    serve_app: Callable[[EscalationActions], str],
    fake_actions: FakeActions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = chromium()
    base = serve_app(fake_actions)
    shot = tmp_path / "review-page.png"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.goto(base + "/")
            expect(page).to_have_url(re.compile(r"/login\?next=/$"))
            page.get_by_test_id("login-name").fill("mia")
            page.get_by_test_id("login-password").fill(password("mia"))
            page.get_by_test_id("login-button").click()

            rows = page.get_by_test_id("escalation-row")
            expect(rows).to_have_count(3)
            listed = [rows.nth(i).get_attribute("data-workflow-id") for i in range(3)]
            assert listed[0] == EAST_CRITICAL  # the most urgent first
            assert WEST_HIGH not in listed

            page.get_by_test_id("filter-severity").select_option("critical")
            page.get_by_test_id("filter-button").click()
            expect(page).to_have_url(re.compile(r"severity=critical"))
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-workflow-id", EAST_CRITICAL)

            rows.first.get_by_test_id("escalation-link").click()
            expect(page.get_by_test_id("status")).to_have_text("open")
            expect(page.get_by_test_id("next-reach")).to_contain_text("Dora Director")
            page.get_by_test_id("ack-note").fill("Calling their CTO now")
            page.get_by_test_id("acknowledge-button").click()

            expect(page.get_by_test_id("flash")).to_contain_text("Acknowledged")
            expect(page.get_by_test_id("status")).to_have_text("acknowledged")
            expect(page.get_by_test_id("holder")).to_have_text("Mia Manager")
            expect(page.get_by_test_id("timeline-row").last).to_contain_text(
                "Calling their CTO now"
            )
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    [(kind, wid, action)] = fake_actions.calls
    assert (kind, wid, action.by) == ("acknowledge", EAST_CRITICAL, "mia")

    # the other team's manager cannot act on it through the API (it is not found for
    # them), and nothing is signalled
    with httpx.Client(base_url=base) as http:
        r = http.post(
            f"/api/escalations/{EAST_CRITICAL}/resolve", json={"note": "x"}, headers=bearer("noah")
        )
    assert r.status_code == 404
    assert len(fake_actions.calls) == 1

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / shot.name
    shutil.copyfile(shot, kept)
    print(f"screenshot: {kept} (and {shot})")
