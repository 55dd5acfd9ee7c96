"""Replay that compares (issue 20): `csauto replay` of a recorded run says whether the
current code and files would do the same, and where not, says so in the playbook's words.

Two runs started by the real pipeline, run to their end by a worker: usage-decline's
usage-recovery playbook, fired by a signal, and red-health's own create_task (a one-step
rule task), from a firing in the outbox. Their histories, exported with their workflow ids,
are replayed against the shipped files (same, exit 0), edited copies (the version
difference step by step, exit 1), changed workflow code (an activity's input; a command:
named by step) and broken files (exit 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner
from typer.testing import CliRunner, Result

from audit.support import acme_falls
from csautomation.audit.compare import Definitions, compare
from csautomation.audit.replay import file_name, read_history
from csautomation.cli import app
from csautomation.pipeline import task_playbook
from csautomation.playbooks.spec import Playbook, Step
from csautomation.rules.loader import load_rules
from csautomation.rules.spec import CreateTask, Priority
from csautomation.store.ledger import playbook_source
from csautomation.store.outbox import mark_all_evaluated, runs
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput, PlaybookResult
from factories import ROOT, TODAY, playbook_store
from playbook_support import PLAYBOOKS, end_escalations, make_worker
from shared_temporal import own_namespace

SHIPPED = {
    "CSAUTO_PLAYBOOKS_PATH": str(ROOT / "workflows"),
    "CSAUTO_RULES_PATH": str(ROOT / "rules"),
}


@dataclass
class Recorded:
    store: Store
    folder: Path
    usage: Path  # usage-recovery's exported history
    task: Path  # red-health's rule task's
    usage_id: str
    task_id: str
    address: str
    namespace: str


@pytest_asyncio.fixture(scope="module")
async def recorded(
    env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Recorded]:
    folder = tmp_path_factory.mktemp("compare")
    store = playbook_store(folder)
    mark_all_evaluated(store)
    queue = f"compare-{uuid.uuid4()}"
    async with own_namespace(env) as client:
        p, runtime = acme_falls(store, client, queue, "compare:acme:today")
        # and red-health's own create_task, fired for ACME: a firing in the outbox
        [red] = [r for r in load_rules([ROOT / "rules"]).rules if r.id == "red-health"]
        with store.session() as s:
            s.add(
                RuleFiringRow(
                    rule_id=red.id,
                    rule_version=red.version,
                    account_id="ACME",
                    window=1,
                    priority="high",
                    fired_at=datetime.combine(TODAY, time(18), tzinfo=UTC),
                    explain={},
                    actions=[a.model_dump(mode="json", by_alias=True) for a in red.rule.actions],
                )
            )
            s.commit()
        paths = {}
        async with make_worker(client, store, queue):
            await p.run_once()
            # handles the pipeline started do not skip time by themselves, as the test
            # environment's own do: skip past the playbook's longest wait
            await env.sleep(timedelta(days=30))
            started = {r.workflow_id.split(":")[1]: r.workflow_id for r in runs(store)}
            for rule in ("usage-decline", "red-health"):
                handle = client.get_workflow_handle(started[rule], result_type=PlaybookResult)
                result = await handle.result()
                await end_escalations(client, started[rule], result)
                code, output = await export(client, started[rule], folder / "out")
                assert code == 0, output
                paths[rule] = folder / "out" / file_name(started[rule])
        runtime.close()
        yield Recorded(
            store,
            folder,
            paths["usage-decline"],
            paths["red-health"],
            started["usage-decline"],
            started["red-health"],
            client.service_client.config.target_host,
            client.namespace,
        )
    store.engine.dispose()


async def export(client: Client, workflow_id: str, out: Path) -> tuple[int, str]:
    """`csauto history export`, in its own process (it runs its own event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "csautomation",
        *("history", "export", workflow_id, "--out", str(out)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            "CSAUTO_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "CSAUTO_TEMPORAL_NAMESPACE": client.namespace,
        },
    )
    stdout, _ = await proc.communicate()
    return proc.returncode or 0, stdout.decode()


def replay(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["replay", *args], env={**SHIPPED, **(env or {})})


def edited_workflows(tmp_path: Path, edit: Any) -> dict[str, str]:
    """A copy of the shipped workflows/ whose usage-recovery playbook `edit` changed."""
    copy = tmp_path / "workflows"
    shutil.copytree(ROOT / "workflows", copy)
    path = copy / "usage-recovery.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data["playbook"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return {"CSAUTO_PLAYBOOKS_PATH": str(copy)}


def test_a_run_replays_the_same_on_the_files_it_ran(recorded: Recorded) -> None:
    version = PLAYBOOKS["usage-recovery"].version
    result = replay("--file", str(recorded.usage))
    assert result.exit_code == 0, result.output
    assert "deterministic: the current code replays all" in result.output
    assert (
        f"playbook usage-recovery: the run executed version {version}, the version "
        f"{ROOT / 'workflows'}/ holds now" in result.output
    )
    # the outreach task and the escalation: what the run sent, the current code would send
    assert "activities: 2 compared with the recorded ones, the same names and inputs" in (
        result.output
    )
    assert result.output.rstrip().endswith("verdict: same (exit 0)")

    # a rule's own task: its one-step playbook is compared with the rule in rules/
    result = replay("--file", str(recorded.task))
    assert result.exit_code == 0, result.output
    assert f"the version {ROOT / 'rules'}/ holds now" in result.output


def test_an_edited_playbook_diverges_step_by_step(recorded: Recorded, tmp_path: Path) -> None:
    def edit(book: dict[str, Any]) -> None:
        steps = book["steps"]
        steps.insert(1, {"id": "nudge", "wait": "1d"})
        steps[:] = [s for s in steps if s["id"] != "give-it-time"]
        steps[0]["create_task"]["subject"] = "Call {{ account.name }} today"

    ran = PLAYBOOKS["usage-recovery"]
    result = replay("--file", str(recorded.usage), env=edited_workflows(tmp_path, edit))
    assert result.exit_code == 1, result.output
    now = f"{tmp_path / 'workflows'}/ now holds version"
    assert f"the run executed version {ran.version}; {now}" in result.output
    assert "step 'nudge' (wait) added, after 'outreach'" in result.output
    assert "step 'give-it-time' (wait) removed" in result.output
    subject = ran.steps[0].create_task.subject  # type: ignore[union-attr]
    assert (
        f"step 'outreach' (create_task): subject was '{subject}', now "
        "'Call {{ account.name }} today'" in result.output
    )
    assert "verdict: DIVERGES (exit 1): 3 difference(s)" in result.output

    # the same, for tooling
    result = replay(
        "--file", str(recorded.usage), "--json", env=edited_workflows(tmp_path / "j", edit)
    )
    assert result.exit_code == 1
    found = json.loads(result.output)
    assert found["verdict"] == "diverges" and found["exit_code"] == 1
    assert found["playbook"]["run"] == ran.version and found["deterministic"] is True
    assert {(d["kind"], d["step_id"], d["field"]) for d in found["differences"]} == {
        ("step_added", "nudge", ""),
        ("step_removed", "give-it-time", ""),
        ("step_changed", "outreach", "subject"),
    }

    # the code alone (a deploy's check): file edits never reach a running run
    edited = edited_workflows(tmp_path / "c", edit)
    assert replay("--file", str(recorded.usage), "--code-only", env=edited).exit_code == 0

    # restored: the same again
    assert replay("--file", str(recorded.usage)).exit_code == 0


def test_a_playbook_gone_from_the_files_diverges(recorded: Recorded, tmp_path: Path) -> None:
    copy = tmp_path / "workflows"
    shutil.copytree(ROOT / "workflows", copy)
    (copy / "usage-recovery.yaml").unlink()
    result = replay("--file", str(recorded.usage), env={"CSAUTO_PLAYBOOKS_PATH": str(copy)})
    assert result.exit_code == 1, result.output
    assert f"playbook usage-recovery removed from {copy}/" in result.output


@pytest.mark.asyncio
async def test_an_activity_input_change_is_named_by_its_step(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = read_history(recorded.usage)
    shipped = Definitions(ROOT / "workflows", ROOT / "rules")
    # unsandboxed: the sandbox would import the workflow module afresh, unpatched
    runner = UnsandboxedWorkflowRunner()
    assert (await compare(history, shipped, runner)).verdict == "same"

    original = PlaybookWorkflow._create_task

    async def louder(self: PlaybookWorkflow, inp: PlaybookInput, step: Step) -> str | None:
        task = step.create_task
        assert task is not None
        changed = task.model_copy(update={"priority": Priority.critical})
        return await original(self, inp, step.model_copy(update={"create_task": changed}))

    monkeypatch.setattr(PlaybookWorkflow, "_create_task", louder)
    found = await compare(history, shipped, runner)
    assert found.verdict == "diverges" and found.exit_code == 1
    assert found.deterministic  # the SDK's replay alone sees nothing
    [difference] = found.differences
    assert (difference.kind, difference.step_id, difference.step_kind) == (
        "input",
        "outreach",
        "create_task",
    )
    assert (difference.field, difference.before, difference.after) == (
        "priority",
        "high",
        "critical",
    )
    assert difference.message == (
        "step 'outreach' (create_task): create_task input priority was 'high', now 'critical'"
    )


@pytest.mark.asyncio
async def test_a_command_change_is_named_by_its_step(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = PlaybookWorkflow._wait_for

    async def later(self: PlaybookWorkflow, inp: PlaybookInput, step: Step) -> str | None:
        await workflow.sleep(timedelta(minutes=5))  # a timer the run never started
        return await original(self, inp, step)

    monkeypatch.setattr(PlaybookWorkflow, "_wait_for", later)
    found = await compare(
        read_history(recorded.usage),
        Definitions(ROOT / "workflows", ROOT / "rules"),
        UnsandboxedWorkflowRunner(),
    )
    assert found.verdict == "diverges" and found.deterministic is False
    [difference] = found.differences
    assert difference.kind == "nondeterministic"
    assert difference.message.startswith(
        "step 'wait-for-call' (wait_for): the current code issues different commands here"
    )
    assert difference.detail.startswith(("Diverges at event", "Divergence: "))  # the SDK's


def test_what_cannot_be_replayed_exits_2(recorded: Recorded, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(recorded.usage.read_text()[:500])
    result = replay("--file", str(corrupt))
    assert result.exit_code == 2, result.output
    assert f"verdict: could not replay (exit 2): {corrupt}:" in result.output
    assert "not JSON" in result.output and "Traceback" not in result.output

    empty = tmp_path / "empty.json"
    empty.write_text('{"events": []}')
    result = replay("--file", str(empty), "--json")
    assert result.exit_code == 2
    found = json.loads(result.output)
    assert found["verdict"] == "could not replay" and "not a workflow history" in found["problem"]

    # the playbooks it would be compared with cannot be read
    broken = tmp_path / "workflows"
    broken.mkdir()
    (broken / "usage-recovery.yaml").write_text("playbook: {id: usage-recovery}\n")
    result = replay("--file", str(recorded.usage), env={"CSAUTO_PLAYBOOKS_PATH": str(broken)})
    assert result.exit_code == 2, result.output
    assert "usage-recovery.yaml:1:" in result.output

    # no Temporal to fetch the history from
    result = replay(recorded.usage_id, "--temporal-address", "127.0.0.1:1")
    assert result.exit_code == 2, result.output
    assert "cannot reach Temporal at 127.0.0.1:1" in result.output


def test_an_exported_history_carries_its_workflow_id(recorded: Recorded, tmp_path: Path) -> None:
    data = json.loads(recorded.usage.read_text())
    assert data["workflowId"] == recorded.usage_id
    # renamed, it still knows whose history it is
    renamed = tmp_path / "some-history.json"
    shutil.copy(recorded.usage, renamed)
    assert read_history(renamed).workflow_id == recorded.usage_id
    result = replay("--file", str(renamed))
    assert result.exit_code == 0, result.output
    assert f"PlaybookWorkflow {recorded.usage_id}" in result.output
    # a file exported before histories carried their id: the id from its name
    older = tmp_path / file_name(recorded.usage_id)
    older.write_text(json.dumps({"events": data["events"]}))
    assert read_history(older).workflow_id == recorded.usage_id


def test_a_rule_task_playbook_is_kept_at_its_version(recorded: Recorded) -> None:
    [rule] = [r for r in load_rules([ROOT / "rules"]).rules if r.id == "red-health"]
    action = next(a for a in rule.rule.actions if isinstance(a, CreateTask))
    book = task_playbook("red-health", action)
    source = playbook_source(recorded.store, book.version)
    assert source is not None, "the rule task's playbook version is not kept"
    kept = Playbook.model_validate(source)
    assert kept == book and kept.id == "rule-task-red-health"
    task = kept.steps[0].create_task
    assert task is not None and task.priority == Priority.high  # as the rule says
    # and the run is the one that version describes
    history = read_history(recorded.task)
    started = history.events[0].workflow_execution_started_event_attributes
    assert book.version.encode() in started.input.payloads[0].data
