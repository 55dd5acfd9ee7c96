"""`csauto tasks list|show|complete`: a task's description, due date and the playbook
step that created it from the command line, and a completion that always names its actor
in the ledger (the assignee when --by is not given)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.store.ledger import Query, entries
from csautomation.store.repo import Store, create_local_task, local_tasks
from csautomation.store.tables import LocalTaskRow, PlaybookRunRow
from factories import add_playbook_accounts

runner = CliRunner()
WID = "playbook:usage-decline:ACME:1"  # no such workflow runs: its signal is ignored


@pytest.fixture
def store(store: Store) -> Store:
    add_playbook_accounts(store)
    with store.session() as s:
        s.add(PlaybookRunRow(workflow_id=WID, playbook_id="usage-recovery", account_id="ACME"))
        s.commit()
    for key, assignee in (("outreach", "csm-01"), ("other", "csm-02")):
        create_local_task(
            store,
            LocalTaskRow(
                idempotency_key=f"{WID}:{key}",
                workflow_id=WID,
                step_id=key,
                account_id="ACME",
                assignee=assignee,
                subject=f"Call them ({key})",
                description="Logins fell by 70%.\nAsk what changed.",
                due_at=datetime(2026, 3, 4, 9, tzinfo=UTC),
            ),
        )
    return store


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.usefixtures("store")
def test_show_tells_the_description_and_where_the_task_came_from(db_url: str) -> None:
    code, text = invoke("tasks", "show", "1", "--database-url", db_url)
    assert code == 0, text
    assert "subject:   Call them (outreach)" in text
    assert "account:   Acme Corp (ACME)" in text
    assert "playbook:  usage-recovery" in text and "step:      outreach" in text
    assert "due:       2026-03-04T09:00:00+00:00" in text
    assert "Logins fell by 70%.\nAsk what changed." in text
    code, text = invoke("tasks", "show", "9", "--database-url", db_url)
    assert code == 1 and "no task 9 in the local CRM" in text


@pytest.mark.usefixtures("store")
def test_list_names_the_playbook_step(db_url: str) -> None:
    code, text = invoke("tasks", "list", "--assignee", "csm-01", "--database-url", db_url)
    assert code == 0, text
    cells = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    columns = ["".join(c[i].strip() for c in cells) for i in range(len(cells[0]))]
    # a cell folds over lines at the terminal's width, never cut short
    assert columns[3:6] == ["Call them(outreach)", "2026-03-04", "usage-recovery · outreach"]
    assert len([c for c in cells if c[0].strip()]) == 1  # csm-02's task is not listed


def test_complete_without_by_credits_the_assignee_in_the_ledger(
    env: WorkflowEnvironment, store: Store, db_url: str
) -> None:
    address = env.client.service_client.config.target_host
    code, text = invoke(
        "tasks", "complete", "1", "--database-url", db_url, "--temporal-address", address
    )
    assert code == 0, text
    assert f"task 1 done, credited to csm-01; signalled {WID}" in text
    code, text = invoke(
        "tasks",
        "complete",
        "2",
        "--by",
        "mgr-01",
        "--database-url",
        db_url,
        "--temporal-address",
        address,
    )
    assert code == 0, text
    assert "credited to mgr-01" in text
    by = {e.step_id: e.detail["by"] for e in entries(store, Query(kinds=("task_completed",)))}
    assert by == {"outreach": "csm-01", "other": "mgr-01"}
    assert {t.status for t in local_tasks(store)} == {"done"}
