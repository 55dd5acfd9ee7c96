"""Three `csauto pipeline` processes on PostgreSQL share 2,000 signals while one of them is
killed (SIGKILL, mid-wave) and later restarted:

- every signal's evaluation commits exactly once (a trigger logs each commit that marks a
  signal evaluated; a rolled-back commit logs nothing);
- the firings are the ones a single pipeline makes of the same signals (the reference,
  in this process over SQLite);
- every firing's workflows were started once on a real Temporal dev server: one run per
  workflow id, and every run of the runs index is there;
- the three shared the work (each committed some evaluations), the restarted one too.

The signals arrive in waves of 200 (each one transaction, the next once the last is
evaluated), so that every run evaluates each account at the same moments whatever
pipeline holds it: firings depend on the moment an account is evaluated.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from temporalio.client import Client

from csautomation import bootstrap
from csautomation.facts.model import Signal
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.runtime.server import start_dev_server
from csautomation.sample.generate import generate
from csautomation.store.engine import table
from csautomation.store.outbox import mark_all_evaluated
from csautomation.store.repo import Store
from csautomation.store.tables import (
    PipelinePartitionRow,
    PlaybookRunRow,
    RuleFiringRow,
    SignalRow,
)

ROOT = Path(__file__).parents[2]
CSAUTO = Path(sys.executable).parent / "csauto"
SIGNALS, WAVE = 2000, 200
LEASE = 2.0  # seconds: how long the killed pipeline's partitions wait for a new holder

EVAL_LOG = [
    "CREATE TABLE eval_log (signal_id bigint NOT NULL, by text)",
    """CREATE FUNCTION log_evaluation() RETURNS trigger AS $$
    BEGIN
      INSERT INTO eval_log VALUES (NEW.id, NEW.evaluated_by);
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER log_evaluation AFTER UPDATE OF evaluated_at ON signals FOR EACH ROW
    WHEN (OLD.evaluated_at IS NULL AND NEW.evaluated_at IS NOT NULL)
    EXECUTE FUNCTION log_evaluation()""",
]
CLEAN = [
    "DROP TABLE IF EXISTS eval_log",
    "DROP TRIGGER IF EXISTS log_evaluation ON signals",
    "DROP FUNCTION IF EXISTS log_evaluation()",
]


def sample() -> tuple[list, list[Signal], list[list[Signal]]]:  # type: ignore[type-arg]
    accounts, signals = generate(n_accounts=60, days=120)
    history, news = signals[:-SIGNALS], signals[-SIGNALS:]
    return accounts, history, [news[i : i + WAVE] for i in range(0, SIGNALS, WAVE)]


def seeded(url: str) -> Store:
    store = Store(url)
    store.create_all()
    accounts, history, _ = sample()
    store.upsert_accounts(accounts)
    store.add_signals(history)
    mark_all_evaluated(store)  # history: context, not news
    return store


def pending(store: Store) -> int:
    t = table(SignalRow)
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(t.c.evaluated_at.is_(None))).scalar())


def undispatched(store: Store) -> int:
    t = table(RuleFiringRow)
    with store.engine.connect() as conn:
        q = select(func.count()).where(t.c.dispatched_at.is_(None))
        return int(conn.execute(q).scalar())


def wait_for(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def holders(store: Store) -> int:
    """How many pipelines hold partitions."""
    t = table(PipelinePartitionRow)
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count(t.c.holder.distinct()))).scalar())


def held_by(store: Store, pid: int) -> set[int]:
    """The partitions the pipeline of process `pid` holds (member ids are host:pid:random)."""
    t = table(PipelinePartitionRow)
    with store.engine.connect() as conn:
        q = select(t.c.part).where(t.c.holder.like(f"%:{pid}:%"))
        return set(conn.execute(q).scalars())


def firings(store: Store) -> set[tuple[str, str, int]]:
    t = table(RuleFiringRow)
    with store.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(select(t.c.rule_id, t.c.account_id, t.c.window))}  # type: ignore[misc]


def reference(tmp_path: Path) -> set[tuple[str, str, int]]:
    """One pipeline, alone, over the same waves (evaluation only: dispatch does not change
    what fires)."""
    store = seeded(f"sqlite:///{tmp_path}/reference.db")
    settings = bootstrap.settings()
    config = bootstrap.load_configuration(settings)
    runtime = RuleRuntime([settings.rules_path], config.model, cooldowns=SqlCooldowns(store))
    alone = Pipeline(store, runtime, config.playbooks, client=None)  # type: ignore[arg-type]
    for wave in sample()[2]:
        store.add_signals(wave)
        while alone.evaluate_pending():
            pass
    out = firings(store)
    store.engine.dispose()
    return out


@pytest.fixture
def pg_url(db_url: str) -> Iterator[str]:
    if not db_url.startswith("postgresql"):
        pytest.skip("several pipelines share partitions on PostgreSQL (--db postgres)")
    yield db_url
    store = Store(db_url)
    with store.engine.begin() as conn:
        for sql in CLEAN:
            conn.execute(text(sql))
    store.engine.dispose()


class Pipelines:
    """`csauto pipeline` processes, each logging to a file of its own."""

    def __init__(self, url: str, address: str, logs: Path) -> None:
        self.url, self.address, self.logs = url, address, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def start(self) -> subprocess.Popen[bytes]:
        with (self.logs / f"pipeline-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    str(CSAUTO),
                    "pipeline",
                    "--temporal-address",
                    self.address,
                    "--database-url",
                    self.url,
                    "--poll",
                    "0.05",
                    "--lease-seconds",
                    str(LEASE),
                ],
                cwd=ROOT,
                env={**os.environ, "CSAUTO_LOG_FORMAT": "text"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def kill(self, i: int) -> None:
        """SIGKILL: no clean stop, its leases are left to expire."""
        self.killed.add(i)
        self.procs[i].kill()
        self.procs[i].wait(10)

    def check_alive(self) -> bool:
        """Raises once a pipeline the test did not kill has exited."""
        for i, p in enumerate(self.procs):
            if i not in self.killed and p.poll() is not None:
                raise AssertionError(f"pipeline {i} exited with {p.returncode}")
        return True

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
            for p in sorted(self.logs.glob("pipeline-*.log"))
        )


@pytest.mark.timeout(300)
@pytest.mark.asyncio
async def test_three_pipelines_one_killed_evaluate_each_signal_once(
    pg_url: str, tmp_path: Path
) -> None:
    expected = reference(tmp_path)
    assert len(expected) > 20  # enough firings to tell runs apart

    store = seeded(pg_url)
    with store.engine.begin() as conn:
        for sql in CLEAN + EVAL_LOG:
            conn.execute(text(sql))
    server = await start_dev_server(tmp_path / "temporal", port=None, ui=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    pipelines = Pipelines(pg_url, server.address, logs)
    try:
        for _ in range(3):
            pipelines.start()
        wait_for(lambda: pipelines.check_alive() and holders(store) == 3, "three pipelines")
        killed_at = restarted_at = -1
        for n, wave in enumerate(sample()[2]):
            store.add_signals(wave)
            if n == 3:  # mid-wave: what it read and had not committed is evaluated by another
                orphaned = held_by(store, pipelines.procs[1].pid)
                assert orphaned
                pipelines.kill(1)
                killed_at = n
            if n == 6:  # it has its share before the wave is evaluated
                pipelines.start()
                wait_for(lambda: holders(store) == 3, "the restarted pipeline's share")
                restarted_at = n
            try:
                wait_for(
                    lambda: pipelines.check_alive() and pending(store) == 0,
                    f"wave {n} evaluated",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{pipelines.tails()}") from None
            if n == 3:  # the others took the killed one's partitions over
                dead = pipelines.procs[1].pid
                wait_for(
                    lambda dead=dead: not held_by(store, dead) and holders(store) == 2, "takeover"
                )
        wait_for(lambda: undispatched(store) == 0, "every firing dispatched")
        assert (killed_at, restarted_at) == (3, 6)
        pipelines.check_alive()

        with store.engine.connect() as conn:
            log = conn.execute(text("SELECT signal_id, by FROM eval_log")).all()
        per_signal = Counter(signal for signal, _ in log)
        assert len(per_signal) == SIGNALS
        assert max(per_signal.values()) == 1  # each evaluation committed exactly once
        by = Counter(who for _, who in log)
        assert len(by) == 4 and min(by.values()) > 0, by  # three, then the restarted one

        assert firings(store) == expected

        await assert_started_once(store, server.env.client)

        pipelines.stop()  # SIGTERM: a clean stop hands every partition over at once
        assert holders(store) == 0
    finally:
        pipelines.stop()
        store.engine.dispose()
        await server.shutdown()


async def assert_started_once(store: Store, client: Client) -> None:
    """One run per workflow id on Temporal, and every run of the index there."""
    with store.engine.connect() as conn:
        t = table(PlaybookRunRow)
        index = conn.execute(select(t.c.workflow_id, t.c.run_id, t.c.account_id)).all()
    assert index and all(run_id for _, run_id, _ in index)
    started: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    while True:  # visibility may lag a moment behind the starts
        started = Counter()
        async for wf in client.list_workflows():
            started[wf.id] += 1
        if sum(started.values()) >= len(index) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert set(started) == {wid for wid, _, _ in index}
    assert max(started.values()) == 1  # no workflow id started twice
    assert len(index) == len({wid for wid, _, _ in index})
