"""What the current workflow code does during a replay: each activity it schedules, with
the input it would send, and each playbook step it enters.

The SDK's replay compares commands (an activity of this type, a timer), not what goes in
them, so a change that only alters an activity's input replays cleanly; and its
divergence message names a history event, not a step. An interceptor sees every activity
the code schedules, with its arguments as the data converter writes them, and the step the
playbook is at. The workflow runs in the sandbox: what the interceptor sees leaves it
through extern functions, the SDK's way out of the sandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

__all__ = ["Scheduled", "Seen"]

_ACTIVITY = "csauto_replay_activity"
_STEP = "csauto_replay_step"


@dataclass(frozen=True)
class Scheduled:
    """An activity the current code scheduled: its name, the step it belongs to, and its
    arguments as plain JSON values."""

    activity: str
    step_id: str
    args: list[Any]


@dataclass
class Seen(Interceptor):
    """A replay's observer: pass one to the Replayer per replay and read it afterwards."""

    scheduled: list[Scheduled] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # each step entered, in order

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_ACTIVITY] = self._activity
        input.unsafe_extern_functions[_STEP] = self.steps.append
        return _Inbound

    def _activity(self, name: str, step_id: str, payloads: list[bytes]) -> None:
        decoded = pydantic_data_converter.payload_converter.from_payloads(
            [Payload.FromString(p) for p in payloads]
        )
        self.scheduled.append(Scheduled(name, step_id, list(decoded)))


def _step() -> str:
    """The playbook's current step (its `current_step` query), "" for other workflows."""
    query = getattr(workflow.instance(), "current_step", None)
    return str(query()) if callable(query) else ""


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        payloads = workflow.payload_converter().to_payloads(list(input.args))
        workflow.extern_functions()[_ACTIVITY](
            input.activity, _step(), [p.SerializeToString() for p in payloads]
        )
        return super().start_activity(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # a waiter that issues no command, so the replay's command sequence is unchanged;
        # it wakes whenever the step changes, within the workflow task that changed it
        watcher = asyncio.create_task(_watch(workflow.extern_functions()[_STEP]))
        try:
            return await super().execute_workflow(input)
        finally:
            watcher.cancel()


async def _watch(report: Any) -> NoReturn:
    last = ""
    while True:
        await workflow.wait_condition(partial(_moved, last))
        last = _step()
        if last:
            report(last)


def _moved(was: str) -> bool:
    return _step() != was
