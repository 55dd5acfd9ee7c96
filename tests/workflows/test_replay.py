"""Committed histories of every shipped playbook replay against the current workflow code.

A code change that alters the command sequence of a recorded run fails here. Re-record
(tests/workflows/record_histories.py) only for a deliberate, versioned change.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from csautomation.workflows.playbook import EscalationWorkflow, PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput, PlaybookResult
from playbook_support import HISTORIES, PLAYBOOKS, RECORDED_ACCOUNT


def histories() -> list[WorkflowHistory]:
    return [
        WorkflowHistory.from_json(
            f"playbook:recorded:{RECORDED_ACCOUNT.get(p.stem, 'ACME')}:{p.stem}", p.read_text()
        )
        for p in sorted(HISTORIES.glob("*.json"))
    ]


def test_every_shipped_playbook_has_a_history() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} == set(PLAYBOOKS)


@pytest.mark.asyncio
@pytest.mark.parametrize("history", histories(), ids=lambda h: h.workflow_id)
async def test_history_replays_deterministically(history: WorkflowHistory) -> None:
    replayer = Replayer(
        workflows=[PlaybookWorkflow, EscalationWorkflow], data_converter=pydantic_data_converter
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
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    history = next(h for h in histories() if h.workflow_id.endswith("usage-recovery"))
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
