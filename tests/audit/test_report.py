"""One account's audit report, from a store filled as production fills it: a signal
through the pipeline and the shipped rules, the playbooks it starts run by a real worker on
the time-skipping server, the CSM's task completed by their manager, the escalation the
playbook opens acknowledged through its CRM task and resolved. The report names the rule
version and the facts it read, the playbook version, each step (the branch with the value
it read), task and escalation with who acted and when, and the ledger; `csauto audit
report` writes it as one page that chromium opens from the file without a single request,
and `csauto audit` still lists the ledger. The demo's own store makes a report too."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.sync_api import expect, sync_playwright
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from api.test_browser import SCREENSHOTS, chromium
from audit.support import PLAYBOOK, acme_falls
from csautomation.audit.replay import file_name, read_history
from csautomation.audit.report import Report, build_report, run_ids
from csautomation.audit.report_html import render
from csautomation.escalation.people import load_people
from csautomation.ingest.completions import complete_task
from csautomation.store import ledger
from csautomation.store.escalations import get_escalation
from csautomation.store.outbox import mark_all_evaluated, runs
from csautomation.store.repo import Store, create_local_task, local_tasks
from csautomation.store.tables import LocalTaskRow
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.types import EscalationAction
from factories import ROOT, account, new_store, playbook_store
from playbook_support import PLAYBOOKS, make_worker, until
from shared_temporal import own_namespace

CSAUTO = Path(sys.executable).parent / "csauto"
NAMES = {p.id: p.name for p in load_people(ROOT / "people.yaml").people}
MANAGER = "Elena Petrova (mgr-01)"
# what a page that needs nothing else must not hold
FETCHES = re.compile(r"<script|<link|<img|<iframe|src=|url\(|@import|href=\"(?!#)", re.I)


@dataclass
class Filled:
    store: Store
    url: str
    histories: Path
    workflow_id: str
    escalation_id: str


@pytest_asyncio.fixture(scope="module")
async def filled(
    env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Filled]:
    folder = tmp_path_factory.mktemp("report")
    store = playbook_store(folder)
    mark_all_evaluated(store)
    queue = f"report-{uuid.uuid4()}"
    async with own_namespace(env) as client:
        p, runtime = acme_falls(store, client, queue, "report:acme:today")
        async with make_worker(client, store, queue):
            await p.run_once()
            [wf_id] = [r.workflow_id for r in runs(store) if r.workflow_id.startswith(PLAYBOOK)]
            await until(lambda: bool(local_tasks(store, wf_id)), "the CSM's task")
            [task] = local_tasks(store, wf_id)
            assert task.id is not None
            await complete_task(client, store, task.id, by="mgr-01")  # not its assignee
            await env.sleep(timedelta(days=15))  # its two weeks' wait, then the branch
            await until(lambda: status(store, wf_id) == "completed", "the playbook's end")
            eid = f"escalation:ACME:{wf_id}:escalate"
            await until(lambda: any(t.kind == "task" for t in local_tasks(store, eid)), "its task")
            notice = next(t for t in local_tasks(store, eid) if t.kind == "task")
            assert notice.id is not None
            await complete_task(client, store, notice.id, by="mgr-01")
            escalation = client.get_workflow_handle(eid)
            await escalation.signal(
                EscalationWorkflow.resolve,
                EscalationAction(by="mgr-01", note="Champion back on board"),
            )
            await until(lambda: status(store, eid) == "resolved", "the resolution")
            histories = folder / "histories"
            histories.mkdir()
            for wid in run_ids(store, "ACME", datetime.now(UTC) - timedelta(days=90)):
                history = await client.get_workflow_handle(wid).fetch_history()
                (histories / file_name(wid)).write_text(history.to_json())
        runtime.close()
        yield Filled(store, f"sqlite:///{folder}/csauto.db", histories, wf_id, eid)
    store.engine.dispose()


def status(store: Store, workflow_id: str) -> str:
    """A run's status as the store knows it (the escalations index for an escalation)."""
    state = get_escalation(store, workflow_id)
    if state is not None:
        return state.status
    return next((r.status for r in runs(store) if r.workflow_id == workflow_id), "")


def report(filled: Filled) -> Report:
    since = datetime.now(UTC) - timedelta(days=90)
    found: dict[str, WorkflowHistory] = {}
    for wid in run_ids(filled.store, "ACME", since):
        found[wid] = read_history(filled.histories / file_name(wid), wid)
    return build_report(filled.store, "ACME", since, names=NAMES, histories=found)


def test_the_report_tells_why_each_run_exists_and_who_did_what(filled: Filled) -> None:
    r = report(filled)
    assert (r.account_name, r.owner) == ("Acme Corp", "Priya Raman (csm-01)")
    assert r.chain.verified is None and r.chain.text == "chain not verified (csauto audit verify)"
    firing = next(f for f in r.firings if f.rule.startswith("usage-decline"))
    assert firing.matched and "kept in the store" in firing.version_note
    facts = dict(firing.facts)
    assert float(facts["usage.logins_change_30d_pct"]) <= -30  # what made it fire
    assert any(ok and "usage.logins_change_30d_pct <= -30" in text for ok, text in firing.checks)
    [run] = [x for x in firing.runs if x.workflow_id == filled.workflow_id]
    assert run.playbook == "usage-recovery (Usage recovery)"
    assert run.version == PLAYBOOKS["usage-recovery"].version
    assert run.status == "completed: escalated"
    steps = {s.id: s for s in run.steps}
    assert [s.id for s in run.steps] == [s.id for s in PLAYBOOKS["usage-recovery"].steps]
    outreach = [(e.what, e.by) for e in steps["outreach"].events]
    assert outreach[0][0].startswith("local record ") and outreach[0][0].endswith(" created")
    assert ("task completed", MANAGER) in outreach
    [branch] = steps["check-recovery"].events
    assert (
        branch.what == "branch on usage.logins_change_30d_pct > -10: does not hold, else escalate"
    )
    assert branch.detail[0].startswith("✘ usage.logins_change_30d_pct > -10 (value: -")
    assert (
        steps["wait-for-call"]
        .events[0]
        .what.startswith("waiting for the task of step outreach to be completed, until ")
    )
    assert steps["escalate"].events[-1].detail == [filled.escalation_id]
    assert run.history and run.history_note.startswith("from the workflow's history")

    [esc] = [e for e in r.escalations if e.workflow_id == filled.escalation_id]
    assert (esc.status, esc.holder) == ("resolved", MANAGER)
    # the level it had climbed to in the day skipped after the wait: the calendar's
    people = [(e.what, e.by, e.detail) for e in esc.events if e.by]
    assert people == [
        (
            f"acknowledged (level {esc.level})",
            MANAGER,
            ["completed the CRM task L1.0:local:csm-01 (assigned to csm-01)"],
        ),
        (f"resolved (level {esc.level})", MANAGER, ["Champion back on board"]),
    ]
    assert [e.what for e in esc.events][:2] == ["opened", "notified (level 1)"]
    [task] = [t for t in r.tasks if t.workflow_id == filled.workflow_id]
    assert (task.assignee, task.status, task.completed_by) == (
        "Priya Raman (csm-01)",
        "done",
        MANAGER,
    )
    kinds = {row.kind for row in r.ledger}
    assert {"rule_fired", "workflow_started", "create_task", "task_completed"} <= kinds
    assert "escalation" in kinds and "workflow_closed" in kinds


def test_text_from_people_and_vendors_is_never_markup(tmp_path: Path) -> None:
    """Names, subjects, notes and record ids as people typed them: shown, never run."""
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)> {{ 7*7 }} None"
    store = new_store(tmp_path, [account(name=evil)])
    wid = "playbook:r:ACME:1"
    create_local_task(
        store,
        LocalTaskRow(
            idempotency_key=f"{wid}:call",
            workflow_id=wid,
            step_id="call",
            account_id="ACME",
            assignee=evil,
            subject=evil,
        ),
    )
    ledger.append_one(
        store, ledger.effect("create_task", f"{wid}:call", wid, "call", "ACME", "local", evil, True)
    )
    html = render(build_report(store, "ACME", datetime.now(UTC) - timedelta(days=1)))
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as written
    store.engine.dispose()


def csauto(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CSAUTO), *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_report(filled: Filled, page: Path) -> None:
    done = csauto(
        *("audit", "report", "--account", "ACME", "--since", "90d", "--html", str(page)),
        *("--histories", str(filled.histories), "--database-url", filled.url),
    )
    assert done.returncode == 0, done.stderr
    assert f"{page}: the audit report of Acme Corp (ACME)" in done.stdout


def test_csauto_audit_report_writes_one_page_that_needs_nothing_else(
    filled: Filled, tmp_path: Path
) -> None:
    page = tmp_path / "acme.html"
    write_report(filled, page)
    html = page.read_text(encoding="utf-8")
    for text in (
        "Audit report: Acme Corp",
        "usage-decline",
        PLAYBOOKS["usage-recovery"].version,
        "does not hold, else escalate",
        "chain verified: ",  # the ledger the runs wrote, its triggers in place
        "UPDATE refused, DELETE refused",
        MANAGER,
    ):
        assert text in html
    assert "None" not in html and "{{" not in html and "{%" not in html
    assert FETCHES.search(html) is None
    # `csauto audit` lists the ledger as before; an unknown account is named
    listed = csauto("audit", "--account", "ACME", "--database-url", filled.url)
    assert listed.returncode == 0 and re.search(r"\d+ entries", listed.stdout)
    wrong = csauto(
        *("audit", "report", "--account", "ACMe", "--html", str(tmp_path / "x.html")),
        *("--database-url", filled.url),
    )
    assert wrong.returncode == 1 and "did you mean 'ACME'?" in wrong.stdout + wrong.stderr
    assert not (tmp_path / "x.html").exists()


def open_in_chromium(page_file: Path, shot: Path, texts: list[str]) -> list[str]:
    """Open the page from its file, check `texts` show, screenshot it; returns every URL
    the browser asked for."""
    asked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.on("request", lambda request: asked.append(request.url))
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(page_file.as_uri())
            expect(page.get_by_test_id("report-title")).to_contain_text("Audit report")
            expect(page.get_by_test_id("chain")).to_contain_text("chain verified")
            for summary in page.locator("[data-testid=history] summary").all():
                summary.click()  # the runs' own timelines, open for the screenshot
            for text in texts:
                expect(page.get_by_text(text).first).to_be_visible()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / shot.name)
    print(f"screenshot: {SCREENSHOTS / shot.name}")
    return asked


def test_the_report_opens_in_chromium_from_its_file_alone(
    filled: Filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    page = tmp_path / "acme.html"
    write_report(filled, page)
    asked = open_in_chromium(
        page,
        tmp_path / "audit-report.png",
        [
            "rule usage-decline (Logins down 30% or more in 30 days)",
            "branch on usage.logins_change_30d_pct > -10: does not hold, else escalate",
            "acknowledged (level",
            "Champion back on board",
        ],
    )
    assert asked == [page.as_uri()]  # not one request beyond the file itself


@pytest.mark.slow
@pytest.mark.sqlite_only  # the demo keeps its store in its data folder, on SQLite
def test_a_demo_accounts_report_opens_in_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    data = tmp_path / "demo"
    demo = subprocess.run(
        [
            *(str(CSAUTO), "demo", "--data-dir", str(data), "--accounts", "60"),
            *("--day-seconds", "0.1", "--port", "0"),
        ],
        cwd=ROOT,
        env={**os.environ, "CSAUTO_DATA_DIR": str(tmp_path), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    db = data / "csauto.db"
    with sqlite3.connect(db) as conn:  # the account whose story is longest
        [(account, name)] = conn.execute(
            "SELECT l.account_id, json_extract(a.data, '$.name') FROM decision_ledger l "
            "JOIN accounts a ON a.id = l.account_id GROUP BY l.account_id "
            "ORDER BY count(*) DESC, l.account_id LIMIT 1"
        ).fetchall()
    page = tmp_path / "demo-report.html"
    done = csauto(
        *("audit", "report", "--account", account, "--since", "90d", "--html", str(page)),
        *("--database-url", f"sqlite:///{db}"),
    )
    assert done.returncode == 0, done.stderr
    html = page.read_text(encoding="utf-8")
    assert "None" not in html and "{{" not in html and FETCHES.search(html) is None
    asked = open_in_chromium(
        page, tmp_path / "audit-report-demo.png", [f"Audit report: {name}", "Decision ledger"]
    )
    assert asked == [page.as_uri()]
