"""The session's one Temporal test server (time skipping), shared safely between tests.

Each test works in a namespace of its own (`own_namespace`, the `client` fixture):
workflow ids are deterministic and a closed one cannot start again, and the priority
queues have fixed names, so in a namespace of its own a test meets neither another test's
runs nor their tasks.

The clock is one for all, and the test server skips time only while no workflow task or
activity attempt is outstanding: it takes a lock for each when it is scheduled and gives it
back when the task completes. A workflow left running wakes up in a later test's time skip
with no worker to take its task, and holds the clock still. One terminated while a task of
it was outstanding (started with no worker, an activity starved or in flight when its
worker stopped) holds it for good: after a termination the task never completes. So every
client here keeps a ledger: the workflows started through it, terminated when its test
ends, and after each termination through it the locks the terminated workflow still held
are given back. The end of each namespace proves the clock free.

Tests that use `env.client` (the default namespace) are kept by the same ledger; what they
leave is ended before and after each test that takes a `client`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.testservice.v1 import UnlockTimeSkippingRequest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    TerminateWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from csautomation.runtime.converter import data_converter
from csautomation.runtime.server import STARTUP_TIMEOUT, test_server_path

# a free clock skips a minute at once: this long means it is held
CLOCK_CHECK_SECONDS = 10


@asynccontextmanager
async def shared_test_server() -> AsyncIterator[WorkflowEnvironment]:
    """The test server, its client (`env.client`, the default namespace) kept by a ledger."""
    ledger = _Ledger()
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(),
        test_server_startup_timeout=STARTUP_TIMEOUT,
        data_converter=data_converter,
        interceptors=[ledger],
    ) as env:
        ledger.client = env.client
        yield env


@asynccontextmanager
async def own_namespace(env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """A client of a namespace of its own on `env`'s server. On exit every workflow
    started through it (by the test, a pipeline, or an activity of a worker built on it)
    that still runs is terminated, and the server's clock is proved free."""
    config = env.client.config()
    home = next((i for i in config["interceptors"] if isinstance(i, _Ledger)), None)
    others = [i for i in config["interceptors"] if not isinstance(i, _Ledger)]
    ledger = _Ledger()
    namespace = f"test-{uuid.uuid4().hex[:16]}"
    client = Client(**{**config, "namespace": namespace, "interceptors": [*others, ledger]})
    ledger.client = client
    if home is not None:
        await home.end_left_running()  # what a test before left in the default namespace
    try:
        yield client
    finally:
        await ledger.end_left_running()
        if home is not None:
            await home.end_left_running()
        try:
            await asyncio.wait_for(env.sleep(timedelta(minutes=1)), CLOCK_CHECK_SECONDS)
        except TimeoutError:
            raise AssertionError(
                f"the test server's clock is still locked after namespace {namespace} was "
                "cleaned up: a task outstanding in a workflow that no kept client started "
                "or terminated holds it"
            ) from None


class _Ledger(Interceptor):
    """The workflows started through a client (the test server cannot list them), and
    after each termination through it, the time-skipping locks given back."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.client: Client | None = None

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _LedgerCalls(next, self)

    async def end_left_running(self) -> None:
        assert self.client is not None
        for workflow_id in sorted(self.started):
            try:
                await self.client.get_workflow_handle(workflow_id).terminate("left running")
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:  # closed, or never started
                    raise
        self.started.clear()


class _LedgerCalls(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, ledger: _Ledger) -> None:
        super().__init__(next)
        self.ledger = ledger

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        self.ledger.started.add(input.id)  # before the call: a start that timed out may have run
        return await super().start_workflow(input)

    async def terminate_workflow(self, input: TerminateWorkflowInput) -> None:
        await super().terminate_workflow(input)
        client = self.ledger.client
        assert client is not None
        handle = client.get_workflow_handle(input.id, run_id=input.run_id)
        for _ in range(await _locks_left(handle)):
            await client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())


async def _locks_left(handle: WorkflowHandle[Any, Any]) -> int:
    """The locks a terminated workflow still holds: one for a workflow task scheduled or
    started, one per activity attempt scheduled or running (none for an activity waiting
    out its retry backoff)."""
    held = 0
    for act in (await handle.describe()).raw_description.pending_activities:
        started, ended = act.last_started_time, act.last_attempt_complete_time
        backing_off = act.HasField("last_attempt_complete_time") and (
            (ended.seconds, ended.nanos) >= (started.seconds, started.nanos)
        )
        if act.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED or (
            act.state in _RUNNING and not backing_off
        ):
            held += 1
    task_open = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            task_open = True
        elif event.event_type in _TASK_ENDED:
            task_open = False
    return held + task_open


_RUNNING = (
    PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
    PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED,
)
_TASK_ENDED = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)
