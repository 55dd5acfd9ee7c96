"""Issue 20: a finished demo's runs, looked at in the Temporal UI with `csauto browse` (the
demo's closing hint), resume nothing and change nothing. A real demo on a small sample,
then a real `csauto browse` process: its UI and its server list the finished runs; nothing
polls the task queues, so a workflow task that falls due stays scheduled and is never
started; SIGTERM stops it with exit 0, its copy is gone, and the data folder's files are
as the demo left them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, PendingWorkflowTaskState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from csautomation.store.outbox import runs
from csautomation.store.repo import Store
from stress import csauto

ROOT = Path(__file__).parents[2]
T = TypeVar("T")
# how long a due workflow task must stay unstarted: a polling worker takes one in ms
UNTAKEN = 2.0


@dataclass
class Browse:
    """A running `csauto browse`, its output read as it comes (never left to fill a pipe)."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def until(check: Callable[[], T | None], what: str, browse: Browse, limit: float = 120.0) -> T:
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert browse.proc.poll() is None, f"csauto browse ended early:\n{browse.output}"
        assert time.monotonic() < deadline, f"no {what} within {limit:g} s:\n{browse.output}"
        time.sleep(0.1)


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, limit: float) -> T:
    deadline = time.monotonic() + limit
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {limit:g} s"
        await asyncio.sleep(0.1)


def digests(folder: Path) -> dict[str, str]:
    """The data folder's files by content. Not data: SQLite's shared-memory index (-shm)
    and an empty write-ahead log, which a read-only reader of a WAL database opens (and
    cannot remove) as a writer would."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.endswith("-shm")
        and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `csauto demo` on 60 accounts; its hint names `csauto browse`."""
    base = tmp_path_factory.mktemp("browse")
    data = base / "demo"
    proc = subprocess.run(
        [
            *(csauto(), "demo", "--data-dir", str(data), "--accounts", "60"),
            *("--day-seconds", "0.1", "--port", "0"),
        ],
        cwd=ROOT,
        env={**os.environ, "CSAUTO_DATA_DIR": str(base), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    hint = f"To look at these runs later, without resuming them: csauto browse --data-dir {data}"
    assert hint in " ".join(proc.stdout.split())
    assert "csauto dev --data-dir" not in proc.stdout
    return data


@pytest.fixture
def browse(demo: Path, tmp_path: Path) -> Iterator[Browse]:
    """`csauto browse` on the demo's folder, its temporary files in a folder of the test's
    own; stopped with SIGTERM, which it must survive with exit 0, leaving no copy behind."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [csauto(), "browse", "--data-dir", str(demo), "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch), "COLUMNS": "300"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Browse(proc)
    reader = threading.Thread(target=running.read, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 0, running.output
    assert list(scratch.iterdir()) == [], "the copy outlived the command"


@pytest.mark.slow
@pytest.mark.sqlite_only  # the demo keeps its store in its data folder, on SQLite
def test_browsing_a_finished_demo_resumes_nothing_and_changes_nothing(
    demo: Path, browse: Browse
) -> None:
    kept = digests(demo)
    store = Store.existing(f"sqlite:///{demo}/csauto.db")  # read-only
    all_runs = runs(store)
    store.engine.dispose()
    done = next(r.workflow_id for r in all_runs if r.kind == "playbook" and r.outcome)
    waiting = [r.workflow_id for r in all_runs if r.kind == "escalation" and not r.outcome]
    assert len(waiting) >= 2, "the demo leaves escalations open for the managers"

    pattern = r"^Temporal UI: (http://\S+)/namespaces/default/workflows$"
    ui = until(lambda: re.search(pattern, browse.output, re.M), "UI address", browse)[1]
    address = until(
        lambda: re.search(r"Temporal at (127\.0\.0\.1:\d+)", browse.output), "address", browse
    )[1]
    asyncio.run(look(ui, address, done, waiting))
    assert browse.proc.poll() is None  # still serving until it is told to stop
    assert digests(demo) == kept


async def look(ui: str, address: str, done: str, waiting: list[str]) -> None:
    client = await Client.connect(address)
    closed = {wf.id async for wf in client.list_workflows("ExecutionStatus='Completed'")}
    assert done in closed
    running = {wf.id async for wf in client.list_workflows("ExecutionStatus='Running'")}
    assert set(waiting) <= running

    async def ui_lists() -> bool:  # the UI's HTTP API, once it has reached the server
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(
                f"{ui}/api/v1/namespaces/default/workflows",
                params={"query": f"WorkflowId='{done}'"},
            )
        executions = response.json().get("executions") if response.status_code == 200 else None
        return bool(executions) and executions[0]["execution"]["workflowId"] == done

    await eventually(ui_lists, "finished run in the UI's API", 60)

    probe, other = (client.get_workflow_handle(w) for w in waiting[:2])
    queue = (await probe.describe()).task_queue
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    assert list(described.pollers) == []  # no worker asks for work
    before = (await probe.fetch_history()).events
    other_length = len((await other.fetch_history()).events)

    # a workflow task falls due (a signal; on the copy, so harmless): a worker would take
    # it at once; here it stays scheduled, never started
    await probe.signal("browse-probe")

    async def waited() -> bool:
        pending = (await probe.describe()).raw_description.pending_workflow_task
        assert pending.state != PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
        scheduled = pending.scheduled_time.seconds + pending.scheduled_time.nanos / 1e9
        return (
            pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
            and time.time() - scheduled >= UNTAKEN
        )

    await eventually(waited, f"workflow task left unstarted for {UNTAKEN:g} s", 60)
    after = (await probe.fetch_history()).events
    assert after[: len(before)] == before
    added = [e.event_type for e in after[len(before) :]]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED in added
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED not in added, added
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in added, added
    assert len((await other.fetch_history()).events) == other_length
