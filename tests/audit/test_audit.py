"""The auditor's view, end to end: a signal fires a rule whose playbook creates a task; the
decision ledger holds the firing (with the facts it read), the run and the task (with its
record id); `csauto rules replay` makes the firing's decision again from what was recorded;
`csauto replay` prints the run's timeline and "deterministic" from the Temporal server, and
from an exported file; a history recorded by an older, incompatible workflow version is
reported as a divergence."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text, update
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from audit.support import PLAYBOOK, acme_falls
from csautomation.cli import app
from csautomation.store.ledger import Query, entries
from csautomation.store.outbox import mark_all_evaluated, runs
from csautomation.store.repo import Store, local_tasks
from csautomation.store.tables import RuleVersionRow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput, PlaybookResult
from factories import ROOT, playbook_store
from playbook_support import (
    GRACEFUL_SHUTDOWN,
    PLAYBOOKS,
    make_worker,
    playbook_input,
    until,
)
from shared_temporal import own_namespace


@dataclass
class Run:
    store: Store
    url: str
    workflow_id: str
    address: str
    namespace: str


@pytest_asyncio.fixture(scope="module")
async def done(
    env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Run]:
    """One signal through the pipeline and a worker, its playbook run to the end."""
    folder = tmp_path_factory.mktemp("audit")
    store = playbook_store(folder)
    mark_all_evaluated(store)
    queue = f"audit-{uuid.uuid4()}"
    async with own_namespace(env) as client:  # the module's: its tests read the run back
        p, runtime = acme_falls(store, client, queue, "audit:acme:today")
        async with make_worker(client, store, queue):
            await p.run_once()
            [wf_id] = [r.workflow_id for r in runs(store) if r.workflow_id.startswith(PLAYBOOK)]
            await until(lambda: bool(local_tasks(store, wf_id)), "the CSM's task")
            # the task is stored inside the activity; the history records its completion
            # a moment later, and the replay tests read that history
            handle = client.get_workflow_handle(wf_id)
            async with asyncio.timeout(30):
                while not any(
                    step.step_id == "outreach" and step.ended_at is not None
                    for step in await handle.query(PlaybookWorkflow.step_history)
                ):
                    await asyncio.sleep(0.02)
            for r in runs(store):  # the rest of the playbook is other tests' business
                await client.get_workflow_handle(r.workflow_id).terminate("audit test over")
        runtime.close()
        address = client.service_client.config.target_host
        yield Run(store, f"sqlite:///{folder}/csauto.db", wf_id, address, client.namespace)
    store.engine.dispose()


async def csauto(*args: str, namespace: str = "default") -> tuple[int, str]:
    """The real command, in its own process (it runs its own event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "csautomation",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "CSAUTO_TEMPORAL_NAMESPACE": namespace},
    )
    stdout, _ = await proc.communicate()
    return proc.returncode or 0, stdout.decode()


@pytest.mark.asyncio
async def test_the_ledger_holds_the_firing_the_run_and_the_task(done: Run) -> None:
    found = entries(done.store, Query(account_id="ACME"))
    kinds = [e.kind for e in found]
    fired = next(e for e in found if e.kind == "rule_fired" and e.rule_id == "usage-decline")
    facts = fired.detail["explain"]["facts"]
    assert facts["usage.logins_change_30d_pct"] <= -30  # the fact that made it fire
    assert fired.rule_version and fired.firing_id is not None
    started = next(
        e for e in found if e.workflow_id == done.workflow_id and e.kind == "workflow_started"
    )
    assert started.firing_id == fired.firing_id
    assert started.playbook_version == PLAYBOOKS["usage-recovery"].version
    task = next(e for e in found if e.kind == "create_task" and e.workflow_id == done.workflow_id)
    [row] = [
        t for t in local_tasks(done.store) if t.workflow_id == done.workflow_id and t.kind == "task"
    ]
    assert task.record_id == str(row.id) and task.connector == "local"
    # the CLI lists the same, and exports it as JSON lines
    result = CliRunner().invoke(
        app,
        [
            "audit",
            "--account",
            "ACME",
            "--since",
            "3650d",
            "--jsonl",
            "-",
            "--database-url",
            done.url,
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["kind"] for line in lines] == kinds


def test_the_ledger_is_append_only(done: Run) -> None:
    with pytest.raises(Exception, match="append-only"), done.store.engine.begin() as conn:
        conn.execute(text("UPDATE decision_ledger SET record_id = 'forged'"))
    with pytest.raises(Exception, match="append-only"), done.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM decision_ledger"))


def test_a_firing_replays_to_the_same_decision(done: Run) -> None:
    fired = next(
        e
        for e in entries(done.store, Query(account_id="ACME", kinds=["rule_fired"]))
        if e.rule_id == "usage-decline"
    )
    result = CliRunner().invoke(
        app, ["rules", "replay", str(fired.firing_id), "--database-url", done.url]
    )
    assert result.exit_code == 0, result.output
    assert "the same decision, condition by condition" in result.output
    assert "usage.logins_change_30d_pct" in result.output


def test_a_tampered_rule_version_is_caught(done: Run, tmp_path: Path) -> None:
    fired = next(
        e
        for e in entries(done.store, Query(account_id="ACME", kinds=["rule_fired"]))
        if e.rule_id == "usage-decline"
    )
    # a copy of the database whose kept rule was edited behind the ledger's back
    copy = tmp_path / "copy.db"
    with done.store.engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM INTO '{copy}'")
    forged = Store(f"sqlite:///{copy}")
    with forged.session() as s:
        row = s.get(RuleVersionRow, fired.rule_version)
        assert row is not None
        source = json.loads(json.dumps(row.source).replace("-30", "-90").replace("30.0", "90.0"))
        s.exec(
            update(RuleVersionRow)
            .where(RuleVersionRow.version == row.version)
            .values(source=source)
        )  # type: ignore[call-overload]
        s.commit()
    result = CliRunner().invoke(
        app, ["rules", "replay", str(fired.firing_id), "--database-url", f"sqlite:///{copy}"]
    )
    assert result.exit_code == 1, result.output
    assert "DIFFERENT" in result.output


@pytest.mark.asyncio
async def test_replay_prints_the_timeline_and_deterministic(done: Run, tmp_path: Path) -> None:
    code, output = await csauto(
        "replay",
        done.workflow_id,
        "--temporal-address",
        done.address,
        "--database-url",
        done.url,
        namespace=done.namespace,
    )
    assert code == 0, output
    assert "playbook usage-recovery" in output and "started by rule usage-decline" in output
    assert "create_task completed" in output and "in local: created" in output
    assert "ledger: started by firing" in output
    assert "deterministic: the current code replays all" in output

    # exported, then replayed offline from the file
    code, output = await csauto(
        "history",
        "export",
        done.workflow_id,
        "--out",
        str(tmp_path),
        "--temporal-address",
        done.address,
        namespace=done.namespace,
    )
    assert code == 0, output
    [exported] = list(tmp_path.glob("*.json"))
    code, output = await csauto("replay", "--file", str(exported), "--database-url", done.url)
    assert code == 0, output
    assert f"PlaybookWorkflow {done.workflow_id}" in output  # its id travels in the file
    assert "ledger: started by firing" in output
    assert "deterministic: the current code replays all" in output


@workflow.defn(name="PlaybookWorkflow")
class OlderPlaybookWorkflow:
    """An older release's playbook workflow: it paused a second before its first step. Its
    histories cannot replay on today's code, which reads the account's facts first."""

    @workflow.run
    async def run(self, inp: PlaybookInput) -> PlaybookResult:  # noqa: ARG002
        await workflow.sleep(timedelta(seconds=1))
        return PlaybookResult(outcome="done", steps=[])


@pytest.mark.asyncio
async def test_an_older_incompatible_history_is_reported_clearly(
    client: Client, tmp_path: Path
) -> None:
    queue = f"older-{uuid.uuid4()}"
    # unsandboxed: the sandbox would re-import this test module by name
    older = Worker(
        client,
        task_queue=queue,
        workflows=[OlderPlaybookWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )
    async with older:
        handle = await client.start_workflow(
            "PlaybookWorkflow", playbook_input(), id=f"older-{uuid.uuid4()}", task_queue=queue
        )
        await handle.result()
        history = await handle.fetch_history()
    path = tmp_path / "older.json"
    path.write_text(history.to_json())
    code, output = await csauto("replay", "--file", str(path))
    assert code == 1, output
    assert "waited 1s" in output  # the timeline is still read
    assert "NOT deterministic" in output and "Diverges at event" in output


def test_a_bad_history_file_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"events": [')
    result = CliRunner().invoke(app, ["replay", "--file", str(bad)])
    assert result.exit_code == 2  # could not replay
    assert f"{bad}:1:" in result.output and "not JSON" in result.output
    assert "Traceback" not in result.output
