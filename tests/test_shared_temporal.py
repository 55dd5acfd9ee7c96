"""The session's one test server stays usable whatever a test leaves behind
(tests/shared_temporal.py): workflows left with tasks nobody will take (started with no
worker, an activity starved, a signal after the worker stopped), terminated while an
activity ran, or left in the default namespace by a test on `env.client`, do not hold the
shared clock still once `own_namespace` has cleaned up."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from playbook_support import GRACEFUL_SHUTDOWN
from shared_temporal import own_namespace

running, release = threading.Event(), threading.Event()


@activity.defn
def blocked() -> None:
    running.set()
    release.wait(30)


@workflow.defn
class Waits:
    """A signal, then an activity on the queue it is given, then a week's timer."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, queue: str) -> None:
        await workflow.wait_condition(lambda: self.go)
        await workflow.execute_activity(
            blocked, task_queue=queue, start_to_close_timeout=timedelta(minutes=5)
        )
        await workflow.sleep(timedelta(days=7))

    @workflow.signal
    def start(self) -> None:
        self.go = True


def worker(client: Client, queue: str, **kw: Any) -> Worker:
    # unsandboxed: the sandbox would re-import this test module by name
    return Worker(
        client,
        task_queue=queue,
        workflows=[Waits],
        workflow_runner=UnsandboxedWorkflowRunner(),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **kw,
    )


async def start(client: Client, queue: str, activity_queue: str) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        Waits.run, activity_queue, id=f"w-{uuid.uuid4()}", task_queue=queue
    )


async def never_run(client: Client, queue: str) -> WorkflowHandle[Any, Any]:
    return await start(client, queue, queue)


async def starved(client: Client, queue: str) -> WorkflowHandle[Any, Any]:
    async with worker(client, queue):
        handle = await start(client, queue, "nobody-polls")
        await handle.signal(Waits.start)
        deadline = asyncio.get_running_loop().time() + 30
        scheduled = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        while not any(
            a.state == scheduled
            for a in (await handle.describe()).raw_description.pending_activities
        ):
            assert asyncio.get_running_loop().time() < deadline, "the activity never scheduled"
            await asyncio.sleep(0.02)
    return handle


async def signalled_after_its_worker_stopped(
    client: Client, queue: str
) -> WorkflowHandle[Any, Any]:
    async with worker(client, queue):
        handle = await start(client, queue, queue)
        await handle.query("__stack_trace")  # answered once its first task has run
    await handle.signal(Waits.start)
    return handle


async def terminated_while_its_activity_ran(client: Client, queue: str) -> WorkflowHandle[Any, Any]:
    running.clear()
    release.clear()
    with ThreadPoolExecutor(1) as executor:
        async with worker(client, queue, activities=[blocked], activity_executor=executor):
            handle = await start(client, queue, queue)
            await handle.signal(Waits.start)
            assert await asyncio.to_thread(running.wait, 30)
            await handle.terminate("mid-activity")
            release.set()
    return handle


@pytest.mark.parametrize(
    "leave",
    [never_run, starved, signalled_after_its_worker_stopped, terminated_while_its_activity_ran],
    ids=lambda f: f.__name__,
)
@pytest.mark.asyncio
async def test_what_a_test_leaves_does_not_hold_the_clock(
    env: WorkflowEnvironment,
    leave: Callable[[Client, str], Awaitable[WorkflowHandle[Any, Any]]],
) -> None:
    async with own_namespace(env) as client:
        handle = await leave(client, f"q-{uuid.uuid4()}")
    # own_namespace proved the clock free on exit; a month passes at once as well
    await asyncio.wait_for(env.sleep(timedelta(days=30)), 10)
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


@pytest.mark.asyncio
async def test_what_a_test_leaves_in_the_default_namespace_is_ended_before_the_next(
    env: WorkflowEnvironment,
) -> None:
    handle = await never_run(env.client, f"q-{uuid.uuid4()}")
    async with own_namespace(env):
        await asyncio.wait_for(env.sleep(timedelta(days=30)), 10)
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
