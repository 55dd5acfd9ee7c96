"""The review page on escalations the demo started, end to end: a real `csauto demo --serve`
process (the bundled Temporal dev server, real escalation workflows), Debian's chromium
driven by Playwright. A manager signs in, sees only their team's escalations, filters
them, acknowledges one, and the workflow's state changes; the API refuses a caller
without credentials (401) and answers a manager of another team as for a missing
escalation (404). A signal posted with the demo's documented token, as the demo's own
hint says, becomes a task on the CSM's "My work", and completing it there moves its
playbook on to the next task."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from api.test_browser import SCREENSHOTS, chromium
from csautomation.escalation.people import load_people
from csautomation.runtime.demo_app import DEMO_SOURCE_TOKEN
from csautomation.store.repo import Store, local_tasks
from csautomation.store.tables import LocalTaskRow

ROOT = Path(__file__).parents[2]
CSAUTO = Path(sys.executable).parent / "csauto"
SERVING = re.compile(r"serving the review page at (http://127\.0\.0\.1:\d+)")


def token(person: str) -> dict[str, str]:
    return {"Authorization": f"Bearer demo-token-{person}"}  # people.yaml's demo tokens


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo, kept serving after its summary; yields the review page's URL."""
    proc = subprocess.Popen(
        [
            *(str(CSAUTO), "demo", "--data-dir", str(tmp_path / "demo"), "--accounts", "60"),
            *("--day-seconds", "0.1", "--port", "0", "--serve"),
        ],
        cwd=ROOT,
        env={**os.environ, "CSAUTO_DATA_DIR": str(tmp_path), "COLUMNS": "250"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:  # until it says it serves (pytest-timeout bounds this)
            seen.append(line)
            found = SERVING.search(line)
            if found:
                (tmp_path / "demo-output.txt").write_text("".join(seen))
                yield found.group(1)
                break
        else:
            pytest.fail("the demo ended without serving:\n" + "".join(seen[-40:]))
    finally:
        # SIGTERM, as a supervisor stops it (SIGINT is ignored by a process started in the
        # background of a non-interactive shell, as CI scripts may start it)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        proc.stdout.close()
    assert code == 0, f"csauto demo --serve ended with {code} on SIGTERM, not 0"


@pytest.mark.slow
@pytest.mark.sqlite_only  # the demo keeps its store in its data folder, on SQLite
def test_a_manager_acknowledges_an_escalation_the_demo_started(
    demo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = chromium()
    people = load_people(ROOT / "people.yaml")
    managers = {p.team: p.id for p in people.people if p.role == "manager" and p.sign_in}
    with httpx.Client(base_url=demo, timeout=30) as api:
        assert api.get("/api/escalations").status_code == 401
        everything = api.get("/api/escalations", headers=token("admin")).json()["escalations"]
        chosen = next(e for e in everything if e["status"] == "open" and e["team"] in managers)
        team, manager = chosen["team"], managers[chosen["team"]]
        mine = {e["workflow_id"] for e in everything if e["team"] == team}
        others = {e["workflow_id"] for e in everything} - mine
        outsider = next(m for t, m in managers.items() if t != team)

    shot = tmp_path / "review-demo.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(demo + "/")
            page.get_by_test_id("login-name").fill(manager)
            page.get_by_test_id("login-password").fill(f"demo-{manager}")
            page.get_by_test_id("login-button").click()

            rows = page.get_by_test_id("escalation-row")  # an account's several: collapsed
            expect(page.get_by_test_id("account-group").first).to_be_visible()
            listed = {rows.nth(i).get_attribute("data-workflow-id") for i in range(rows.count())}
            assert listed and listed <= mine and not listed & others

            page.get_by_test_id("filter-severity").select_option(chosen["severity"])
            page.get_by_test_id("filter-button").click()
            expect(page).to_have_url(re.compile(f"severity={chosen['severity']}"))
            filtered = page.locator(
                f"[data-testid=escalation-row][data-workflow-id='{chosen['workflow_id']}']"
            )
            expect(filtered).to_have_count(1)
            if not filtered.is_visible():  # one of its account's escalations: expand them
                page.locator("tbody[data-testid=account-group]", has=filtered).get_by_test_id(
                    "expand"
                ).click()
            filtered.get_by_test_id("escalation-link").click()
            expect(page.get_by_test_id("status")).to_have_text("open")
            page.get_by_test_id("ack-note").fill("On it: calling the champion")
            page.get_by_test_id("acknowledge-button").click()
            expect(page.get_by_test_id("status")).to_have_text("acknowledged")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    wid = chosen["workflow_id"]
    with httpx.Client(base_url=demo, timeout=30) as api:
        detail = api.get(f"/api/escalations/{wid}", headers=token(manager)).json()
        assert detail["state"]["status"] == "acknowledged"
        assert detail["state"]["holder"] == manager
        kinds = [e["kind"] for e in detail["state"]["timeline"]]
        assert kinds[0] == "opened" and kinds[-1] == "acknowledged"
        refused = api.post(
            f"/api/escalations/{wid}/resolve", json={"note": "not mine"}, headers=token(outsider)
        )
        assert refused.status_code == 404  # another team's: as a missing one
        assert api.post(f"/api/escalations/{wid}/resolve", json={"note": "x"}).status_code == 401

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)
    print(f"screenshot: {SCREENSHOTS / shot.name}")


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_a_signal_posted_to_the_demo_becomes_a_task_a_csm_completes(
    demo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    executable = chromium()
    printed = (tmp_path / "demo-output.txt").read_text()
    assert f"Authorization: Bearer {DEMO_SOURCE_TOKEN}" in printed  # said at start
    hint = re.search(r"-d '(\{.*\})'", printed)
    assert hint is not None, printed[-3000:]
    signal_body = json.loads(hint.group(1))
    account = signal_body["account_id"]
    with httpx.Client(base_url=demo, timeout=30) as api:
        wrong = api.post("/v1/signals", json=signal_body, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        r = api.post(
            "/v1/signals",
            json=signal_body,
            headers={"Authorization": f"Bearer {DEMO_SOURCE_TOKEN}"},
        )
        assert r.status_code in (200, 202), r.text

    store = Store(f"sqlite:///{tmp_path}/demo/csauto.db", read_only=True)
    try:
        subject = "Champion left"
        assert any(s.type == "stakeholder_change" for s in store.signals_for(account))
        wait_for(lambda: _task(store, account, subject) is not None, "the playbook's task")
        task = _task(store, account, subject)
        assert task is not None and task.assignee == "csm-01"  # the CSM who can sign in

        shot = tmp_path / "demo-my-work.png"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(15_000)
                page.goto(demo + "/my-work")
                page.get_by_test_id("login-name").fill("csm-01")
                page.get_by_test_id("login-password").fill("demo-csm-01")
                page.get_by_test_id("login-button").click()
                row = page.locator(f"[data-testid=task-row][data-task-id='{task.id}']")
                expect(row.get_by_test_id("task-subject")).to_contain_text(subject)
                expect(row.get_by_test_id("task-origin")).to_contain_text(
                    "champion-change · step map-stakeholders"
                )
                row.get_by_test_id("complete-button").click()
                expect(row.get_by_test_id("task-status")).to_have_text("done")
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
        # the playbook moved on: its next step's task is there
        wait_for(lambda: _task(store, account, "Onboard the new champion") is not None, "next")
    finally:
        store.engine.dispose()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)
    print(f"screenshot: {SCREENSHOTS / shot.name}")


def _task(store: Store, account: str, subject: str) -> LocalTaskRow | None:
    return next(
        (
            t
            for t in local_tasks(store)
            if t.account_id == account and t.kind == "task" and t.subject.startswith(subject)
        ),
        None,
    )


def wait_for(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll the demo's store for what its pipeline and workers bring about."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
