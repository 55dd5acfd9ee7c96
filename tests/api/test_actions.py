"""`TemporalActions` against the time-skipping server, with a stand-in workflow that has
the escalation workflow's signals and `state` query: actions arrive as signals carrying the
`EscalationAction`, the state comes back typed, and an unknown or closed workflow becomes
404 or 409."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from csautomation.api.actions import TemporalActions
from csautomation.api.errors import EscalationClosedError, EscalationNotFoundError
from csautomation.workflows.types import EscalationAction, EscalationEvent, EscalationState
from playbook_support import GRACEFUL_SHUTDOWN
from shared_temporal import own_namespace


@workflow.defn(name="StandInEscalation")
class StandInEscalation:
    def __init__(self) -> None:
        self._state = EscalationState(
            workflow_id=workflow.info().workflow_id,
            account_id="acme",
            severity="high",
            team="east",
            holder="cara",
            opened_at=workflow.now(),
        )

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._state.status == "resolved")
        return "resolved"

    def _event(self, kind: str, action: EscalationAction) -> None:
        self._state.timeline.append(
            EscalationEvent(at=workflow.now(), kind=kind, by=action.by, detail=action.note)
        )

    @workflow.signal
    def acknowledge(self, action: EscalationAction) -> None:
        self._state.status, self._state.holder = "acknowledged", action.by
        self._event("acknowledged", action)

    @workflow.signal
    def reassign(self, action: EscalationAction) -> None:
        self._state.holder = action.to
        self._event("reassigned", action)

    @workflow.signal
    def snooze(self, action: EscalationAction) -> None:
        self._state.status, self._state.snoozed_until = "snoozed", action.until
        self._event("snoozed", action)

    @workflow.signal
    def resolve(self, action: EscalationAction) -> None:
        self._state.status, self._state.resolution = "resolved", action.note
        self._event("resolved", action)

    @workflow.query
    def state(self) -> EscalationState:
        return self._state


@pytest.mark.asyncio
async def test_signals_and_state(env: WorkflowEnvironment) -> None:
    queue = f"escalations-{uuid.uuid4()}"
    # not the `client` fixture: under tests/api that is the review app's TestClient
    async with (
        own_namespace(env) as client,
        Worker(
            client,
            task_queue=queue,
            workflows=[StandInEscalation],
            workflow_runner=UnsandboxedWorkflowRunner(),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        ),
    ):
        actions = TemporalActions(client)
        wid = f"escalation:test:acme:{uuid.uuid4()}"
        handle = await client.start_workflow(StandInEscalation.run, id=wid, task_queue=queue)
        state = await actions.state(wid)
        assert (state.status, state.holder) == ("open", "cara")

        await actions.acknowledge(wid, EscalationAction(by="mia", note="on it"))
        state = await actions.state(wid)
        assert (state.status, state.holder) == ("acknowledged", "mia")

        await actions.reassign(wid, EscalationAction(by="mia", to="cara"))
        until = state.opened_at + timedelta(days=1)
        await actions.snooze(wid, EscalationAction(by="mia", until=until))
        state = await actions.state(wid)
        assert (state.status, state.holder, state.snoozed_until) == ("snoozed", "cara", until)

        await actions.resolve(wid, EscalationAction(by="mia", note="fixed"))
        assert await handle.result() == "resolved"
        assert [(e.kind, e.by) for e in state.timeline] == [
            ("acknowledged", "mia"),
            ("reassigned", "mia"),
            ("snoozed", "mia"),
        ]

        # closed: an action is a conflict; the state can still be read
        with pytest.raises(EscalationClosedError, match="has closed"):
            await actions.acknowledge(wid, EscalationAction(by="mia"))
        assert (await actions.state(wid)).resolution == "fixed"

        # never started
        with pytest.raises(EscalationNotFoundError, match="no escalation workflow"):
            await actions.acknowledge("escalation:none", EscalationAction(by="mia"))
        with pytest.raises(EscalationNotFoundError):
            await actions.state("escalation:none")
