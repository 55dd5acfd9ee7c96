"""Committed histories of every shipped playbook replay against the current workflow code.

A code change that alters the command sequence of a recorded run fails here. Re-record
(tests/workflows/record_histories.py) only for a deliberate, versioned change.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from csautomation.runtime.converter import data_converter
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput, PlaybookResult
from playbook_support import HISTORIES, PLAYBOOKS, RECORDED_ACCOUNT

# each version's recordings: before escalations were workflows of their own (the stub
# child), and since (the escalate step opens a top-level escalation)
VERSIONS = (HISTORIES, HISTORIES / "top-level-escalation")


def histories() -> list[WorkflowHistory]:
    return [
        WorkflowHistory.from_json(
            f"playbook:recorded:{RECORDED_ACCOUNT.get(p.stem, 'ACME')}:{p.stem}", p.read_text()
        )
        for folder in VERSIONS
        for p in sorted(folder.glob("*.json"))
    ]


@pytest.mark.parametrize("folder", VERSIONS, ids=lambda f: f.name)
def test_every_shipped_playbook_has_a_history(folder: Path) -> None:
    assert {p.stem for p in folder.glob("*.json")} == set(PLAYBOOKS)


@pytest.mark.asyncio
@pytest.mark.parametrize("history", histories(), ids=lambda h: h.workflow_id)
async def test_history_replays_deterministically(history: WorkflowHistory) -> None:
    replayer = Replayer(
        workflows=[PlaybookWorkflow, EscalationWorkflow], data_converter=data_converter
    )
    await replayer.replay_workflow(history)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["before-incomplete", "incomplete"])
async def test_a_dead_lettered_run_replays(name: str) -> None:
    """A run whose action was dead-lettered (tests/workflows/record_dead_letter_history.py):
    recorded before runs like it ended "incomplete" (outcome "done") and since."""
    path = HISTORIES / "dead-letter" / f"{name}.json"
    history = WorkflowHistory.from_json("playbook:recorded:ACME:dead-letter", path.read_text())
    replayer = Replayer(
        workflows=[PlaybookWorkflow, EscalationWorkflow], data_converter=data_converter
    )
    await replayer.replay_workflow(history)


@workflow.defn(name="PlaybookWorkflow")
class ReorderedPlaybookWorkflow:
    """A careless edit: a timer before the first step changes the command sequence."""

    @workflow.run
    async def run(self, inp: PlaybookInput) -> PlaybookResult:  # noqa: ARG002
        await workflow.sleep(timedelta(minutes=5))
        return PlaybookResult(outcome="changed", steps=[])


@pytest.mark.asyncio
async def test_a_non_deterministic_change_is_caught() -> None:
    # unsandboxed: the sandbox would re-import this test module by name
    replayer = Replayer(
        workflows=[ReorderedPlaybookWorkflow, EscalationWorkflow],
        data_converter=data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    history = next(h for h in histories() if h.workflow_id.endswith("usage-recovery"))
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
