"""The rules pages in a real browser (Debian's chromium, driven by Playwright, against the
app served by uvicorn): the rule page draws its chart with the vendored Chart.js from the
page's JSON block, under the pages' own content security policy, and the chart's numbers
are the weekly counts seeded; the overview draws the health bands. Nothing is fetched from
another host."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response, expect, sync_playwright

from api.rules_support import QUIET, RULE, WEEKLY_ALL, seed, write_rules
from api.support import FAST, NOW, SECRET, FakeActions, password
from api.test_browser import SCREENSHOTS, chromium
from csautomation.api import create_app
from csautomation.api.server import BackgroundServer
from csautomation.escalation.people import People
from csautomation.store.repo import Store
from factories import daily_usage

# the chart Chart.js registered on a canvas: its labels, and each dataset's label and data
CHART_OF = """canvas => {
  const chart = Chart.getChart(canvas);
  return chart ? {labels: chart.data.labels,
                  datasets: chart.data.datasets.map(d => [d.label, d.data])} : null;
}"""
# how many pixels of the canvas are not transparent: a drawn chart has bars and axes
INKED = """canvas => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { inked++; } }
  return inked;
}"""


@pytest.fixture
def base(store: Store, people: People, tmp_path: Path) -> Iterator[str]:
    seed(store)
    store.add_signals(daily_usage("acme", NOW.date(), fell=True))
    ruleset = write_rules(tmp_path / "rules")
    app = create_app(
        store,
        people,
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        rules=lambda: ruleset,
    )
    with BackgroundServer(app) as server:
        yield server.url


def keep(shot: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)
    print(f"screenshot: {SCREENSHOTS / shot.name}")


def watch(page: Page, base: str) -> tuple[list[str], list[str]]:
    """Console errors (a script or style the policy refused shows there), failed loads but
    the favicon's (the app has none), and requests to other hosts."""
    errors: list[str] = []
    elsewhere: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    def response(answer: Response) -> None:
        if answer.status >= 400 and not answer.url.endswith("/favicon.ico"):
            errors.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("response", response)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(base) else elsewhere.append(r.url))
    return errors, elsewhere


def test_the_rule_page_draws_its_chart(base: str, tmp_path: Path) -> None:
    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            errors, elsewhere = watch(page, base)
            page.goto(base + "/login?next=/rules")
            page.get_by_test_id("login-name").fill("ada")
            page.get_by_test_id("login-password").fill(password("ada"))
            page.get_by_test_id("login-button").click()
            expect(page).to_have_url(re.compile(r"/rules$"))

            # the overview: every rule with a link, and the health bands drawn
            rows = page.get_by_test_id("rule-row")
            expect(rows).to_have_count(2)
            bands = page.get_by_test_id("bands-chart")
            page.wait_for_function(
                "c => Chart.getChart(c) !== undefined", arg=bands.element_handle()
            )
            drawn: Any = bands.evaluate(CHART_OF)
            assert [d[0] for d in drawn["datasets"]] == ["Green", "Yellow", "Red", "No score"]
            assert drawn["datasets"][1][1] == [0] * 10 + [1, 1]  # acme turned yellow
            assert bands.evaluate(INKED) > 1000
            shot = tmp_path / "rules-overview.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)

            page.get_by_test_id("rule-link").filter(has_text="Usage dropped").click()
            expect(page).to_have_url(re.compile(rf"/rules/{RULE}$"))
            expect(page.get_by_test_id("rule-name")).to_have_text(
                "Usage dropped at an enterprise account"
            )
            canvas = page.get_by_test_id("firings-chart")
            page.wait_for_function(
                "c => Chart.getChart(c) !== undefined", arg=canvas.element_handle()
            )
            drawn = canvas.evaluate(CHART_OF)
            assert drawn["datasets"] == [["Firings", WEEKLY_ALL]]
            assert drawn["labels"][0] == "15 Dec" and drawn["labels"][-1] == "2 Mar (so far)"
            assert canvas.evaluate(INKED) > 1000
            expect(canvas).to_have_attribute("aria-label", re.compile("numbers are in the table"))
            expect(page.get_by_test_id("week-count")).to_have_text([str(n) for n in WEEKLY_ALL])
            expect(page.get_by_test_id("firing-row")).to_have_count(8)
            shot = tmp_path / "rule-page.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)

            # a rule that never fired: a chart of zeros, drawn all the same
            page.goto(f"{base}/rules/{QUIET}")
            canvas = page.get_by_test_id("firings-chart")
            page.wait_for_function(
                "c => Chart.getChart(c) !== undefined", arg=canvas.element_handle()
            )
            assert canvas.evaluate(CHART_OF)["datasets"] == [["Firings", [0] * 12]]
            expect(page.get_by_test_id("rule-name")).to_have_text(
                "<script>alert(1)</script> {{ 7 * 7 }} & co"
            )
            shot = tmp_path / "rule-page-quiet.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)

            assert errors == [] and elsewhere == []
        finally:
            browser.close()
