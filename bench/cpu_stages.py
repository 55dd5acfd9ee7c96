"""CPU seconds per stage of the signal -> task path, for bench/playbooks.py part C.

Each stage is timed with the CPU clock of the thread that runs it (`time.thread_time`), so
work that other threads do meanwhile is not counted in, whatever the load on the machine.
A stage inside another (the ledger inside an activity, derivation inside an activity's
goal check) is counted in the inner one only. Coroutines are timed one synchronous step
at a time (`timed`): the event loop runs other tasks between the steps.

The SDK core's Rust threads (gRPC, the workflow state machines) are read from /proc by
their name. What is not timed falls into "other": the event loop itself (the SDK's polls
and completions, asyncio), garbage collection between stages, the load generator.

The hooks replace attributes of the measured objects and modules for the length of the
bench (`Hooks.install`, `Hooks.remove`): they are the bench's, not the product's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowInstance
from temporalio.worker._activity import _ActivityWorker as _activity_worker
from temporalio.worker._workflow import _WorkflowWorker as _workflow_worker

import csautomation.pipeline.loop as loop_module
import csautomation.store.ledger as ledger_module
from csautomation.pipeline import Pipeline

T = TypeVar("T")

# the rows of the table, in the order of the path
STAGES = (
    "store",
    "derive",
    "evaluate",
    "evaluate: reads, cooldowns, commit",
    "index",
    "dispatch",
    "workflow tasks",
    "activities",
    "ledger",
)


class StageCpu:
    """Thread CPU seconds per stage, exclusive of the stages nested in it."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        stack: list[list[Any]] = self._local.__dict__.setdefault("stack", [])
        frame: list[Any] = [stage, 0.0]  # the stage, CPU of the stages nested in it
        stack.append(frame)
        began = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - began
            stack.pop()
            if stack:
                stack[-1][1] += spent
            with self._lock:
                self.seconds[stage] += spent - frame[1]

    def wrap(self, stage: str, fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> T:
            with self.measure(stage):
                return fn(*args, **kwargs)

        return timed

    def wrap_async(
        self, stage: str, fn: Callable[..., Coroutine[Any, Any, T]]
    ) -> Callable[..., Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> T:
            return await _Steps(fn(*args, **kwargs), self, stage)

        return timed

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.seconds)


class _Steps:
    """Awaits a coroutine, timing each of its synchronous steps as `stage`."""

    def __init__(self, coro: Coroutine[Any, Any, Any], meter: StageCpu, stage: str) -> None:
        self.coro, self.meter, self.stage = coro, meter, stage

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            with self.meter.measure(self.stage):
                try:
                    step = self.coro.throw(error) if error is not None else self.coro.send(value)
                except StopIteration as stop:
                    return stop.value
            try:
                value, error = (yield step), None
            except BaseException as exc:  # noqa: BLE001 - thrown into the coroutine, as await does
                value, error = None, exc


class Hooks:
    """Installs the stage timers on a pipeline, its store and facts, the workers' runner
    and activities, and the modules they call through; `remove` puts everything back."""

    def __init__(self, meter: StageCpu) -> None:
        self.meter = meter
        self._undo: list[Callable[[], None]] = []

    def _swap(self, owner: Any, name: str, new: Any) -> None:
        old = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, new)
        self._undo.append(lambda: setattr(owner, name, old))

    def install(self, pipeline: Pipeline) -> None:
        m = self.meter
        self._swap(pipeline.store, "add_signal", m.wrap("store", pipeline.store.add_signal))
        for name in ("records_or_errors", "record"):
            self._swap(pipeline.facts, name, m.wrap("derive", getattr(pipeline.facts, name)))
        runtime = pipeline.runtime
        self._swap(runtime, "evaluate_record", m.wrap("evaluate", runtime.evaluate_record))
        self._swap(
            pipeline,
            "evaluate_pending",
            m.wrap("evaluate: reads, cooldowns, commit", pipeline.evaluate_pending),
        )
        self._swap(loop_module, "index_firings", m.wrap("index", loop_module.index_firings))
        self._swap(loop_module, "mark_firings", m.wrap("dispatch", loop_module.mark_firings))
        self._swap(loop_module, "start", m.wrap_async("dispatch", loop_module.start))
        dispatch = m.wrap_async("dispatch", pipeline.dispatch_pending)
        self._swap(pipeline, "dispatch_pending", dispatch)
        self._swap(pipeline, "_undispatched", m.wrap("dispatch", pipeline._undispatched))
        self._swap(ledger_module, "append", m.wrap("ledger", ledger_module.append))
        create = UnsandboxedWorkflowRunner.create_instance

        def create_instance(runner: UnsandboxedWorkflowRunner, det: Any) -> WorkflowInstance:
            instance = create(runner, det)
            instance.activate = m.wrap("workflow tasks", instance.activate)  # type: ignore[method-assign]
            return instance

        self._swap(UnsandboxedWorkflowRunner, "create_instance", create_instance)
        # the event loop's side of a workflow task and of an activity: decoding their
        # payloads, encoding the results (SDK internals: timed only while they exist)
        for owner, name, stage in (
            (_workflow_worker, "_handle_activation", "workflow tasks"),
            (_activity_worker, "_handle_start_activity_task", "activities"),
        ):
            if name in owner.__dict__:
                self._swap(owner, name, m.wrap_async(stage, owner.__dict__[name]))

    def activities(self, fns: list[Callable[..., Any]]) -> list[Callable[..., Any]]:
        """The workers' activity functions, each timed as "activities" in its thread."""
        return [_timed_activity(self.meter, fn) for fn in fns]

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()


def _timed_activity(meter: StageCpu, fn: Callable[..., Any]) -> Callable[..., Any]:
    timed = meter.wrap("activities", fn)
    # the SDK reads the activity's name and signature from what it is given
    name = "__temporal_activity_definition"
    setattr(timed, name, getattr(fn, name))
    return timed


def core_threads() -> float:
    """CPU seconds used so far by the SDK core's threads (Rust, named tokio-rt-worker) that
    are alive; 0 where /proc is not there."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for task in Path("/proc/self/task").glob("*"):
        try:
            if (task / "comm").read_text().strip().startswith("tokio"):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def table(spent: Counter[str], process: float, core: float, signals: int) -> list[str]:
    """Rows of "CPU ms per signal by stage": each stage, the SDK core's threads, the
    untimed rest, the total."""
    per = 1000 / max(signals, 1)
    rows = [f"  {'stage':<38} {'ms':>6} {'share':>6}"]

    def row(name: str, seconds: float) -> str:
        return f"  {name:<38} {seconds * per:>6.1f} {seconds / max(process, 1e-9):>6.0%}"

    for stage in STAGES:
        rows.append(row(stage, spent[stage]))
    rows.append(row("SDK core (Rust threads: gRPC, history)", core))
    rows.append(row("other (event loop, GC, load generator)", process - sum(spent.values()) - core))
    rows.append(f"  {'total (this process)':<38} {process * per:>6.1f}")
    return rows
