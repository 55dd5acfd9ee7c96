"""The review API's one capability on running escalations: signal a person's action to
the escalation workflow and ask it for its state.

The API depends on the `EscalationActions` protocol only; `TemporalActions` is the real
one, and tests pass a fake that records its calls.
"""

from __future__ import annotations

from typing import Protocol

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from csautomation.api.errors import EscalationClosedError, EscalationNotFoundError
from csautomation.errors import ServiceUnavailableError
from csautomation.workflows.types import EscalationAction, EscalationState

# the escalation workflow's signal and query names (workflows/escalation.py)
SIGNALS = ("acknowledge", "resolve", "reassign", "snooze")
STATE_QUERY = "state"
_UNAVAILABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)


class EscalationActions(Protocol):
    """Raises `EscalationNotFoundError` for an unknown workflow, `EscalationClosedError`
    for one that has closed, `ServiceUnavailableError` when the service does not answer."""

    async def acknowledge(self, workflow_id: str, action: EscalationAction) -> None: ...

    async def resolve(self, workflow_id: str, action: EscalationAction) -> None: ...

    async def reassign(self, workflow_id: str, action: EscalationAction) -> None: ...

    async def snooze(self, workflow_id: str, action: EscalationAction) -> None: ...

    async def state(self, workflow_id: str) -> EscalationState: ...


class TemporalActions:
    """Signals and queries the escalation workflow by id (its latest run)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def acknowledge(self, workflow_id: str, action: EscalationAction) -> None:
        await self._signal(workflow_id, "acknowledge", action)

    async def resolve(self, workflow_id: str, action: EscalationAction) -> None:
        await self._signal(workflow_id, "resolve", action)

    async def reassign(self, workflow_id: str, action: EscalationAction) -> None:
        await self._signal(workflow_id, "reassign", action)

    async def snooze(self, workflow_id: str, action: EscalationAction) -> None:
        await self._signal(workflow_id, "snooze", action)

    async def state(self, workflow_id: str) -> EscalationState:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            state = await handle.query(STATE_QUERY, result_type=EscalationState)
        except RPCError as exc:
            raise await self._translate(handle, exc) from exc
        except RuntimeError as exc:  # a lazy client that cannot connect
            raise ServiceUnavailableError(f"Temporal does not answer: {exc}") from exc
        if state is None:  # queried before its plan was made: moments after it started
            raise EscalationNotFoundError(f"escalation {workflow_id} has not opened yet")
        assert isinstance(state, EscalationState)
        return state

    async def _signal(self, workflow_id: str, name: str, action: EscalationAction) -> None:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            await handle.signal(name, action)
        except RPCError as exc:
            raise await self._translate(handle, exc) from exc
        except RuntimeError as exc:  # a lazy client that cannot connect
            raise ServiceUnavailableError(f"Temporal does not answer: {exc}") from exc

    async def _translate(self, handle: WorkflowHandle[object, object], exc: RPCError) -> Exception:
        """NOT_FOUND means either that no such workflow exists or that it has closed; the
        workflow's description tells which."""
        if exc.status in _UNAVAILABLE:
            return ServiceUnavailableError(f"Temporal does not answer: {exc.message}")
        if exc.status != RPCStatusCode.NOT_FOUND:
            return exc
        try:
            described = await handle.describe()
        except RPCError as again:
            if again.status == RPCStatusCode.NOT_FOUND:
                return EscalationNotFoundError(f"no escalation workflow {handle.id}")
            return exc
        if described.status not in (None, WorkflowExecutionStatus.RUNNING):
            status = described.status.name.lower().replace("_", " ")
            return EscalationClosedError(f"escalation {handle.id} has closed ({status})")
        return exc
