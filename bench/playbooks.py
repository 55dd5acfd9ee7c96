"""bench/playbooks: from rule firings and signals to Temporal workflows and CRM tasks.

On the local Temporal dev server (SQLite in a temporary folder, as `csauto dev` runs it),
in one run:

A. dispatch: workflow starts/s of `dispatcher.dispatch` for usage-decline firings of N
   distinct accounts (usage-recovery playbook), C in flight, no worker polling its queue;
B. the ceiling: the raw temporalio SDK starting a trivial one-activity workflow N times with
   the same concurrency (starts/s, no worker), and starting and completing N of them with a
   worker in this process (completed/s);
C. signal -> task latency: N accounts whose logins fell 70% a month ago (split between the
   offered rates), one usage_daily signal each offered at a steady rate through
   `Pipeline.add_signal`, with the pipeline and the priority workers (`build_workers`) in
   this process, as `csauto dev` runs them; latency from add_signal to the usage-recovery
   outreach task's `created_at` in the store. The peer: the raw SDK at the same rates, from
   `start_workflow` to its activity running. Each rate's CPU ms per signal by stage (store,
   derive, evaluate, index, dispatch, workflow tasks, activities, ledger, the SDK core's
   threads): bench/cpu_stages.py says how they are timed. Beside them, the raw SDK's CPU per
   one-activity workflow at the same rate: a signal here starts two workflows, so twice
   that is the floor under ours. `--worker-processes N`: the workers run in N processes of
   their own (as `csauto worker` processes beside `csauto pipeline`); CPU is then every
   process's.

    .venv/bin/python bench/playbooks.py [--accounts 1000] [--concurrency 100] [--rates 5,10,15]
        [--no-stages] [--worker-processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import temporalio
from sqlmodel import col, func, select
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from cpu_stages import Hooks, StageCpu, core_threads
from cpu_stages import table as stage_table
from csautomation.activities.escalation import EscalationActivities
from csautomation.activities.playbook import PlaybookActivities
from csautomation.escalation.matrix import load_escalation_config
from csautomation.facts.health import HealthModel, load_health_model
from csautomation.facts.model import Account, Signal
from csautomation.pipeline import Firing, Pipeline, SqlCooldowns, dispatch
from csautomation.playbooks.loader import load_playbooks
from csautomation.playbooks.spec import Playbook
from csautomation.rules.runtime import RuleRuntime
from csautomation.runtime.server import dev_server_path, start_dev_server
from csautomation.runtime.worker import build_workers
from csautomation.store.facts import FactsReader
from csautomation.store.outbox import mark_all_evaluated
from csautomation.store.repo import Store, local_tasks
from csautomation.store.tables import LocalTaskRow, PlaybookRunRow, RuleFiringRow, SignalRow

AS_OF = datetime(2026, 11, 1, 9, tzinfo=UTC)  # the offered signals' time; the activities' clock
HISTORY_DAYS = 90
RULE = "usage-decline"
# part A starts on queues no worker polls, so part C's workers never see that backlog
DISPATCH_QUEUES = {p: f"bench-dispatch-{p}" for p in ("critical", "high", "medium", "low")}
RAW_QUEUE = "bench-raw"
T = TypeVar("T")


def root() -> Path:
    """The repository."""
    return Path(__file__).resolve().parents[1]


# ---- the ceiling: a trivial one-activity workflow on the raw SDK --------------------------


@activity.defn(name="bench_touch")
def touch(account_id: str) -> float:  # noqa: ARG001
    """When the activity ran (the raw peer of a CRM task's created_at)."""
    return time.time()


@workflow.defn(name="BenchOneActivity")
class OneActivityWorkflow:
    @workflow.run
    async def run(self, account_id: str) -> float:
        ran: float = await workflow.execute_activity(
            touch, account_id, start_to_close_timeout=timedelta(seconds=30)
        )
        return ran


def raw_worker(client: Client) -> Worker:
    """Unsandboxed, like the playbook workers (`WorkerConfig.sandboxed` is off by default)."""
    return Worker(
        client,
        task_queue=RAW_QUEUE,
        workflows=[OneActivityWorkflow],
        activities=[touch],
        activity_executor=ThreadPoolExecutor(64),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


# ---- the workers in a process of their own (--split) -----------------------------------------


def worker_process(address: str, db_url: str, ready: Any, stop: Any) -> None:
    """The priority workers and their activities, as `csauto worker` runs them beside a
    `csauto pipeline` process: their own store connections, facts cache and event loop.
    Started by multiprocessing (spawn); `ready` is set once they poll, `stop` ends them."""
    gc.set_threshold(10_000, 10, 10)  # as every csauto command sets it

    async def main() -> None:
        from csautomation.runtime.converter import data_converter

        client = await Client.connect(address, data_converter=data_converter)
        store = Store(db_url)
        model = load_health_model(root() / "health_model.yaml")
        actions = PlaybookActivities(store, model, clock=lambda: AS_OF)
        matrix, people = load_escalation_config(
            root() / "escalation_matrix.yaml", root() / "people.yaml"
        )
        extra = EscalationActivities(actions, matrix, people).all()
        async with contextlib.AsyncExitStack() as stack:
            for w in build_workers(client, actions, extra=extra):
                await stack.enter_async_context(w)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.2)

    logging.disable(logging.WARNING)  # "slack is not configured", once per process
    asyncio.run(main())


@contextlib.asynccontextmanager
async def split_workers(address: str, store: Store, n: int) -> Any:
    """`n` worker processes (`worker_process`, spawned) while the block runs, polling the
    same queues as `csauto worker` processes scaled out do; yields their pids."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    started = []
    try:
        for _ in range(n):
            ready = ctx.Event()
            proc = ctx.Process(
                target=worker_process, args=(address, str(store.engine.url), ready, stop)
            )
            proc.start()
            started.append(proc)
            if not await asyncio.to_thread(ready.wait, 120):
                raise RuntimeError("a worker process did not start polling within 120 s")
        yield [p.pid for p in started]
    finally:
        stop.set()
        for proc in started:
            await asyncio.to_thread(proc.join, 60)
            if proc.is_alive():
                proc.kill()


def process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the processes have used, from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# ---- data -----------------------------------------------------------------------------------


def make_account(account_id: str) -> Account:
    return Account(
        id=account_id,
        name=f"Account {account_id}",
        tier="enterprise",
        arr=2e5,
        seats=40,
        owner="csm-01",
        manager="mgr-01",
        renewal_date=date(2027, 2, 1),
        customer_since=date(2022, 1, 1),
    )


def usage(account_id: str, at: datetime, logins: int) -> Signal:
    return Signal(
        type="usage_daily",
        account_id=account_id,
        occurred_at=at,
        payload={"logins": logins, "active_users": logins // 4},
    )


def history(account_id: str) -> list[Signal]:
    """As ACME in tests/factories.py: 100 logins a day, then 30 for the last 30 days."""
    return [
        usage(account_id, AS_OF - timedelta(days=back), 100 if back > 30 else 30)
        for back in range(HISTORY_DAYS, 0, -1)
    ]


def template_firing(model: HealthModel) -> Firing:
    """A real usage-decline match (rule, version, explain) for one account."""
    runtime = RuleRuntime([root() / "rules"], model)
    try:
        account = make_account("template")
        signals = [*history(account.id), usage(account.id, AS_OF, 30)]
        fired = runtime.evaluate_account(account, signals, AS_OF, "usage_daily").fired
    finally:
        runtime.close()
    return Firing.from_match(next(m for m in fired if m.rule_id == RULE))


def seed_store(store: Store, ids: list[str]) -> None:
    store.create_all()
    store.upsert_accounts(make_account(a) for a in ids)
    store.add_signals([s for a in ids for s in history(a)])
    mark_all_evaluated(store)  # imported history is context for facts, not news


# ---- measurement helpers ----------------------------------------------------------------------


async def bounded(n: int, limit: int, one: Callable[[int], Awaitable[T]]) -> tuple[float, list[T]]:
    """Run one(0..n-1) with at most `limit` in flight; (elapsed seconds, results)."""
    sem = asyncio.Semaphore(limit)

    async def run(i: int) -> T:
        async with sem:
            return await one(i)

    t = time.perf_counter()
    out = await asyncio.gather(*(run(i) for i in range(n)))
    return time.perf_counter() - t, list(out)


async def steady(n: int, rate: float, one: Callable[[int], Awaitable[None]]) -> float:
    """Offer one(i) at `rate` per second on a fixed schedule (open loop: a slow offer does not
    lower the offered rate); returns the rate achieved."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(n):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await one(i)
    return (n - 1) / max(loop.time() - t0, 1e-9) if n > 1 else rate


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Latency:
    name: str
    values: list[float]  # seconds
    expected: int

    def row(self) -> str:
        head = f"  {self.name:<38} {len(self.values):>5}/{self.expected:<5}"
        if not self.values:
            return head + " (no samples)"
        ms = [x * 1000 for x in self.values]
        return (
            f"{head} {pct(ms, 50):>7,.0f} {pct(ms, 95):>7,.0f} {pct(ms, 99):>7,.0f} "
            f"{max(ms):>7,.0f}"
        )


LAT_HEADER = (
    f"  {'path':<38} {'samples':>11} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
)


class CoreWarnings(logging.Handler):
    """Counts the SDK core's warnings, which it would otherwise print among the figures."""

    SLOW = "TMPRL1104"  # a workflow task took over 5 s (it waited for its local activity)

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.others: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.SLOW in message:
            self.counts[self.SLOW] += 1
        else:
            self.counts["other"] += 1
            self.others.append(message[:300])

    def install(self) -> None:
        logger = logging.getLogger("bench.temporal-core")
        logger.propagate = False
        logger.addHandler(self)
        forwarding = LogForwardingConfig(logger=logger)
        level = TelemetryFilter(core_level="WARN", other_level="ERROR")
        telemetry = TelemetryConfig(logging=LoggingConfig(filter=level, forwarding=forwarding))
        Runtime.set_default(Runtime(telemetry=telemetry))


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far: the machine (all cores), this process, its children (the dev
    server); from /proc, zeros elsewhere. The machine is shared: `other` shows the noise."""

    machine: float = 0.0
    own: float = 0.0
    children: float = 0.0

    @classmethod
    def now(cls) -> Cpu:
        try:
            tick = os.sysconf("SC_CLK_TCK")
            with open("/proc/stat") as f:
                jiffies = [int(x) for x in f.readline().split()[1:9]]
            busy = (sum(jiffies) - jiffies[3] - jiffies[4]) / tick
            kids = 0.0
            for task in Path(f"/proc/{os.getpid()}/task").iterdir():
                for pid in (task / "children").read_text().split():
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    kids += (int(stat[11]) + int(stat[12])) / tick
        except (OSError, ValueError, IndexError):
            return cls()
        t = os.times()
        return cls(busy, t.user + t.system, kids)

    def since(self, start: Cpu, seconds: float, workers: float = 0.0) -> str:
        """`workers`: CPU seconds of worker processes among the children (--worker-processes)."""
        if not self.machine:
            return "CPU: not available"
        m, o, c = self.machine - start.machine, self.own - start.own, self.children - start.children
        split = f"worker processes {workers / seconds:.2f}, " if workers else ""
        return (
            f"CPU over {seconds:.0f} s: machine {m / seconds:.2f} of {os.cpu_count()} cores busy "
            f"(this process {o / seconds:.2f}, {split}dev server {(c - workers) / seconds:.2f}, "
            f"others {max(0.0, m - o - c) / seconds:.2f})"
        )


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The dev server prints a banner to the stdout it inherits: give it /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# ---- A and B: starts/s ------------------------------------------------------------------------


async def dispatch_round(
    client: Client, firing: Firing, playbooks: dict[str, Playbook], n: int, c: int, tag: str
) -> float:
    firings = [replace(firing, account_id=f"dispatch-{tag}-{i:05d}") for i in range(n)]

    async def one(i: int) -> None:
        started = await dispatch(client, firings[i], playbooks, queues=DISPATCH_QUEUES)
        assert started and started[0].run_id is not None, "a dispatch did not start a run"

    elapsed, _ = await bounded(n, c, one)
    return n / elapsed


async def raw_round(client: Client, n: int, c: int, tag: str) -> float:
    async def one(i: int) -> None:
        await client.start_workflow(
            OneActivityWorkflow.run, f"acct-{i}", id=f"raw-start:{tag}:{i}", task_queue="bench-idle"
        )

    elapsed, _ = await bounded(n, c, one)
    return n / elapsed


async def raw_complete(client: Client, n: int, c: int) -> float:
    async def one(i: int) -> float:
        return await client.execute_workflow(
            OneActivityWorkflow.run, f"acct-{i}", id=f"raw-complete:{i}", task_queue=RAW_QUEUE
        )

    elapsed, _ = await bounded(n, c, one)
    return n / elapsed


# ---- C: signal -> task -----------------------------------------------------------------------


def outreach_tasks(store: Store) -> int:
    with store.session() as s:
        n = s.exec(
            select(func.count()).where(
                col(LocalTaskRow.step_id) == "outreach",
                col(LocalTaskRow.workflow_id).startswith(f"playbook:{RULE}:"),
            )
        ).one()
    return int(n)


def stage_times(store: Store) -> dict[str, dict[str, float]]:
    """Per account (epoch seconds): signal evaluated, run indexed (just before the start
    call), firing marked dispatched (after it), outreach task created."""
    out: dict[str, dict[str, float]] = {}

    def put(rows: Any, stage: str) -> None:
        for account_id, at in rows:
            if at is not None:
                out.setdefault(account_id, {})[stage] = aware(at).timestamp()

    with store.session() as s:
        put(
            s.exec(
                select(SignalRow.account_id, SignalRow.evaluated_at).where(
                    col(SignalRow.occurred_at) == AS_OF
                )
            ),
            "evaluated",
        )
        put(
            s.exec(
                select(PlaybookRunRow.account_id, PlaybookRunRow.started_at).where(
                    col(PlaybookRunRow.rule_id) == RULE
                )
            ),
            "indexed",
        )
        put(
            s.exec(
                select(RuleFiringRow.account_id, RuleFiringRow.dispatched_at).where(
                    col(RuleFiringRow.rule_id) == RULE
                )
            ),
            "dispatched",
        )
    put(  # the repository's own read, once, at the end
        (
            (t.account_id, t.created_at)
            for t in local_tasks(store)
            if t.step_id == "outreach" and t.workflow_id.startswith(f"playbook:{RULE}:")
        ),
        "task",
    )
    return out


@dataclass
class Phase:
    """One offered rate over its own accounts."""

    rate: float
    ids: list[str]
    offered: dict[str, float] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    achieved: float = 0.0
    cpu: float = 0.0  # this process's CPU seconds, offering to last task
    usage: str = ""  # machine CPU over the phase
    rows: list[Latency] = field(default_factory=list)
    throughput: float = 0.0  # tasks/s, first offer to last task
    slow_tasks: int = 0  # SDK core warnings: workflow task over 5 s
    stages: Counter[str] = field(default_factory=Counter)  # CPU seconds by stage
    core_threads: float = 0.0  # CPU seconds of the SDK core's threads
    worker_cpu: float = 0.0  # CPU seconds of the worker process (--split), also in `cpu`

    def report(self, stages: dict[str, dict[str, float]]) -> None:
        def gap(a: str, b: str) -> list[float]:
            out = []
            for account_id, t0 in self.offered.items():
                at = {"offered": t0, "stored": self.stored[account_id], **stages[account_id]}
                if a in at and b in at:
                    out.append(at[b] - at[a])
            return out

        for a in self.ids:
            stages.setdefault(a, {})
        n = len(self.ids)
        self.rows = [
            Latency(f"csautomation signal -> task ({self.rate:g}/s)", gap("offered", "task"), n),
            Latency("  add_signal (store, commit)", gap("offered", "stored"), n),
            Latency("  stored -> signal evaluated", gap("stored", "evaluated"), n),
            Latency("  evaluated -> run indexed", gap("evaluated", "indexed"), n),
            Latency("  indexed -> firing dispatched", gap("indexed", "dispatched"), n),
            Latency("  dispatched -> task created", gap("dispatched", "task"), n),
        ]
        tasks = [stages[a]["task"] for a in self.ids if "task" in stages[a]]
        if tasks:
            self.throughput = len(tasks) / max(max(tasks) - min(self.offered.values()), 1e-9)


async def signal_latency(
    client: Client,
    store: Store,
    model: HealthModel,
    playbooks: dict[str, Playbook],
    phases: list[Phase],
    settle: float,
    core: CoreWarnings,
    meter: StageCpu,
    stages: bool = True,
    split: tuple[str, int] = ("", 0),
) -> None:
    """The pipeline and the workers run through every phase; each phase offers its signals
    and waits for its tasks before the next begins; `meter` times the stages (`stages`).
    `split` (the dev server's address, a number): the workers run in that many processes
    of their own, as `csauto worker` beside `csauto pipeline`; a phase's CPU is then every
    process's."""
    runtime = RuleRuntime([root() / "rules"], model, cooldowns=SqlCooldowns(store))
    facts = FactsReader(store, model)  # shared, as `csauto dev` shares it
    pipeline = Pipeline(store, runtime, playbooks, client, facts=facts)
    actions = PlaybookActivities(store, model, clock=lambda: AS_OF, facts=facts)
    matrix, people = load_escalation_config(
        root() / "escalation_matrix.yaml", root() / "people.yaml"
    )
    # sharp-health-drop's escalations run too, as in `csauto worker`
    escalations = EscalationActivities(actions, matrix, people)
    hooks = Hooks(meter)
    extra = escalations.all()
    if stages:
        hooks.install(pipeline)
        timed_actions = hooks.activities(actions.all())
        actions.all = lambda: timed_actions  # type: ignore[method-assign]
        extra = hooks.activities(extra)
    stack = contextlib.AsyncExitStack()
    address, processes = split
    child = await stack.enter_async_context(split_workers(address, store, processes))
    if not child:
        for w in build_workers(client, actions, extra=extra):
            await stack.enter_async_context(w)
    expected = 0
    loop_task = asyncio.create_task(pipeline.run_forever())
    try:
        for phase in phases:
            signals = [usage(a, AS_OF, 30) for a in phase.ids]

            async def offer(i: int, phase: Phase = phase, signals: list[Signal] = signals) -> None:
                sig = signals[i]
                phase.offered[sig.account_id] = time.time()
                # on the loop's thread: add_signal sets the pipeline's asyncio.Event
                assert pipeline.add_signal(sig), "signal already stored"
                phase.stored[sig.account_id] = time.time()

            cpu, slow, spent = time.process_time(), core.counts[core.SLOW], meter.snapshot()
            child_cpu = process_cpu(child) if child else 0.0
            rust = core_threads()
            start, t0 = Cpu.now(), time.monotonic()
            phase.achieved = await steady(len(phase.ids), phase.rate, offer)
            expected += len(phase.ids)
            deadline = time.monotonic() + settle
            while outreach_tasks(store) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.5)  # its query counts in the process's CPU: seldom
            phase.cpu = time.process_time() - cpu
            phase.worker_cpu = process_cpu(child) - child_cpu if child else 0.0
            phase.cpu += phase.worker_cpu
            phase.stages = meter.snapshot() - spent
            phase.core_threads = core_threads() - rust
            phase.slow_tasks = core.counts[core.SLOW] - slow
            phase.usage = Cpu.now().since(start, time.monotonic() - t0, phase.worker_cpu)
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await stack.aclose()
        runtime.close()
        hooks.remove()
    stages = stage_times(store)
    for phase in phases:
        phase.report(stages)


@dataclass
class Peer:
    """The raw SDK at one rate: start -> activity ran, and this process's CPU per workflow
    (start, two workflow tasks, one activity: the SDK's own cost, the floor of ours)."""

    latency: Latency
    rate: float
    cpu_ms: float


async def raw_latency(client: Client, n: int, rate: float, tag: str) -> Peer:
    done: list[float] = []
    pending: list[asyncio.Task[None]] = []

    async def finish(handle: Any, t0: float) -> None:
        ran: float = await handle.result()
        done.append(ran - t0)

    async def offer(i: int) -> None:
        t0 = time.time()
        handle = await client.start_workflow(
            OneActivityWorkflow.run, f"acct-{i}", id=f"raw-latency:{tag}:{i}", task_queue=RAW_QUEUE
        )
        pending.append(asyncio.create_task(finish(handle, t0)))

    # each start is awaited before the next is offered, as add_signal is
    cpu = time.process_time()
    achieved = await steady(n, rate, offer)
    await asyncio.wait_for(asyncio.gather(*pending), timeout=120)
    cpu_ms = (time.process_time() - cpu) * 1000 / n
    return Peer(Latency(f"raw SDK start -> activity ran ({rate:g}/s)", done, n), achieved, cpu_ms)


# ---- main ---------------------------------------------------------------------------------------


def speed_check() -> float:
    """Median ms to compile the playbook workflow module: a yardstick for how fast this
    shared machine is right now, to compare runs by."""
    path = root() / "src" / "csautomation" / "workflows" / "playbook.py"
    source = path.read_text()
    times = []
    for _ in range(20):
        t = time.perf_counter()
        compile(source, str(path), "exec")
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def versions() -> str:
    try:
        server = subprocess.run(
            [dev_server_path(), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        server = "temporal (version unknown)"
    return f"temporalio {temporalio.__version__}, {server}"


async def run(args: argparse.Namespace, core: CoreWarnings) -> int:
    model = load_health_model(root() / "health_model.yaml")
    playbooks = load_playbooks([root() / "workflows"])
    firing = template_firing(model)
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}; {versions()}"
    )
    print(
        "dev server: SQLite (WAL, synchronous=normal) in a temporary folder; "
        + (
            f"C: the workers in {args.worker_processes} processes of their own, pipeline and "
            "load generator in this one"
            if args.worker_processes
            else "workers, pipeline and load generator share this process"
        )
        + f"; speed check {speed_check():.2f} ms, load "
        f"average {os.getloadavg()[0]:.2f}"
    )
    t_all = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="bench-playbooks-"))
    try:
        t = time.perf_counter()
        ids = [f"ACC{i:05d}" for i in range(args.accounts)]
        store = Store(f"sqlite:///{folder}/csauto.db")
        seed_store(store, ids)
        seeded = time.perf_counter() - t
        with quiet_stdout():
            server = await start_dev_server(folder / "temporal", port=None, ui_port=None, ui=False)
        try:
            client = server.env.client  # pydantic data converter, as csautomation uses
            raw = await Client.connect(server.address)  # the SDK's default converter
            args.address = server.address
            ok = await measure(args, client, raw, store, model, playbooks, firing, ids, core)
        finally:
            await server.env.shutdown()
            store.engine.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\nstore seeded with {args.accounts:,} accounts x {HISTORY_DAYS} days of usage in "
        f"{seeded:.1f} s; total {time.perf_counter() - t_all:.0f} s"
    )
    return 0 if ok or not args.strict else 1


async def measure(
    args: argparse.Namespace,
    client: Client,
    raw: Client,
    store: Store,
    model: HealthModel,
    playbooks: dict[str, Playbook],
    firing: Firing,
    ids: list[str],
    core: CoreWarnings,
) -> bool:
    n, c, repeat = args.accounts, args.concurrency, args.repeat
    start, t0 = Cpu.now(), time.monotonic()
    warm = min(100, n)
    await dispatch_round(client, firing, playbooks, warm, c, "warm")
    await raw_round(raw, warm, c, "warm")
    dispatch_rates, raw_rates = [], []
    for r in range(repeat):  # interleaved, so drift on the server hits both alike
        raw_rates.append(await raw_round(raw, n, c, str(r)))
        dispatch_rates.append(await dispatch_round(client, firing, playbooks, n, c, str(r)))
    d_rate, r_rate = statistics.median(dispatch_rates), statistics.median(raw_rates)
    async with raw_worker(raw):
        done_rate = await raw_complete(raw, n, c)
    ratio = d_rate / r_rate
    print(
        f"\nA/B. Workflow starts: {n:,} per path and round, {c} in flight, median of {repeat} "
        "interleaved rounds after warm-up; no worker polls the started queues"
    )
    print(f"  {'path':<56} {'per s':>7} {'vs raw starts':>14}")
    for name, rate in (
        ("csautomation dispatch (usage-decline -> usage-recovery)", d_rate),
        ("raw SDK start_workflow, one-activity workflow (ceiling)", r_rate),
        ("raw SDK start + complete, worker in process (completed/s)", done_rate),
    ):
        print(f"  {name:<56} {rate:>7,.0f} {rate / r_rate:>13.2f}x")
    rounds = ", ".join(f"{d:,.0f}/{r:,.0f}" for d, r in zip(dispatch_rates, raw_rates, strict=True))
    print(f"  rounds, dispatch/raw starts/s: {rounds}")
    print(f"  {Cpu.now().since(start, time.monotonic() - t0)}")
    met_a = ratio >= 0.70
    print(
        f"goal dispatch starts/s / raw starts/s >= 0.70: {'met' if met_a else 'NOT met'} "
        f"({ratio:.2f})"
    )

    rates = [float(x) for x in args.rates.split(",")]
    peers = []
    async with raw_worker(raw):  # before C, whose workers are never shut down
        for rate in rates:
            peers.append(await raw_latency(raw, args.peer, rate, f"{rate:g}"))
    share = n // len(rates)
    phases = [Phase(rate, ids[i * share : (i + 1) * share]) for i, rate in enumerate(rates)]
    print(
        f"\nC. Signal -> task created: {n:,} accounts, {share:,} per rate, one usage_daily "
        "signal each at a steady rate; each signal fires usage-decline (usage-recovery "
        "playbook, whose first step creates the task) and sharp-health-drop (an escalation). "
        f"Peer: the raw SDK at the same rates ({args.peer} starts each, its worker alone)"
    )
    meter = StageCpu()
    await signal_latency(
        client,
        store,
        model,
        playbooks,
        phases,
        args.settle,
        core,
        meter,
        args.stages,
        (args.address, args.worker_processes),
    )
    print(LAT_HEADER)
    for phase, peer in zip(phases, peers, strict=True):
        for row in phase.rows:
            print(row.row())
        print(peer.latency.row())
    met_c = args.goal_rate in rates
    for phase, peer in zip(phases, peers, strict=True):
        main = phase.rows[0]
        judged = phase.rate == args.goal_rate
        if not main.values:
            print(f"signal -> task at {phase.rate:g}/s: no tasks")
            met_c = met_c and not judged
            continue
        p95 = pct(main.values, 95)
        complete = len(main.values) == len(phase.ids)
        ok = complete and p95 < 1.0
        if judged:
            met_c = met_c and ok
        cpu_ms = phase.cpu * 1000 / len(phase.ids)
        print(
            f"{phase.rate:g}/s: offered {phase.achieved:.1f}/s (raw {peer.rate:.1f}/s); tasks "
            f"{phase.throughput:.1f}/s, first offer to last task; "
            f"{'these processes' if phase.worker_cpu else 'this process'} "
            f"{cpu_ms:.0f} ms CPU per signal; workflow tasks over "
            f"5 s: {phase.slow_tasks}; p95 vs raw SDK {p95 / pct(peer.latency.values, 95):.1f}x"
        )
        # a signal here starts two workflows (a playbook and an escalation)
        print(
            f"  CPU per signal {cpu_ms:.1f} ms; the raw SDK {peer.cpu_ms:.1f} ms per "
            f"one-activity workflow at this rate, {2 * peer.cpu_ms:.1f} ms for two: "
            f"{cpu_ms / (2 * peer.cpu_ms):.2f}x; goal CPU per signal <= 25 ms: "
            f"{'met' if cpu_ms <= 25 else 'NOT met'}"
        )
        print(f"  {phase.usage}")
        if phase.worker_cpu:
            print(
                f"  CPU ms per signal: pipeline process "
                f"{(phase.cpu - phase.worker_cpu) * 1000 / len(phase.ids):.1f}, worker processes "
                f"{phase.worker_cpu * 1000 / len(phase.ids):.1f}"
            )
        if args.stages:
            own = phase.cpu - phase.worker_cpu  # the stages are timed in this process only
            print(f"  CPU ms per signal by stage ({phase.rate:g}/s, this process):")
            for line in stage_table(phase.stages, own, phase.core_threads, len(phase.ids)):
                print(f"  {line}")
        verdict = ("met" if ok else "NOT met") if judged else ("under" if ok else "over")
        print(
            f"{'goal ' if judged else ''}signal -> task p95 < 1 s at {phase.rate:g}/s: "
            f"{verdict} ({p95 * 1000:,.0f} ms, {len(main.values)}/{len(phase.ids)} tasks)"
        )
    for message in core.others[:5]:
        print(f"SDK core warning: {message}")
    return met_a and met_c


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1000, help="N for A, B and C")
    ap.add_argument("--concurrency", type=int, default=100, help="starts in flight (A, B)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved start rounds (A, B)")
    ap.add_argument("--rates", default="5,10,15", help="signals/s offered (C), accounts split")
    ap.add_argument(
        "--goal-rate",
        type=float,
        default=10.0,
        help="signals/s at which the p95 < 1 s goal is judged (one of --rates)",
    )
    ap.add_argument("--peer", type=int, default=150, help="raw SDK latency samples per rate")
    ap.add_argument("--settle", type=float, default=60.0, help="s to wait for a phase's tasks")
    ap.add_argument(
        "--no-stages",
        dest="stages",
        action="store_false",
        help="C without the stage timers (to see what timing costs)",
    )
    ap.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="C with the workers in this many processes of their own (csauto worker beside "
        "csauto pipeline, as production runs them); 0: in this process, as csauto dev",
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met")
    ap.add_argument("--watchdog", type=float, default=600.0, help="s before dumping and exiting")
    args = ap.parse_args()
    # a worker shutdown once hung inside the SDK's native code: never hang a `make bench`
    faulthandler.dump_traceback_later(args.watchdog, exit=True)
    # the collector as every csauto command sets it (cli/common.py `run`)
    gc.set_threshold(10_000, 10, 10)
    core = CoreWarnings()
    core.install()  # before any client exists
    raise SystemExit(asyncio.run(run(args, core)))


if __name__ == "__main__":
    main()
