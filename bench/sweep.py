"""bench/sweep: a scheduled rule over every account, and the workflows its firings start.

In one run:

A. the sweep: `scheduling.sweep.sweep` of one cron rule (default usage-decline, the
   shipped rule with the widest facts) over N accounts (default 100,000), each with D days
   (default 61: usage-decline compares 30 days with the 30 before) of the sample
   generator's history (usage a day, meetings, tickets, NPS, contract), as the scheduler
   runs it, with the facts it keeps between sweeps (`scheduling/sweep_facts.py`), timed
   per stage: its first sweep (every row read), the same day again (nothing new), and the
   next day after a day's news (a usage signal for every account, a churn prediction for
   one in seven), whose records are then checked against the FactsReader's. `--reader`
   also runs a first sweep by the FactsReader, as sweeps ran before.
B. dispatch: the sweep's firings started on the local Temporal dev server by
   `Pipeline.dispatch_pending` (no worker polls the queues), against its peer, the raw
   temporalio SDK starting a trivial workflow as many times with the same concurrency
   (64 in flight, as dispatch keeps), interleaved rounds, median reported.
   `--dispatch-only`: B alone, on the firings a previous run left.

The seeded database (D distinct sample histories repeated under their own account ids) is
kept in the system's temporary folder, keyed by N, D and the distinct count, so a second
run skips the seeding; the next day's signals are removed at the end.

    .venv/bin/python bench/sweep.py [--accounts 100000] [--days 61] [--rule usage-decline]
        [--reader] [--dispatch-only] [--dispatch 5000 (0: A alone)] [--rounds 2]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from temporalio import workflow
from temporalio.client import Client

from csautomation import bootstrap
from csautomation.facts.derive_many import LastDay
from csautomation.facts.model import Account
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.batch import Columns
from csautomation.rules.runtime import RuleRuntime
from csautomation.runtime.server import start_dev_server
from csautomation.sample import generate as sample
from csautomation.scheduling import sweep as sweeping
from csautomation.scheduling import sweep_facts
from csautomation.scheduling.sweep_facts import SweepFacts
from csautomation.store.columnar import ColumnarHistories
from csautomation.store.engine import table
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.store.tables import AccountRow, RuleFiringRow, SignalRow, partition_of

END = date(2026, 11, 1)
AT = datetime(2026, 11, 2, 6, tzinfo=UTC)  # the cron's time: 06:00 the day after the data
CONCURRENCY = 64
RAW_QUEUE = "bench-sweep-raw"
QUEUES = {p: f"bench-sweep-{p}" for p in ("critical", "high", "medium", "low")}


# ---- data -----------------------------------------------------------------------------------


def templates(n: int, days: int) -> tuple[list[Account], list[list[dict[str, Any]]]]:
    """The sample generator's accounts and their histories (the generator makes a few
    thousand rows a second: more accounts repeat these, under their own ids)."""
    rnd = random.Random(7)
    accounts, histories = [], []
    for i in range(n):
        archetype = "usage_decline" if i == 0 else sample._pick(rnd, sample.ARCHETYPES)
        account = sample._account(i, rnd, END, archetype)
        accounts.append(account)
        histories.append(
            sample._signals(account, archetype, rnd, END, days, sample._cliff(archetype, 7, i))
        )
    return accounts, histories


class Rows:
    """Signal rows inserted with one prepared statement: through the driver's executemany
    on SQLite (SQLAlchemy's per-row defaults and processing would triple the seeding time),
    SQLAlchemy Core elsewhere."""

    COLUMNS = (
        "idempotency_key",
        "account_id",
        "type",
        "occurred_at",
        "payload",
        "received_at",
        "evaluated_at",
        "part",
    )

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sqlite = store.engine.dialect.name == "sqlite"
        stmt = insert(table(SignalRow)).values({c: bindparam(c) for c in self.COLUMNS})
        compiled = stmt.compile(dialect=store.engine.dialect)
        self.sql, self.order = str(compiled), compiled.positiontup

    def when(self, moment: datetime) -> Any:
        moment = moment.astimezone(UTC)
        # SQLAlchemy's SQLite DateTime storage format, so that it reads them back
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else moment

    def payload(self, value: dict[str, Any]) -> Any:
        return json.dumps(value) if self.sqlite else value

    def insert(self, rows: list[dict[str, Any]]) -> None:
        if not self.sqlite:
            with self.store.engine.begin() as conn:
                conn.execute(insert(table(SignalRow)), rows)
            return
        raw = self.store.engine.raw_connection()
        try:
            assert self.order is not None
            raw.cursor().executemany(self.sql, [tuple(r[c] for c in self.order) for r in rows])
            raw.commit()
        finally:
            raw.close()


def seed(url: str, n: int, days: int, distinct: int) -> Store:
    store = Store(url)
    store.create_all()
    t = table(SignalRow)
    with store.engine.connect() as conn:
        have = int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
    if have:
        print(f"seeded before: {have:,} signals")
        return store
    began, total = time.perf_counter(), 0
    accounts, histories = templates(min(n, distinct), days)
    print(f"generated {len(accounts):,} distinct histories in {time.perf_counter() - began:.0f} s")
    out = Rows(store)
    received = out.when(datetime(2026, 11, 1, 23, tzinfo=UTC))
    # each distinct history's rows once: type, moment and payload as stored
    stored = [
        [
            (
                r["type"],
                out.when(datetime.fromisoformat(r["occurred_at"])),
                out.payload(r["payload"]),
            )
            for r in rows
        ]
        for rows in histories
    ]
    for start in range(0, n, 2000):
        ids = range(start, min(n, start + 2000))
        data = []
        rows: list[dict[str, Any]] = []
        for i in ids:
            j = i % len(accounts)
            account_id = f"A{i:07d}"
            data.append(
                {
                    "id": account_id,
                    "tenant": "default",
                    "updated_at": datetime.now(UTC),
                    "data": accounts[j].model_dump(mode="json")
                    | {"id": account_id, "name": f"{accounts[j].name} ({i})"},
                }
            )
            part = partition_of(account_id)
            rows.extend(
                {
                    "idempotency_key": f"{account_id}-{k}",
                    "account_id": account_id,
                    "type": kind,
                    "occurred_at": at,
                    "payload": payload,
                    "received_at": received,
                    "evaluated_at": received,  # history: context, not news
                    "part": part,
                }
                for k, (kind, at, payload) in enumerate(stored[j])
            )
        with store.engine.begin() as conn:
            conn.execute(insert(table(AccountRow)), data)
        out.insert(rows)
        total += len(rows)
        print(f"\rseeding: {total:,} signals", end="", file=sys.stderr)
    print(
        f"\rseeded {n:,} accounts, {total:,} signals in {time.perf_counter() - began:.0f} s",
        file=sys.stderr,
    )
    return store


NEXT = "next-"  # the idempotency keys of the next day's signals, removed after the run


def next_day(store: Store) -> int:
    """A day's news for every account: its usage (a copy of its last one) and, for one in
    seven, a churn prediction; returns the rows added."""
    t = table(SignalRow)
    out = Rows(store)
    day = datetime.combine(END + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    with store.engine.connect() as conn:
        last = conn.execute(
            select(t.c.account_id, t.c.payload, func.max(t.c.occurred_at))
            .where(t.c.type == "usage_daily")
            .group_by(t.c.account_id)
        ).all()
    rows = []
    for i, (account_id, payload, _) in enumerate(last):
        common = {
            "account_id": account_id,
            "received_at": out.when(day + timedelta(hours=23)),
            "evaluated_at": None,
            "part": partition_of(account_id),
        }
        rows.append(
            common
            | {
                "idempotency_key": f"{NEXT}{account_id}-u",
                "type": "usage_daily",
                "occurred_at": out.when(day + timedelta(hours=12)),
                "payload": out.payload(payload),
            }
        )
        if i % 7 == 0:
            rows.append(
                common
                | {
                    "idempotency_key": f"{NEXT}{account_id}-c",
                    "type": "churn_prediction",
                    "occurred_at": out.when(day + timedelta(hours=13)),
                    "payload": out.payload({"probability": 0.7, "model": "v2"}),
                }
            )
    for start in range(0, len(rows), 20_000):
        out.insert(rows[start : start + 20_000])
    return len(rows)


def forget_next_day(store: Store) -> None:
    t = table(SignalRow)
    with store.engine.begin() as conn:
        conn.execute(t.delete().where(t.c.idempotency_key.like(f"{NEXT}%")))


def clear_firings(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(table(RuleFiringRow).delete())


# ---- A. the sweep -----------------------------------------------------------------------------


class Stages:
    """CPU seconds per stage of one sweep, by wrapping the functions it calls: the time of
    the thread that ran them, so that the stages of the threads deriving pages ahead add up
    with the others to the sweep's CPU time (wall times would overlap)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[Any, str, Any]] = []
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.thread_time() - began)

        self._saved.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


class Collections:
    """The cyclic collector's runs during a sweep, by generation: (count, wall seconds)."""

    def __init__(self) -> None:
        self.runs: dict[int, tuple[int, float]] = {}
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        n, seconds = self.runs.get(info["generation"], (0, 0.0))
        self.runs[info["generation"]] = (n + 1, seconds + time.perf_counter() - self._began)

    def __str__(self) -> str:
        return ", ".join(
            f"generation {g}: {n} in {s:.2f} s" for g, (n, s) in sorted(self.runs.items())
        )


READER_STAGES = ("accounts read", "histories read", "facts derived")
KEPT_STAGES = (
    "accounts read",
    "new rows read",
    "grid gathered",
    "facts derived",
    "records made",
    "facts from signals (irregular)",
)
COMMON_STAGES = (
    "columns built",
    "conditions evaluated",
    "matches explained",
    "cooldowns read",
    "firings committed",
)


def run_sweep(
    store: Store,
    runtime: RuleRuntime,
    rule: str,
    at: datetime,
    reader: FactsReader | None = None,
    kept: SweepFacts | None = None,
) -> dict[str, Any]:
    """One sweep, by the FactsReader (as before the scheduler kept its facts) or by `kept`."""
    stages = Stages()
    pages = sweeping._accounts  # a generator: timed page by page

    def timed_pages(s: Store, chunk: int) -> Iterator[list[Account]]:
        it = pages(s, chunk)
        while True:
            began = time.thread_time()
            page = next(it, None)
            stages.add("accounts read", time.thread_time() - began)
            if page is None:
                return
            yield page

    if kept is None:
        sweeping._accounts = timed_pages  # type: ignore[assignment]
        stages.wrap(FactsReader, "histories", "histories read")
        stages.wrap(FactsReader, "records_or_errors", "facts (read + derive)")
    else:
        stages.wrap(SweepFacts, "accounts", "accounts read")
        stages.wrap(ColumnarHistories, "refresh", "new rows read")
        stages.wrap(sweep_facts, "gather_columns", "grid gathered")
        stages.wrap(sweep_facts, "last_day_of", "facts derived")
        stages.wrap(LastDay, "records", "records made")
        stages.wrap(FactsReader, "record_or_error", "facts from signals (irregular)")
    stages.wrap(Columns, "from_records", "columns built")
    stages.wrap(sweeping.BatchEvaluator, "evaluate", "conditions evaluated")
    stages.wrap(sweeping, "explain", "matches explained")
    stages.wrap(sweeping, "BatchCooldowns", "cooldowns read")
    stages.wrap(sweeping, "commit_evaluation", "firings committed")
    collections = Collections()
    gc.callbacks.append(collections)
    began, cpu = time.perf_counter(), time.process_time()
    try:
        result = sweeping.sweep(store, runtime, [rule], at, facts=reader, kept=kept)
    finally:
        gc.callbacks.remove(collections)
        stages.restore()
        sweeping._accounts = pages  # type: ignore[assignment]
    wall = time.perf_counter() - began
    s = stages.seconds
    if kept is None:
        s["facts derived"] = s.pop("facts (read + derive)", 0.0) - s.get("histories read", 0.0)
    return {
        "result": result,
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "stages": s,
        "names": (READER_STAGES if kept is None else KEPT_STAGES) + COMMON_STAGES,
        "load": os.getloadavg()[0],
        "collections": collections,
    }


def show_sweep(label: str, run: dict[str, Any]) -> None:
    r, s = run["result"], run["stages"]
    print(
        f"  {label}: {r.accounts:,} accounts in {run['wall']:.2f} s "
        f"({r.accounts / run['wall']:,.0f} accounts/s; CPU {run['cpu']:.2f} s = "
        f"{run['cpu'] / max(r.accounts, 1) * 1e6:.0f} µs/account; load {run['load']:.1f}); "
        f"{r.matched:,} matched, {r.fired:,} fired, {r.suppressed:,} suppressed, "
        f"{r.unreadable} unreadable"
    )
    rows = [(name, s.get(name, 0.0)) for name in run["names"]]
    other = run["cpu"] - sum(v for _, v in rows)
    print(f"    {'stage (CPU seconds, all threads)':<32} {'CPU':>9}  share  per account")
    for name, seconds in [*rows, ("other", other)]:
        share = seconds / run["cpu"] if run["cpu"] else 0.0
        per = seconds / max(r.accounts, 1) * 1e6
        print(f"    {name:<32} {seconds:7.2f} s  {share:5.0%}  {per:7.1f} µs/account")
    print(f"    cyclic collector (within the above): {str(run['collections']) or 'no runs'}")


def check_equal(store: Store, kept: SweepFacts, model: Any, derived: Any, n: int) -> str:
    """The kept facts' records against the FactsReader's, for `n` accounts spread over all."""
    accounts = kept.accounts()
    some = accounts[:: max(1, len(accounts) // n)][:n]
    day = (AT + timedelta(days=1)).date()
    ours = kept.records_or_errors([(a, day) for a in some], derived)
    theirs = FactsReader(store, model).records_or_errors([(a, day) for a in some], derived)

    def typed(record: Any) -> Any:
        return (
            record
            if isinstance(record, Exception)
            else [(k, type(v), v) for k, v in record.items()]
        )

    same = sum(1 for a, b in zip(ours, theirs, strict=True) if typed(a) == typed(b))
    return f"{same:,} of {len(some):,} records equal the FactsReader's"


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
            print(
                f"  round {k + 1}: dispatch {ours:,.0f}/s ({started:,}), raw {raw:,.0f}/s; "
                f"load average {os.getloadavg()[0]:.1f}"
            )
        return out
    finally:
        await server.shutdown()


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=61)
    ap.add_argument("--distinct", type=int, default=2000, help="distinct sample histories")
    ap.add_argument("--rule", default="usage-decline")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--reader", action="store_true", help="also sweep by the FactsReader")
    ap.add_argument("--check", type=int, default=1000, help="accounts whose records are compared")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dispatch-only", action="store_true", help="B alone, on a past run's firings")
    ap.add_argument(
        "--dispatch", type=int, default=5000, help="firings dispatched per round, at most"
    )
    args = ap.parse_args()
    # the collector as `csauto scheduler` sets it (cli/common.py `run`): the sweep runs there
    gc.set_threshold(10_000, 10, 10)

    url = args.database_url or (
        f"sqlite:///{tempfile.gettempdir()}/csauto-bench-sweep-v2-{args.accounts}-{args.days}-"
        f"{args.distinct}.db"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}; load average {os.getloadavg()[0]:.2f}; {url.split('://')[0]}"
    )
    store = seed(url, args.accounts, args.days, args.distinct)
    forget_next_day(store)
    settings = bootstrap.settings()
    config = bootstrap.load_configuration(settings)
    runtime = RuleRuntime([settings.rules_path], config.model, cooldowns=SqlCooldowns(store))

    if args.dispatch_only:  # B alone, on the firings a previous run left
        asyncio.run(dispatch_part(store, runtime, config, args))
        return
    print(f"\nA. Sweep of {args.rule} over {args.accounts:,} accounts, {args.days} days each")
    clear_firings(store)
    if args.reader:
        reader = FactsReader(store, config.model, max_accounts=args.accounts + 1)
        show_sweep("FactsReader, first sweep", run_sweep(store, runtime, args.rule, AT, reader))
        clear_firings(store)
    kept = SweepFacts(store, config.model)
    cold = run_sweep(store, runtime, args.rule, AT, kept=kept)
    show_sweep("kept facts, first sweep (cold: every row read)", cold)
    again = run_sweep(store, runtime, args.rule, AT, kept=kept)
    show_sweep("kept facts, same day again (nothing new)", again)
    began = time.perf_counter()
    added = next_day(store)
    print(f"  + the next day's news: {added:,} signals ({time.perf_counter() - began:.1f} s)")
    warm = run_sweep(store, runtime, args.rule, AT + timedelta(days=1), kept=kept)
    show_sweep("kept facts, next day (the daily sweep)", warm)
    irregular = len(kept.columns.irregular)
    print(f"  accounts derived from Signal objects (a row the columns cannot hold): {irregular}")
    if args.check:
        derived = runtime.ruleset.by_id(args.rule)
        extra = derived.derived if derived else ()
        print(f"  check: {check_equal(store, kept, config.model, extra, args.check)}")
    forget_next_day(store)
    met = warm["wall"] < 10 and args.accounts >= 100_000
    print(
        f"goal daily sweep of 100,000 accounts < 10 s: {'met' if met else 'not met'} "
        f"({warm['wall']:.1f} s for {args.accounts:,}; first sweep {cold['wall']:.1f} s)"
    )

    if not cold["result"].fired or not args.dispatch:
        print("no firings: nothing to dispatch" if args.dispatch else "--dispatch 0: no B")
        return
    asyncio.run(dispatch_part(store, runtime, config, args))


async def dispatch_part(store: Store, runtime: RuleRuntime, config: Any, args: Any) -> None:
    with store.engine.begin() as conn:  # dispatch at most --dispatch of them
        t = table(RuleFiringRow)
        first = select(t.c.id).order_by(t.c.id).limit(args.dispatch).subquery()
        conn.execute(t.delete().where(t.c.id.not_in(select(first.c.id))))
    print(
        f"\nB. Dispatch of the sweep's firings (up to {args.dispatch:,}), {CONCURRENCY} in flight; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rounds = await bench_dispatch(store, runtime, config, args.rounds)
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
