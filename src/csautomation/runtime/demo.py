"""`csauto demo`: the whole system on embedded defaults, from signals to CRM tasks.

1. A fresh data folder: SQLite store and the bundled Temporal dev server's SQLite database.
2. The sample data set: accounts and 180 days of signals. All days but the last are loaded
   as history (context for facts); the last day's signals then arrive one by one through
   the live path: stored durably, evaluated by the shipped rules, dispatched to workflows.
3. Workers serve the four priority queues; the playbooks create tasks in the local CRM.
4. Waits are shortened, not skipped: every playbook runs with `time_scale` so that one
   playbook day lasts `day_seconds` (1 s by default; the dev server's timers tick in whole
   seconds). Facts stay as of the sample's last day. Simulated CSMs complete a share of
   their tasks a playbook day after they were created, signalling the playbook as the
   local CRM's completion sync does; the others time out and escalate.
5. `--serve` keeps it all up: the review pages, "My work", and the signal intake with a
   documented demo token (runtime/demo_app.py). Playbooks that signals start from then on
   run at real time and wait for people, not simulated CSMs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client

from csautomation.activities.escalation import EscalationActivities
from csautomation.activities.playbook import PlaybookActivities
from csautomation.api.server import serving
from csautomation.datafiles import read_jsonl
from csautomation.escalation.matrix import EscalationMatrix, load_escalation_config
from csautomation.escalation.people import People
from csautomation.facts.days import end_of_day
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account, Signal
from csautomation.ingest.completions import complete_task
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.playbooks.spec import Playbook
from csautomation.rules.runtime import RuleRuntime
from csautomation.runtime.demo_app import demo_app, signal_hint, token_hint
from csautomation.runtime.server import quiet_runtime, start_dev_server
from csautomation.runtime.worker import build_workers
from csautomation.store.escalations import Filters, list_escalations
from csautomation.store.facts import FactsReader
from csautomation.store.outbox import (
    firings_per_rule,
    mark_all_evaluated,
    open_tasks,
    run_counts,
    runs,
    tasks_per_assignee,
    undispatched_firings,
)
from csautomation.store.repo import Store, local_tasks

DAY = 86400.0


@dataclass
class DemoOptions:
    data_dir: Path
    sample_dir: Path
    rule_paths: Sequence[Path]
    playbooks: dict[str, Playbook]
    model: HealthModel
    accounts: int = 500
    day_seconds: float = 1.0
    complete_share: float = 0.6
    timeout: float = 900.0
    serve: bool = False
    matrix_path: Path = Path("escalation_matrix.yaml")
    people_path: Path = Path("people.yaml")
    review_port: int = 8000  # the manager's review page on 127.0.0.1 (0: any free port)
    temporal_log_level: str = "error"  # the dev server's own log


@dataclass
class DemoResult:
    signals: int
    firings: dict[str, int]
    runs_by_status: Counter[str]
    outcomes: Counter[str]
    tasks_per_csm: dict[str, int]
    notifications: int
    first_task_latency: list[float] = field(default_factory=list)
    ui_url: str = ""
    elapsed: float = 0.0
    review_url: str = ""
    # escalations from the store's index, not the runs index (which lists only those a
    # rule started, not those a playbook step opened)
    escalations: Counter[str] = field(default_factory=Counter)  # open now, by severity
    acknowledged: int = 0  # of those, acknowledged (a CSM completed the escalation's task)
    opened: int = 0  # escalations opened in this run
    resolved: int = 0  # of those, resolved


def load_sample(sample_dir: Path, accounts: int = 500) -> tuple[list[Account], list[Signal]]:
    acc, sig = sample_dir / "accounts.jsonl", sample_dir / "signals.jsonl"
    if not (acc.exists() and sig.exists()):
        from csautomation.sample.generate import write_sample

        write_sample(sample_dir, n_accounts=accounts)
    return read_jsonl(acc, Account), read_jsonl(sig, Signal)


@contextlib.asynccontextmanager
async def _background(*coros: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def _csms(
    client: Client,
    store: Store,
    share: float,
    after: timedelta,
    done: set[int],
    stop: asyncio.Event,
) -> None:
    """Simulated CSMs: each task is completed, or not, by a fixed draw on its key; they
    stop when `stop` is set (a serving demo leaves new tasks to the people signed in)."""
    while not stop.is_set():
        now = datetime.now(UTC)
        for task in await asyncio.to_thread(open_tasks, store):
            assert task.id is not None
            if task.id in done:
                continue
            created = (
                task.created_at if task.created_at.tzinfo else task.created_at.replace(tzinfo=UTC)
            )
            if now - created < after:
                continue
            done.add(task.id)
            if zlib.crc32(task.idempotency_key.encode()) % 1000 < share * 1000:
                await complete_task(client, store, task.id, by=task.assignee)
        await asyncio.sleep(0.25)


async def run_demo(opts: DemoOptions, console: Console) -> DemoResult:
    started = datetime.now(UTC)
    if opts.data_dir.exists():
        shutil.rmtree(opts.data_dir)
    opts.data_dir.mkdir(parents=True)
    store = Store(f"sqlite:///{opts.data_dir}/csauto.db")
    store.create_all()

    console.print(f"loading the sample data set from {opts.sample_dir}/ ...")
    accounts, signals = await asyncio.to_thread(load_sample, opts.sample_dir, opts.accounts)
    last_day = max(s.day for s in signals)
    history = [s for s in signals if s.day < last_day]
    today = sorted((s for s in signals if s.day == last_day), key=lambda s: s.occurred_at)
    await asyncio.to_thread(store.upsert_accounts, accounts)
    await asyncio.to_thread(store.add_signals, history)
    await asyncio.to_thread(mark_all_evaluated, store)
    console.print(
        f"{len(accounts)} accounts, {len(history):,} signals of history up to {last_day}; "
        f"{len(today)} signals arrive on {last_day}"
    )

    as_of = end_of_day(last_day)  # the facts' "today": all of the last day's signals count
    runtime = RuleRuntime(list(opts.rule_paths), opts.model, cooldowns=SqlCooldowns(store))
    console.print(f"starting the Temporal dev server (SQLite in {opts.data_dir}) ...")
    matrix, people = load_escalation_config(opts.matrix_path, opts.people_path)
    server = await start_dev_server(
        opts.data_dir, runtime=quiet_runtime(), log_level=opts.temporal_log_level
    )
    env, ui_url = server.env, server.ui_url
    try:
        app = demo_app(store, people, env.client, rules=lambda: runtime.ruleset)
        async with serving(app, "127.0.0.1", opts.review_port) as page:
            manager = next((p for p in people.people if p.role == "manager" and p.sign_in), None)
            hint = f" (sign in as {manager.id}, password demo-{manager.id})" if manager else ""
            console.print(f"the managers' review page: {page}{hint}")
            csm = next((p for p in people.people if p.role == "csm" and p.sign_in), None)
            if csm is not None:
                console.print(
                    f"a CSM's tasks: {page}/my-work (sign in as {csm.id}, password demo-{csm.id})"
                )
            console.print(token_hint(page), markup=False, soft_wrap=True)
            escalations = (matrix, people, page)
            result = await _run(
                opts,
                console,
                store,
                runtime,
                env.client,
                (started, as_of),
                today,
                ui_url,
                escalations,
            )
    finally:
        await server.shutdown()
        runtime.close()
        store.engine.dispose()
    result.elapsed = (datetime.now(UTC) - started).total_seconds()
    return result


async def _run(
    opts: DemoOptions,
    console: Console,
    store: Store,
    runtime: RuleRuntime,
    client: Client,
    times: tuple[datetime, datetime],
    today: list[Signal],
    ui_url: str,
    escalations: tuple[EscalationMatrix, People, str],
) -> DemoResult:
    since, as_of = times  # when the run started; the facts' "today"
    facts = FactsReader(store, opts.model)  # one derivation serves rules and playbooks
    activities = PlaybookActivities(store, opts.model, clock=lambda: as_of, facts=facts)
    matrix, people, page = escalations
    extra = EscalationActivities(activities, matrix, people, page_url=page).all()
    pipeline = Pipeline(
        store, runtime, opts.playbooks, client, time_scale=opts.day_seconds / DAY, facts=facts
    )
    workers = build_workers(client, activities, extra=extra)
    ingested: dict[str, datetime] = {}
    stop_csms = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        await stack.enter_async_context(
            _background(
                pipeline.run_forever(poll=0.5),
                _csms(
                    client,
                    store,
                    opts.complete_share,
                    timedelta(seconds=opts.day_seconds),
                    set(),
                    stop_csms,
                ),
            )
        )
        with Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            p_sig = progress.add_task("signals evaluated", total=len(today))
            p_start = progress.add_task("workflows started", total=None)
            p_done = progress.add_task("workflows completed", total=None)
            fresh = await _arrive(pipeline, today, ingested)
            progress.update(p_sig, total=fresh)
            deadline = asyncio.get_running_loop().time() + opts.timeout
            while True:
                # escalations stay open for the managers: the demo waits for playbooks
                counts = await asyncio.to_thread(run_counts, store, "playbook")
                started = sum(counts.values())
                closed = started - counts.get("running", 0)
                outbox = await asyncio.to_thread(undispatched_firings, store, 1)
                progress.update(p_sig, completed=pipeline.counts.evaluated)
                progress.update(p_start, completed=started, total=started or None)
                progress.update(p_done, completed=closed, total=started or None)
                settled = pipeline.counts.evaluated >= fresh and not outbox
                if settled and closed == started:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    console.print(f"[yellow]stopped waiting after {opts.timeout:.0f} s[/yellow]")
                    break
                await asyncio.sleep(0.25)
        if opts.serve:  # the workers stay: the page's buttons signal live workflows
            shown = demo_result(store, since, today, ingested, ui_url, escalations[2])
            print_summary(shown, console, opts.data_dir)
            # what arrives from now on waits for a person on "My work": no simulated CSMs,
            # and playbook days that last a day, so a task is there to be done
            stop_csms.set()
            pipeline.time_scale = 1.0
            await _serve(console, signal_hint(store, people, page, as_of.date()), page, ui_url)
    return demo_result(store, since, today, ingested, ui_url, escalations[2])


async def _arrive(pipeline: Pipeline, today: list[Signal], ingested: dict[str, datetime]) -> int:
    """The day's signals arrive at once, as a pull or a batch POST brings them: stored in
    one transaction before any counts. Notes when each account's arrived; returns how many
    were new."""
    new = await asyncio.to_thread(pipeline.add_signals, today)
    stored = datetime.now(UTC)
    for sig in today:
        if sig.idempotency_key in new:
            ingested.setdefault(sig.account_id, stored)
    return len(new)


async def _serve(console: Console, hint: str, page: str, ui_url: str) -> None:
    console.print(hint, markup=False, soft_wrap=True)
    console.print(
        f"serving the review page at {page} and the Temporal UI at {ui_url}; press Ctrl-C to stop"
    )
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


def demo_result(
    store: Store,
    since: datetime,
    today: list[Signal],
    ingested: dict[str, datetime],
    ui_url: str,
    page: str,
) -> DemoResult:
    """What the summary shows, counted from the store; `since`: when the run started."""
    all_runs = runs(store)
    # the escalations index holds every escalation, whoever opened it (a rule's escalate
    # action or a playbook's escalate step); the runs index only those a rule started
    every = list_escalations(store, Filters(status=("open", "acknowledged", "snoozed", "resolved")))
    unresolved = [s for s in every if s.status != "resolved"]
    opened = [s for s in every if s.opened_at >= since]
    tasks = [t for t in local_tasks(store) if t.kind == "task"]
    first: dict[str, datetime] = {}
    for t in tasks:
        created = t.created_at if t.created_at.tzinfo else t.created_at.replace(tzinfo=UTC)
        if t.account_id not in first or created < first[t.account_id]:
            first[t.account_id] = created
    latency = [(first[a] - ingested[a]).total_seconds() for a in first if a in ingested]
    return DemoResult(
        signals=len(today),
        firings=firings_per_rule(store),
        runs_by_status=Counter(f"{r.kind}:{r.status}" for r in all_runs),
        outcomes=Counter(r.outcome for r in all_runs if r.kind == "playbook" and r.outcome),
        tasks_per_csm=tasks_per_assignee(store),
        notifications=sum(1 for t in local_tasks(store) if t.kind == "notification"),
        first_task_latency=latency,
        ui_url=ui_url,
        review_url=page,
        escalations=Counter(s.severity for s in unresolved),
        acknowledged=sum(1 for s in unresolved if s.status == "acknowledged"),
        opened=len(opened),
        resolved=sum(1 for s in opened if s.status == "resolved"),
    )


def print_summary(result: DemoResult, console: Console, data_dir: Path) -> None:
    fired = Table(title="Rules fired")
    fired.add_column("rule")
    fired.add_column("firings", justify="right")
    for rule_id, n in sorted(result.firings.items(), key=lambda kv: (-kv[1], kv[0])):
        fired.add_row(rule_id, str(n))
    fired.add_row("[bold]total[/bold]", f"[bold]{sum(result.firings.values())}[/bold]")
    console.print(fired)

    wf = Table(
        title="Workflows",
        caption="escalation: every one opened in this run, by a rule or a playbook step",
    )
    wf.add_column("kind")
    wf.add_column("started", justify="right")
    wf.add_column("completed", justify="right")
    wf.add_column("still running", justify="right")
    total = sum(n for k, n in result.runs_by_status.items() if k.startswith("playbook:"))
    running = result.runs_by_status.get("playbook:running", 0)
    wf.add_row("playbook", str(total), str(total - running), str(running))
    still_open = result.opened - result.resolved
    wf.add_row("escalation", str(result.opened), str(result.resolved), str(still_open))
    console.print(wf)

    outcomes = Table(title="Playbook outcomes")
    outcomes.add_column("outcome")
    outcomes.add_column("runs", justify="right")
    for outcome, n in result.outcomes.most_common():
        outcomes.add_row(outcome, str(n))
    console.print(outcomes)

    csm = Table(title="Tasks per CSM", caption="in the local CRM")
    csm.add_column("CSM")
    csm.add_column("tasks", justify="right")
    for who, n in sorted(result.tasks_per_csm.items()):
        csm.add_row(who, str(n))
    csm.add_row("[bold]total[/bold]", f"[bold]{sum(result.tasks_per_csm.values())}[/bold]")
    console.print(csm)

    if result.first_task_latency:
        lat = sorted(result.first_task_latency)
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        console.print(
            f"signal stored -> first task created, the day's {result.signals} signals arriving "
            f"at once: p50 {statistics.median(lat):.2f} s, p95 {p95:.2f} s over {len(lat)} "
            "accounts (at a steady 15 signals/s, with the workers in processes of their own, "
            "p95 is under 1 s: docs/benchmarks.md)"
        )
    console.print(
        f"{result.signals} signals, {sum(result.firings.values())} firings, "
        f"{result.notifications} notifications, in {result.elapsed:.0f} s"
    )
    console.print(
        f"escalations opened in this run: {result.opened}, {result.resolved} of them resolved"
    )
    if result.escalations:
        total = sum(result.escalations.values())
        console.print(
            f"{total} escalations open for the managers now, in the store ("
            + ", ".join(f"{n} {sev}" for sev, n in result.escalations.most_common())
            + f"; {result.acknowledged} acknowledged, {total - result.acknowledged} waiting): "
            f"review page {result.review_url} (while it runs: `csauto demo --serve`)"
        )
    console.print(
        f"Temporal UI: {result.ui_url}/namespaces/default/workflows (while the server runs). "
        f"To look at these runs later, without resuming them: csauto browse --data-dir "
        f"{data_dir}"
    )
