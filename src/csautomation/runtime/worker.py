"""Workers for the priority task queues, sharing one pool of activity slots that favours
urgency.

Each priority has its own task queue (critical, high, normal, low) and its own Temporal
worker, so a backlog on one queue never sits in front of another's tasks. The workers share
one pool of activity slots, with a ceiling per queue on the slots held by that queue and the
less urgent ones: low work can fill half the pool, normal and low three quarters, high and
below nine tenths, critical all of it. A flood of low-priority sweeps therefore always
leaves room for a critical alert, and when a slot frees up the most urgent waiting queue
gets it first.

Workflow tasks and local activities are short, and are not pooled: each queue's worker has
an equal share of their slots, from the SDK's own suppliers (in Rust). A Python supplier for
them can hang a shutdown for good (core calls it holding locks that `initiate_shutdown`
waits for while it holds the GIL). Running activities get `graceful_shutdown_seconds` to
finish, as core's shutdown with none now and then never returns. The measurements behind
both: docs/operations.md, "Worker shutdown".
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    PollerBehaviorSimpleMaximum,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerTuner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from csautomation.activities.playbook import PlaybookActivities
from csautomation.pipeline import QUEUES
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow

# share of the pool a queue may hold, by queue
CEILINGS = {
    QUEUES["critical"]: 1.0,
    QUEUES["high"]: 0.9,
    QUEUES["medium"]: 0.75,
    QUEUES["low"]: 0.5,
}
RANK = {q: i for i, q in enumerate(QUEUES.values())}


@dataclass(eq=False)
class _Permit(SlotPermit):
    queue: str


class PrioritySlots(CustomSlotSupplier):
    """One pool of `size` slots shared by the priority queues' workers (see module doc).

    A queue may reserve a slot while the pool has one free and the slots held by it and by
    the less urgent queues stay under its ceiling: low's own reservations under half the
    pool, normal's and low's under three quarters, and so on. The more urgent queues' idle
    pollers therefore never shut a less urgent queue out, and whatever low holds, a quarter
    of the pool is left for high and critical. A reservation held back waits; when a slot
    frees up, the most urgent waiter that may take it gets it. A waiter never blocks a queue
    that may reserve now.
    """

    def __init__(self, size: int, ceilings: Mapping[str, float] = CEILINGS) -> None:
        self.size = size
        self.limits = {q: max(1, int(size * share)) for q, share in ceilings.items()}
        self.reserved = 0  # permits out, idle (a poller waiting for work) or busy
        self.held: Counter[str] = Counter()  # permits out per queue
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, int, str, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def _may_take(self, queue: str) -> bool:
        rank = RANK.get(queue, 0)
        below = sum(n for q, n in self.held.items() if RANK.get(q, 0) >= rank)
        return self.reserved < self.size and below < self.limits.get(queue, self.size)

    def _count(self, queue: str, n: int) -> None:
        self.reserved += n
        self.held[queue] += n

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        queue = ctx.task_queue
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._may_take(queue):
                self._count(queue, 1)
                return _Permit(queue)
            fut: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiters, (RANK.get(queue, 0), next(self._seq), queue, fut))
        try:
            await fut  # resolved with the slot already counted as ours
        except asyncio.CancelledError:
            with self._lock:
                if fut.done() and not fut.cancelled():
                    self._count(queue, -1)  # granted while we were being cancelled: give back
                self._waiters = [w for w in self._waiters if w[3] is not fut]
                heapq.heapify(self._waiters)
            self._grant()
            raise
        return _Permit(queue)

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        with self._lock:
            if not self._may_take(ctx.task_queue):
                return None
            self._count(ctx.task_queue, 1)
            return _Permit(ctx.task_queue)

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        pass

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        permit = ctx.permit
        with self._lock:
            self._count(permit.queue if isinstance(permit, _Permit) else "", -1)
        self._grant()

    def _grant(self) -> None:
        """Hand free slots to waiters, most urgent first, each within its ceiling."""
        with self._lock:
            kept: list[tuple[int, int, str, asyncio.Future[None]]] = []
            while self._waiters:
                item = heapq.heappop(self._waiters)
                _, _, queue, fut = item
                if fut.done():
                    continue
                if self._may_take(queue):
                    self._count(queue, 1)
                    fut.get_loop().call_soon_threadsafe(_resolve, fut, self, queue)
                else:
                    kept.append(item)
            for item in kept:
                heapq.heappush(self._waiters, item)


def _resolve(fut: asyncio.Future[None], pool: PrioritySlots, queue: str) -> None:
    if fut.done():  # cancelled meanwhile: the slot we counted goes back
        with pool._lock:
            pool._count(queue, -1)
        pool._grant()
    else:
        fut.set_result(None)


@dataclass(frozen=True)
class WorkerConfig:
    # idle pollers hold reserved slots too: keep pollers few and pools large beside them.
    # Activity slots are one pool for the queues; workflow and local activity slots are
    # split evenly between the queues' workers.
    workflow_slots: int = 200
    activity_slots: int = 64
    local_activity_slots: int = 64
    pollers: int = 2
    # The sandbox runs every activation, and every payload's serialization context, through
    # exec inside its import machinery: at 10 signals/s it took signal -> task p95 from
    # about 0.6 s to 10 s (docs/benchmarks.md). The tests and every replay run the same
    # workflow code sandboxed, so production workers run it without by default.
    sandboxed: bool = False
    # on shutdown (a deploy, SIGTERM) running activities get this long to finish before they
    # are cancelled: a vendor call under way is seen through instead of being left to its
    # retry. The SDK's default, no time at all, also let a shutdown hang (module doc).
    graceful_shutdown_seconds: float = 30.0


def build_workers(
    client: Client,
    activities: PlaybookActivities,
    queues: Sequence[str] = tuple(QUEUES.values()),
    config: WorkerConfig | None = None,
    extra: Sequence[Callable[..., Any]] = (),
) -> list[Worker]:
    """One worker per queue, sharing the activity slot pool and one thread pool for
    activities; `extra` are further activities (the escalation workflow's)."""
    cfg = config or WorkerConfig()
    # idle pollers hold reservations; a pool they could fill leaves none for running work
    floor = 2 * cfg.pollers * len(queues)
    for name, size in (("workflow", cfg.workflow_slots), ("activity", cfg.activity_slots)):
        if size < floor:
            raise ValueError(
                f"{name}_slots={size} is too small for {len(queues)} queues with "
                f"{cfg.pollers} pollers each: give at least {floor}"
            )
    # each queue's share of the workflow and local activity slots, in the SDK's own
    # suppliers: see the module doc
    local_share = max(1, cfg.local_activity_slots // len(queues))
    tuner = WorkerTuner.create_composite(
        workflow_supplier=FixedSizeSlotSupplier(cfg.workflow_slots // len(queues)),
        activity_supplier=PrioritySlots(cfg.activity_slots),
        local_activity_supplier=FixedSizeSlotSupplier(local_share),
        nexus_supplier=FixedSizeSlotSupplier(4),
    )
    # the pools bound how many activities run at once, so the threads never queue
    executor = ThreadPoolExecutor(cfg.activity_slots + local_share * len(queues))
    runner = SandboxedWorkflowRunner() if cfg.sandboxed else UnsandboxedWorkflowRunner()
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=[PlaybookWorkflow, EscalationWorkflow],
            activities=[*activities.all(), *extra],
            activity_executor=executor,
            tuner=tuner,
            workflow_runner=runner,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(cfg.pollers),
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(cfg.pollers),
            graceful_shutdown_timeout=timedelta(seconds=cfg.graceful_shutdown_seconds),
        )
        for queue in queues
    ]
