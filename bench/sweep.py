"""bench/sweep: a scheduled rule over every account, and the workflows its firings start.

In one run:

A. the sweep: `scheduling.sweep.sweep` of one cron rule (default usage-decline, the
   shipped rule with the widest facts) over N accounts (default 100,000), each with D days
   of the sample generator's history (usage a day, meetings, tickets, NPS, contract), as
   the scheduler runs it, timed per stage: accounts read, histories read, facts derived,
   batch evaluated (columns and conditions), matches explained and cooldowns checked,
   firings committed. Run twice: cold (a new `FactsReader`, as the scheduler's first sweep)
   and warm (the same reader, the next day's sweep with nothing new).
B. dispatch: the sweep's firings started on the local Temporal dev server by
   `Pipeline.dispatch_pending` (no worker polls the queues), against its peer, the raw
   temporalio SDK starting a trivial workflow as many times with the same concurrency
   (64 in flight, as dispatch keeps), interleaved rounds, median reported.

The seeded database is kept in the system's temporary folder, keyed by N and D, so a
second run skips the seeding.

    .venv/bin/python bench/sweep.py [--accounts 100000] [--days 35] [--rule usage-decline]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from temporalio import workflow
from temporalio.client import Client

from csautomation import bootstrap
from csautomation.facts.model import Account
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.runtime.server import start_dev_server
from csautomation.sample import generate as sample
from csautomation.scheduling import sweep as sweeping
from csautomation.store.engine import table
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.store.tables import RuleFiringRow, SignalRow

END = date(2026, 11, 1)
AT = datetime(2026, 11, 2, 6, tzinfo=UTC)  # the cron's time: 06:00 the day after the data
CONCURRENCY = 64
RAW_QUEUE = "bench-sweep-raw"
QUEUES = {p: f"bench-sweep-{p}" for p in ("critical", "high", "medium", "low")}


# ---- data -----------------------------------------------------------------------------------


def accounts_and_signals(
    n: int, days: int, chunk: int = 2000
) -> Iterator[tuple[list[Account], list[dict[str, Any]]]]:
    """The sample generator's accounts and their histories, `chunk` accounts at a time."""
    rnd = random.Random(7)
    for start in range(0, n, chunk):
        accounts, rows = [], []
        for i in range(start, min(n, start + chunk)):
            archetype = "usage_decline" if i == 0 else sample._pick(rnd, sample.ARCHETYPES)
            account = sample._account(i, rnd, END, archetype)
            accounts.append(account)
            rows.extend(
                sample._signals(account, archetype, rnd, END, days, sample._cliff(archetype, 7, i))
            )
        yield accounts, rows


def seed(url: str, n: int, days: int) -> Store:
    store = Store(url)
    store.create_all()
    t = table(SignalRow)
    with store.engine.connect() as conn:
        have = int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
    if have:
        print(f"seeded before: {have:,} signals")
        return store
    began, total = time.perf_counter(), 0
    received = datetime(2026, 11, 1, 23, tzinfo=UTC)
    for accounts, rows in accounts_and_signals(n, days):
        store.upsert_accounts(accounts)
        values = [
            {
                "idempotency_key": r["idempotency_key"],
                "account_id": r["account_id"],
                "type": r["type"],
                "occurred_at": datetime.fromisoformat(r["occurred_at"]),
                "payload": r["payload"],
                "received_at": received,
                "evaluated_at": received,  # history: context, not news
            }
            for r in rows
        ]
        with store.engine.begin() as conn:
            conn.execute(insert(t), values)
        total += len(values)
        print(f"\rseeding: {total:,} signals", end="", file=sys.stderr)
    print(
        f"\rseeded {n:,} accounts, {total:,} signals in {time.perf_counter() - began:.0f} s",
        file=sys.stderr,
    )
    return store


def clear_firings(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(table(RuleFiringRow).delete())


# ---- A. the sweep -----------------------------------------------------------------------------


class Stages:
    """Wall seconds per stage of one sweep, by wrapping the functions it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - began

        self._saved.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


def run_sweep(store: Store, runtime: RuleRuntime, rule: str, reader: FactsReader) -> dict[str, Any]:
    stages = Stages()
    pages = sweeping._accounts  # a generator: timed page by page

    def timed_pages(s: Store, chunk: int) -> Iterator[list[Account]]:
        it = pages(s, chunk)
        while True:
            began = time.perf_counter()
            page = next(it, None)
            stages.seconds["accounts read"] = (
                stages.seconds.get("accounts read", 0.0) + time.perf_counter() - began
            )
            if page is None:
                return
            yield page

    sweeping._accounts = timed_pages  # type: ignore[assignment]
    stages.wrap(FactsReader, "histories", "histories read")
    stages.wrap(sweeping.FactsReader, "records_or_errors", "facts (read + derive)")
    stages.wrap(sweeping.Columns, "from_records", "columns built")
    stages.wrap(sweeping.BatchEvaluator, "evaluate", "conditions evaluated")
    stages.wrap(sweeping, "explain", "matches explained")
    stages.wrap(sweeping, "BatchCooldowns", "cooldowns read")
    stages.wrap(sweeping, "commit_evaluation", "firings committed")
    began, cpu = time.perf_counter(), time.process_time()
    try:
        result = sweeping.sweep(store, runtime, [rule], AT, facts=reader)
    finally:
        stages.restore()
        sweeping._accounts = pages  # type: ignore[assignment]
    wall = time.perf_counter() - began
    return {
        "result": result,
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "stages": stages.seconds,
    }


def show_sweep(label: str, run: dict[str, Any]) -> None:
    r, s = run["result"], run["stages"]
    print(
        f"  {label}: {r.accounts:,} accounts in {run['wall']:.2f} s "
        f"({r.accounts / run['wall']:,.0f} accounts/s; CPU {run['cpu']:.2f} s); "
        f"{r.matched:,} matched, {r.fired:,} fired, {r.suppressed:,} suppressed, "
        f"{r.unreadable} unreadable"
    )
    derive = s.get("facts (read + derive)", 0.0) - s.get("histories read", 0.0)
    rows = [
        ("accounts read", s.get("accounts read", 0.0)),
        ("histories read", s.get("histories read", 0.0)),
        ("facts derived", derive),
        ("columns built", s.get("columns built", 0.0)),
        ("conditions evaluated", s.get("conditions evaluated", 0.0)),
        ("matches explained", s.get("matches explained", 0.0)),
        ("cooldowns read", s.get("cooldowns read", 0.0)),
        ("firings committed", s.get("firings committed", 0.0)),
    ]
    other = run["wall"] - sum(v for _, v in rows)
    for name, seconds in [*rows, ("other", other)]:
        share = seconds / run["wall"] if run["wall"] else 0.0
        per = seconds / max(r.accounts, 1) * 1e6
        print(f"    {name:<22} {seconds:7.2f} s  {share:5.0%}  {per:7.1f} µs/account")


# ---- B. dispatch against the raw SDK -------------------------------------------------------


@workflow.defn(name="BenchSweepNothing")
class NothingWorkflow:
    @workflow.run
    async def run(self, account_id: str) -> str:
        return account_id


async def raw_starts(client: Client, n: int, tag: str) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await client.start_workflow(
                NothingWorkflow.run, f"A{i}", id=f"raw-{tag}-{i}", task_queue=RAW_QUEUE
            )

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - began)


async def dispatch_all(pipeline: Pipeline) -> tuple[int, float]:
    began, total = time.perf_counter(), 0
    while n := await pipeline.dispatch_pending():
        total += n
    return total, total / (time.perf_counter() - began)


async def bench_dispatch(
    store: Store, runtime: RuleRuntime, config: Any, rounds: int
) -> list[tuple[float, float]]:
    data = Path(tempfile.mkdtemp(prefix="csauto-bench-sweep-temporal-"))
    server = await start_dev_server(data, port=None, ui=False)
    try:
        client = server.env.client
        out = []
        for k in range(rounds):
            # each round dispatches the sweep's firings afresh: new windows, new workflow ids
            with store.engine.begin() as conn:
                t = table(RuleFiringRow)
                conn.execute(
                    update(t).values(dispatched_at=None, window=t.c.window + 1_000_000 * (k + 1))
                )
            pipeline = Pipeline(store, runtime, config.playbooks, client, queues=QUEUES)
            started, ours = await dispatch_all(pipeline)
            raw = await raw_starts(client, started, f"r{k}")
            out.append((ours, raw))
            print(f"  round {k + 1}: dispatch {ours:,.0f}/s ({started:,}), raw {raw:,.0f}/s")
        return out
    finally:
        await server.shutdown()


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--rule", default="usage-decline")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--dispatch", type=int, default=5000, help="firings dispatched per round, at most"
    )
    args = ap.parse_args()

    url = args.database_url or (
        f"sqlite:///{tempfile.gettempdir()}/csauto-bench-sweep-{args.accounts}-{args.days}.db"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}; load average {os.getloadavg()[0]:.2f}; {url.split('://')[0]}"
    )
    store = seed(url, args.accounts, args.days)
    settings = bootstrap.settings()
    config = bootstrap.load_configuration(settings)
    runtime = RuleRuntime([settings.rules_path], config.model, cooldowns=SqlCooldowns(store))

    print(f"\nA. Sweep of {args.rule} over {args.accounts:,} accounts, {args.days} days each")
    clear_firings(store)
    reader = FactsReader(store, config.model, max_accounts=args.accounts + 1)
    cold = run_sweep(store, runtime, args.rule, reader)
    show_sweep("cold (first sweep, new reader)", cold)
    clear_firings(store)
    warm = run_sweep(store, runtime, args.rule, reader)
    show_sweep("warm (same reader, nothing new)", warm)
    met = cold["wall"] < 10 and args.accounts >= 100_000
    print(
        f"goal sweep of 100,000 accounts < 10 s: {'met' if met else 'not met'} "
        f"({cold['wall']:.1f} s)"
    )

    fired = cold["result"].fired
    if not fired:
        print("no firings: nothing to dispatch")
        return
    with store.engine.begin() as conn:  # dispatch at most --dispatch of them
        t = table(RuleFiringRow)
        first = select(t.c.id).order_by(t.c.id).limit(args.dispatch).subquery()
        conn.execute(t.delete().where(t.c.id.not_in(select(first.c.id))))
    print(
        f"\nB. Dispatch of the sweep's firings (up to {args.dispatch:,}), {CONCURRENCY} in flight"
    )
    rounds = asyncio.run(bench_dispatch(store, runtime, config, args.rounds))
    ours = statistics.median(r[0] for r in rounds)
    raw = statistics.median(r[1] for r in rounds)
    print(
        f"  median: dispatch {ours:,.0f} starts/s, raw SDK {raw:,.0f} starts/s: {ours / raw:.2f}x"
    )
    print(
        f"goal dispatch >= 0.8x raw SDK starts: {'met' if ours / raw >= 0.8 else 'not met'} "
        f"({ours / raw:.2f}x)"
    )


if __name__ == "__main__":
    main()
