""" "My work" in a real browser against a real playbook: the shipped usage-recovery playbook
runs on the time-skipping server with its real activities and creates its outreach task in
the local CRM; the CSM signs in, sees the task with its description, due date, account and
the step that created it, completes it, and the playbook moves on from its wait. The
ledger credits the CSM.

Also, without a browser: who sees whose tasks, and a task outside them answers as a
missing one.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.async_api import async_playwright, expect
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.support import FAST, NOW, SECRET, FakeActions, password
from api.test_browser import SCREENSHOTS, chromium
from csautomation.api import create_app
from csautomation.api.server import serving
from csautomation.escalation.people import People, Person, SignIn, Team
from csautomation.store.ledger import Query, entries
from csautomation.store.repo import Store, create_local_task, local_tasks
from csautomation.store.tables import LocalTaskRow, PlaybookRunRow
from csautomation.workflows.playbook import PlaybookWorkflow
from factories import add_playbook_accounts
from playbook_support import make_worker, playbook_input, until
from shared_temporal import own_namespace

CSM = "csm-01"  # ACME's owner in the playbook tests' accounts


def _person(pid: str, name: str, role: str, team: str, sign_in: bool = True) -> Person:
    return Person(
        id=pid,
        name=name,
        role=role,  # type: ignore[arg-type]
        team=team,
        sign_in=SignIn(password_hash=FAST.hash(password(pid))) if sign_in else None,
    )


@pytest.fixture(scope="module")
def work_people() -> People:
    return People(
        teams={"enterprise": Team(name="Enterprise"), "growth": Team(name="Growth")},
        people=[
            _person("mgr-01", "Elena Petrova", "manager", "enterprise"),
            _person(CSM, "Priya Raman", "csm", "enterprise"),
            _person("csm-02", "Tom Becker", "csm", "enterprise", sign_in=False),
            _person("csm-05", "Hannah Kim", "csm", "growth"),
        ],
    )


@pytest.fixture
def store(store: Store) -> Store:
    return add_playbook_accounts(store)


def app_for(store: Store, people: People, temporal: object = None) -> FastAPI:
    return create_app(
        store,
        people,
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        temporal=temporal,  # type: ignore[arg-type]
    )


@pytest.mark.asyncio
async def test_a_csm_completes_a_task_and_the_playbook_moves_on(
    env: WorkflowEnvironment, store: Store, work_people: People, tmp_path: Path
) -> None:
    executable = chromium()
    shot = tmp_path / "my-work.png"
    queue = f"my-work-{uuid.uuid4()}"
    async with own_namespace(env) as client, make_worker(client, store, queue):
        wid = f"playbook:usage-decline:ACME:{uuid.uuid4()}"
        with store.session() as s:  # the runs index, as the dispatcher records a start
            s.add(
                PlaybookRunRow(
                    workflow_id=wid,
                    playbook_id="usage-recovery",
                    rule_id="usage-decline",
                    account_id="ACME",
                )
            )
            s.commit()
        handle = await client.start_workflow(
            PlaybookWorkflow.run, playbook_input(), id=wid, task_queue=queue
        )
        await until(lambda: bool(local_tasks(store, wid)), "the outreach task")
        [task] = local_tasks(store, wid)
        assert task.assignee == CSM and task.status == "open"
        # the task row commits before the workflow hears its activity finished
        await until_step(handle, "wait-for-call")

        app = app_for(store, work_people, client)
        async with serving(app) as base, async_playwright() as p:
            browser = await p.chromium.launch(executable_path=executable, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(10_000)
                await page.goto(base + "/my-work")
                await expect(page).to_have_url(re.compile(r"/login\?next=/my-work$"))
                await page.get_by_test_id("login-name").fill(CSM)
                await page.get_by_test_id("login-password").fill(password(CSM))
                await page.get_by_test_id("login-button").click()
                await expect(page).to_have_url(re.compile(r"/my-work$"))

                rows = page.get_by_test_id("task-row")
                await expect(rows).to_have_count(1)
                row = rows.first
                await expect(row).to_have_attribute("data-task-id", str(task.id))
                await expect(row.get_by_test_id("task-subject")).to_have_text(
                    "Usage is down at Acme Corp: call the champion"
                )
                await expect(row.get_by_test_id("task-description")).to_contain_text(
                    "Find out what changed and agree a re-onboarding plan."
                )
                await expect(row.get_by_test_id("task-origin")).to_contain_text(
                    "usage-recovery · step outreach"
                )
                await expect(row).to_contain_text("Acme Corp")
                assert task.due_at is not None
                await expect(row.get_by_test_id("task-due")).to_contain_text(
                    task.due_at.strftime("%Y-%m-%d %H:%M UTC")
                )

                await row.get_by_test_id("complete-button").click()
                await expect(page.get_by_test_id("flash")).to_contain_text("Done: Usage is down")
                await expect(row.get_by_test_id("task-status")).to_have_text("done")
                await expect(row.get_by_test_id("complete-button")).to_have_count(0)
                await page.screenshot(path=str(shot), full_page=True)
            finally:
                await browser.close()

        # the playbook moved on: its wait for the call ended, and the next step began
        await until_step(handle, "give-it-time")
        history = await handle.query(PlaybookWorkflow.step_history)
        waited = next(r for r in history if r.step_id == "wait-for-call")
        assert waited.ended_at is not None and waited.result == "continue"
        await handle.terminate("the test is over")

    [done] = local_tasks(store, wid)
    assert done.status == "done"
    [entry] = entries(store, Query(workflow_id=wid, kinds=("task_completed",)))
    assert entry.detail["by"] == CSM

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)
    print(f"screenshot: {SCREENSHOTS / shot.name}")


async def until_step(handle: WorkflowHandle[Any, Any], step: str, limit: float = 30.0) -> None:
    """Wait for the playbook to reach `step` (its worker runs on this loop)."""
    deadline = asyncio.get_running_loop().time() + limit
    while (current := await handle.query(PlaybookWorkflow.current_step)) != step:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the playbook stayed at {current!r}, not {step!r}")
        await asyncio.sleep(0.05)


# -- who sees whose tasks -----------------------------------------------------------------
def _task(store: Store, key: str, assignee: str, description: str = "") -> int:
    task_id, _ = create_local_task(
        store,
        LocalTaskRow(
            idempotency_key=key,
            workflow_id=f"playbook:r:ACME:{key}",
            step_id="outreach",
            account_id="ACME",
            assignee=assignee,
            subject=f"task {key}",
            description=description,
            due_at=NOW - timedelta(days=1),
        ),
    )
    return task_id


@pytest.fixture
def http(store: Store, work_people: People) -> Iterator[TestClient]:
    with TestClient(app_for(store, work_people), follow_redirects=False) as c:
        yield c


def sign_in(http: TestClient, who: str) -> str:
    """Signs in and returns the page's CSRF token."""
    page = http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    r = http.post(
        "/login",
        data={"login": who, "password": password(who), "csrf": csrf.group(1), "next": "/my-work"},
    )
    assert r.status_code == 303
    token = re.search(r'name="csrf" value="([^"]+)"', http.get("/my-work").text)
    assert token is not None
    return token.group(1)


def test_a_manager_sees_the_teams_tasks_and_a_csm_only_theirs(
    http: TestClient, store: Store
) -> None:
    _task(store, "a", CSM, "<script>alert(1)</script>\nsecond line")
    _task(store, "b", "csm-02")
    other = _task(store, "c", "csm-05")

    sign_in(http, "mgr-01")
    page = http.get("/my-work").text
    assert "task a" in page and "task b" in page and "task c" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert 'class="overdue"' in page  # due a day before now
    one = http.get("/my-work", params={"assignee": "csm-02"}).text
    assert "task b" in one and "task a" not in one
    refused = http.get("/my-work", params={"assignee": "csm-05"}).text
    assert "csm-05 is not on your teams" in refused and "task c" not in refused

    http.cookies.clear()
    csrf = sign_in(http, CSM)
    page = http.get("/my-work").text
    assert "task a" in page and "task b" not in page
    # another team's task answers as a missing one does, and stays open
    r = http.post(f"/my-work/{other}/complete", data={"csrf": csrf})
    missing = http.post("/my-work/9999/complete", data={"csrf": csrf})
    assert r.status_code == missing.status_code == 404
    assert [t.status for t in local_tasks(store) if t.id == other] == ["open"]
    # no CSRF token: refused before anything is looked up
    assert http.post(f"/my-work/{other}/complete", data={}).status_code == 403
