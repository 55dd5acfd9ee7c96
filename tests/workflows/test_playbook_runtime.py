"""PlaybookWorkflow under runtime conditions, on the real time-skipping test server: a worker
restart mid-run, a goal met during a wait, weeks of waiting, and the priority workers under
a flood of blocked low-priority work."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import FixedSizeSlotSupplier, Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import QUEUES
from csautomation.runtime.worker import PrioritySlots, WorkerConfig, build_workers
from csautomation.store.escalations import get_escalation
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import ActionResult, FactsInput, RunOutcome, TaskInput
from factories import TODAY, add_playbook_accounts
from playbook_support import (
    GRACEFUL_SHUTDOWN,
    end_escalations,
    escalation_activities,
    make_worker,
    playbook_input,
)

WAIT = 30.0  # seconds: a bound for things that happen at once, never a synchronisation


def noon() -> datetime:
    return datetime.combine(TODAY, time(12), tzinfo=UTC)


@pytest.fixture
def store(store: Store) -> Store:
    return add_playbook_accounts(store)


class Probe(PlaybookActivities):
    """The real activities, plus thread-safe hooks for the test's event loop."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, load_health_model(), clock=noon)
        self.loop = asyncio.get_running_loop()
        self.lock = threading.Lock()

    def tell(self, event: asyncio.Event) -> None:
        self.loop.call_soon_threadsafe(event.set)


def worker(client: Client, acts: PlaybookActivities, queue: str, **kw: Any) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=[*acts.all(), *escalation_activities(acts).all()],
        activity_executor=ThreadPoolExecutor(8),
        # as build_workers: with the SDK's default of no time at all, one run of the control
        # test in 26 hung in the SDK's finalize_shutdown (runtime/worker.py)
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **kw,
    )


async def start(
    client: Client, queue: str, playbook: str = "usage-recovery", account: str = "ACME"
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        PlaybookWorkflow.run,
        playbook_input(playbook, account),
        id=f"playbook:test:{playbook}:{account}:{uuid.uuid4()}",
        task_queue=queue,
    )


class Counting(Probe):
    """Counts executions per worker, activity and key in a counter shared across workers."""

    def __init__(self, store: Store, calls: Counter[tuple[str, str, str]], label: str) -> None:
        super().__init__(store)
        self.calls, self.label = calls, label
        self.outreach_created = asyncio.Event()

    @activity.defn(name="create_task")
    def create_task(self, inp: TaskInput) -> ActionResult:
        result = super().create_task(inp)
        with self.lock:
            self.calls[(self.label, "create_task", inp.idempotency_key)] += 1
        if inp.step_id == "outreach":
            self.tell(self.outreach_created)
        return result

    @activity.defn(name="record_run_outcome")
    def record_run_outcome(self, inp: RunOutcome) -> None:
        super().record_run_outcome(inp)
        with self.lock:
            self.calls[(self.label, "record_run_outcome", inp.workflow_id)] += 1


@pytest.mark.asyncio
async def test_a_new_worker_takes_over_without_repeating_steps(
    client: Client, store: Store
) -> None:
    calls: Counter[tuple[str, str, str]] = Counter()
    queue = f"q-{uuid.uuid4()}"
    first = Counting(store, calls, "A")
    # no sticky cache on A: the test server does not reliably time out a workflow task left
    # on a stopped worker's sticky queue, and the run would hang there
    async with worker(client, first, queue, max_cached_workflows=0):
        handle = await start(client, queue)
        await asyncio.wait_for(first.outreach_created.wait(), WAIT)
    # worker A is gone: B replays the history and must not create the task again
    async with worker(client, Counting(store, calls, "B"), queue):
        await handle.signal(PlaybookWorkflow.task_completed, "outreach")
        result = await handle.result()
        assert await end_escalations(client, handle.id, result) == 1
    steps = [s.step_id for s in result.steps]
    assert steps == [
        "outreach",
        "wait-for-call",
        "give-it-time",
        "check-recovery",
        "escalate",
        "not-recovered",
    ]
    assert result.outcome == "escalated"
    assert calls == {
        ("A", "create_task", f"{handle.id}:outreach"): 1,
        ("B", "record_run_outcome", handle.id): 1,
        # the escalation it opened, resolved by end_escalations (it outlives the playbook)
        ("B", "record_run_outcome", f"escalation:ACME:{handle.id}:escalate"): 1,
    }
    assert [t.step_id for t in local_tasks(store, handle.id)] == ["outreach"]


class GoalGate(Probe):
    """Holds the outreach task until released, and the third facts read (the goal check
    before `give-it-time`) until the test has changed the store."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.created, self.third_read = asyncio.Event(), asyncio.Event()
        self.task_go, self.facts_go = threading.Event(), threading.Event()
        self.change: list[float] = []  # usage.logins_change_30d_pct per facts read

    @activity.defn(name="create_task")
    def create_task(self, inp: TaskInput) -> ActionResult:
        result = super().create_task(inp)
        if inp.step_id == "outreach":
            self.tell(self.created)
            self.task_go.wait(WAIT)
        return result

    @activity.defn(name="read_account_facts")
    def read_account_facts(self, inp: FactsInput) -> dict[str, Any]:
        facts = super().read_account_facts(inp)
        with self.lock:
            self.change.append(facts["usage.logins_change_30d_pct"])
            n = len(self.change)
        if n == 3:
            self.tell(self.third_read)
            self.facts_go.wait(WAIT)
        return facts


@pytest.mark.asyncio
async def test_goal_met_during_a_wait_ends_the_run_at_the_next_tick(
    client: Client, store: Store
) -> None:
    queue = f"q-{uuid.uuid4()}"
    gate = GoalGate(store)
    async with worker(client, gate, queue):
        try:
            handle = await start(client, queue)
            await asyncio.wait_for(gate.created.wait(), WAIT)
            # signalled while the task activity still runs, so wait-for-call ends at once
            # and the reads are: before outreach, before wait-for-call, before give-it-time
            await handle.signal(PlaybookWorkflow.task_completed, "outreach")
            gate.task_go.set()
            await asyncio.wait_for(gate.third_read.wait(), WAIT)
            # usage recovers: the last 30 days (30 a day + 3000 today) reach the 2930 before
            at = datetime.combine(TODAY, time(18), tzinfo=UTC)
            payload = {"logins": 3000, "active_users": 30}
            store.add_signals(
                [Signal(type="usage_daily", account_id="ACME", occurred_at=at, payload=payload)]
            )
        finally:
            gate.task_go.set()
            gate.facts_go.set()
        result = await handle.result()
    assert result.outcome == "goal_met"
    assert [s.step_id for s in result.steps] == ["outreach", "wait-for-call", "give-it-time"]
    wait = result.steps[-1]
    assert wait.result == "goal_met"
    assert wait.ended_at is not None
    # seen on the first daily tick of the 14-day wait, not at its end
    assert timedelta(days=1) <= wait.ended_at - wait.started_at < timedelta(days=1, hours=1)
    assert len(gate.change) == 4 and max(gate.change[:3]) < 0 <= gate.change[3]
    assert [t.step_id for t in local_tasks(store, handle.id)] == ["outreach"]


@pytest.mark.parametrize(
    ("playbook", "steps", "wait_step", "kinds"),
    [
        (
            "champion-change",
            ["map-stakeholders", "wait-for-mapping", "escalate", "escalated"],
            "wait-for-mapping",
            ["task"],
        ),
        (
            "renewal-risk",
            [
                "flag-account",
                "prepare-ebr",
                "tell-manager",
                "wait-for-ebr",
                "escalate",
                "escalated",
            ],
            "wait-for-ebr",
            ["account_update", "task", "notification"],
        ),
    ],
)
@pytest.mark.asyncio
async def test_unanswered_playbooks_wait_out_their_days_and_escalate(
    client: Client,
    store: Store,
    playbook: str,
    steps: list[str],
    wait_step: str,
    kinds: list[str],
) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with make_worker(client, store, queue):
        handle = await start(client, queue, playbook)
        result = await handle.result()
        assert await end_escalations(client, handle.id, result) == 1
    assert result.outcome == "escalated"
    assert [s.step_id for s in result.steps] == steps
    wait = next(s for s in result.steps if s.step_id == wait_step)
    assert wait.result == "escalate" and wait.ended_at is not None
    # ten days of workflow time passed (each of them ticked for renewal-risk's goal)
    assert timedelta(days=10) <= wait.ended_at - wait.started_at < timedelta(days=10, hours=1)
    assert [t.kind for t in local_tasks(store, handle.id)] == kinds
    # the reason as people read it: rendered for the account, not its template
    [escalated] = [s for s in result.steps if s.kind == "escalate"]
    state = get_escalation(store, f"escalation:ACME:{handle.id}:{escalated.step_id}")
    assert state is not None and "Acme Corp" in state.reason and "{{" not in state.reason


class Flood(Probe):
    """create_task blocks for FLOOD accounts until `release`; `started(prefix, n)` returns
    once n tasks of accounts starting with prefix have begun."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.release = threading.Event()
        self.begun: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self.waiters: list[tuple[str, int, asyncio.Event]] = []

    def count(self, prefix: str, counter: Counter[str] | None = None) -> int:
        with self.lock:
            c = self.begun if counter is None else counter
            return sum(n for account, n in c.items() if account.startswith(prefix))

    async def started(self, prefix: str, n: int, timeout: float = WAIT) -> None:
        event = asyncio.Event()
        with self.lock:
            self.waiters.append((prefix, n, event))
        if self.count(prefix) >= n:
            event.set()
        await asyncio.wait_for(event.wait(), timeout)

    @activity.defn(name="create_task")
    def create_task(self, inp: TaskInput) -> ActionResult:
        with self.lock:
            self.begun[inp.account_id] += 1
            waiters = list(self.waiters)
        for prefix, n, event in waiters:
            if self.count(prefix) >= n:
                self.tell(event)
        if not inp.account_id.startswith("FLOOD"):
            return super().create_task(inp)
        self.release.wait(2 * WAIT)
        with self.lock:
            self.ended[inp.account_id] += 1
        return ActionResult(connector="flood", record_id=inp.idempotency_key, created=True)


async def flood(client: Client, store: Store, queue: str, n: int = 40) -> None:
    """n champion-change playbooks (no goal: straight to their task) on one queue."""
    acme = store.account("ACME")
    assert acme is not None
    ids = [f"FLOOD-{i:02d}" for i in range(n)]
    store.upsert_accounts(acme.model_copy(update={"id": i, "name": i}) for i in ids)
    await asyncio.gather(*(start(client, queue, "champion-change", a) for a in ids))


@asynccontextmanager
async def priority_workers(
    client: Client, acts: PlaybookActivities, activity_slots: int
) -> AsyncIterator[None]:
    # pollers=1 is refused by the SDK (a workflow cache needs two); each worker then holds
    # three activity slots while idle, twelve for the four queues
    config = WorkerConfig(
        workflow_slots=50, activity_slots=activity_slots, local_activity_slots=16, pollers=2
    )
    async with AsyncExitStack() as stack:
        extra = escalation_activities(acts).all()
        for w in build_workers(client, acts, list(QUEUES.values()), config, extra):
            await stack.enter_async_context(w)
        yield


@pytest.mark.asyncio
async def test_a_critical_task_runs_while_a_low_priority_flood_holds_its_slots(
    client: Client, store: Store
) -> None:
    acts = Flood(store)
    async with priority_workers(client, acts, 16):
        try:
            await flood(client, store, QUEUES["low"])
            await acts.started("FLOOD", 1)
            await start(client, QUEUES["critical"])
            await acts.started("ACME", 1)
            # meanwhile the flood is blocked, within low's half of the pool, and queued
            assert 0 < acts.count("FLOOD") <= 8
            assert acts.count("FLOOD", acts.ended) == 0
        finally:
            acts.release.set()


@pytest.mark.asyncio
async def test_control_one_plain_worker_lets_the_flood_starve_the_critical_task(
    client: Client, store: Store
) -> None:
    queue = f"q-{uuid.uuid4()}"
    acts = Flood(store)
    async with worker(client, acts, queue, max_concurrent_activities=4):
        try:
            await flood(client, store, queue)
            await acts.started("FLOOD", 4)
            await start(client, queue)
            with pytest.raises(TimeoutError):
                await acts.started("ACME", 1, timeout=3)
            assert acts.count("FLOOD", acts.ended) == 0
        finally:
            acts.release.set()


@pytest.mark.asyncio
async def test_a_pool_its_idle_pollers_could_fill_is_refused(client: Client, store: Store) -> None:
    # 8 slots < what the four workers' idle pollers ask for: low would end with none
    small = WorkerConfig(activity_slots=8, local_activity_slots=16, workflow_slots=50, pollers=2)
    with pytest.raises(ValueError, match="activity_slots=8 is too small"):
        build_workers(client, Flood(store), list(QUEUES.values()), small)


@pytest.mark.asyncio
async def test_only_activity_slots_are_a_python_pool(client: Client, store: Store) -> None:
    # Core calls a Python supplier with its locks held and the supplier needs the GIL, which
    # Worker.initiate_shutdown holds while it waits for those locks: with Python pools for
    # every slot type, one run of this file in eight hung in a shutdown (runtime/worker.py)
    config = WorkerConfig(activity_slots=16, local_activity_slots=16, workflow_slots=50)
    workers = build_workers(client, Flood(store), list(QUEUES.values()), config)
    assert len({id(w.config()["tuner"]) for w in workers}) == 1  # one pool for the queues
    tuner = workers[0].config()["tuner"]
    assert tuner is not None
    assert isinstance(tuner._get_activity_task_slot_supplier(), PrioritySlots)
    # the others the SDK's own, split between the queues: 50 // 4 and 16 // 4 a worker
    assert tuner._get_workflow_task_slot_supplier() == FixedSizeSlotSupplier(12)
    assert tuner._get_local_activity_task_slot_supplier() == FixedSizeSlotSupplier(4)
    assert tuner._get_nexus_slot_supplier() == FixedSizeSlotSupplier(4)
    # running activities get time to finish on shutdown (none at all let shutdowns hang)
    grace = timedelta(seconds=config.graceful_shutdown_seconds)
    assert grace > timedelta(0)
    assert {w.config()["graceful_shutdown_timeout"] for w in workers} == {grace}


@pytest.mark.parametrize("slots", [16])
@pytest.mark.asyncio
async def test_the_low_queue_drains_once_the_flood_is_released(
    client: Client, store: Store, slots: int
) -> None:
    acts = Flood(store)
    async with priority_workers(client, acts, slots):
        try:
            await flood(client, store, QUEUES["low"])
            await acts.started("FLOOD", 1)
        finally:
            acts.release.set()
        # the other queues' idle pollers must not keep low out for good
        await acts.started("FLOOD", 40, timeout=10)
