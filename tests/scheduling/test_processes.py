"""Two scheduler processes on one SQLite database: one leads, each scheduled run happens
once (by the scheduler_runs table, the rule_firings rows and the pull's own output), and
when the leader is killed or stalls past its lease the other takes over without running
any run key twice. Synchronised by polling the database, never by sleeping."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from csautomation.scheduling.leader import current_lease
from csautomation.store.repo import Store
from csautomation.store.scheduler_tables import create_tables
from factories import scheduler_store
from scheduling.support import firings, run_rows, wait_for, write_rules

TESTS = Path(__file__).parents[1]
TTL = 2.0  # seconds: a dead leader is replaced within TTL + one renewal
CLAIMED = re.compile(r" (\S+) csautomation\.scheduling\.jobs (\S+@\S+) claimed \(epoch (\d+)\)")


class Proc:
    def __init__(self, folder: Path, holder: str, url: str) -> None:
        self.holder = holder
        self.log = folder / f"{holder}.log"
        self._out: IO[str] = self.log.open("w")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduling.proc",
                url,
                str(folder / "rules"),
                str(folder / "schedules.yaml"),
                holder,
                str(TTL),
                "0.25",
            ],
            cwd=folder,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM, and the exit code: 0 for a clean stop."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=15)

    def text(self) -> str:
        return self.log.read_text()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._out.close()


@pytest.fixture
def setup(tmp_path: Path, db_url: str) -> Iterator[tuple[Store, Path, str]]:
    url = db_url
    store = scheduler_store(url, datetime.now(UTC).date())
    create_tables(store.engine)
    write_rules(tmp_path / "rules")
    out = tmp_path / "pulls.txt"
    (tmp_path / "schedules.yaml").write_text(
        "sweeps: {misfire_grace: 30s}\n"
        "completion_sync: {enabled: false}\n"
        "pulls:\n"
        f"  ping: {{kind: ping, every: 1s, misfire_grace: 30s, options: {{file: '{out}'}}}}\n"
    )
    yield store, out, url
    store.engine.dispose()


def holder_of(store: Store) -> str | None:
    state = current_lease(store.engine)
    return state.holder if state is not None and state.live(datetime.now(UTC)) else None


def runs_by(store: Store, holder: str, job: str | None = None) -> list[Any]:
    return [r for r in run_rows(store) if r.holder == holder and (job is None or r.job_id == job)]


def claimed(*procs: Proc) -> Counter[str]:
    """Every run key any process claimed, from the processes' own logs."""
    return Counter(m.group(2) for p in procs for m in CLAIMED.finditer(p.text()))


def check_each_run_once(store: Store, out: Path, *procs: Proc) -> None:
    rows = run_rows(store)
    keys = Counter(f"{r.job_id}@{r.fire_time.replace(tzinfo=UTC).isoformat()}" for r in rows)
    assert max(keys.values()) == 1
    logged = claimed(*procs)
    assert max(logged.values()) == 1, [k for k, n in logged.items() if n > 1]
    # every claim logged is in the table; a SIGKILL may land between a claim and its log
    assert set(logged) <= set(keys) and len(set(keys) - set(logged)) <= 1
    pulled = Counter(line.split()[0] for line in out.read_text().splitlines())
    assert max(pulled.values()) == 1  # the pull's own effect: once per fire time
    pull_runs = [r for r in rows if r.job_id == "pull:ping"]
    assert set(pulled) <= {r.fire_time.replace(tzinfo=UTC).isoformat() for r in pull_runs}
    assert len(pulled) >= len([r for r in pull_runs if r.status == "done"])
    # the sweeps fired once per account: every later run found them inside the cooldown
    assert sorted((r, a) for r, a, _, d in firings(store) if d is None) == [
        ("usage-drop", "ACME"),
        ("usage-drop", "BETA"),
    ]


def start_two(store: Store, folder: Path, url: str) -> tuple[Proc, Proc]:
    """Both processes at once; returns (the one that took the lease, the other)."""
    procs = {name: Proc(folder, name, url) for name in ("A", "B")}
    leader = wait_for(lambda: holder_of(store), "one process to lead")
    other = procs["B" if leader == "A" else "A"]
    wait_for(
        lambda: f"waiting for the scheduler lease: {leader} leads" in other.text(),
        "the other to wait",
    )
    return procs[leader], other


def test_one_of_two_processes_leads_and_the_other_takes_over_when_it_is_killed(
    setup: tuple[Store, Path, str],
) -> None:
    store, out, url = setup
    leader, other = start_two(store, out.parent, url)
    try:
        wait_for(lambda: len(runs_by(store, leader.holder, "sweep:usage-drop")) >= 2, "sweeps")
        assert runs_by(store, other.holder) == [] and holder_of(store) == leader.holder
        epoch = runs_by(store, leader.holder)[0].epoch

        leader.signal(signal.SIGKILL)
        killed = datetime.now(UTC)
        wait_for(lambda: runs_by(store, other.holder), "the takeover", timeout=TTL + 10)
        took = runs_by(store, other.holder)[0].claimed_at.replace(tzinfo=UTC) - killed
        assert took.total_seconds() < TTL + 3  # the lease's expiry, a renewal, and slack
        wait_for(lambda: len(runs_by(store, other.holder, "sweep:usage-drop")) >= 2, "sweeps")
        assert other.stop() == 0
        assert holder_of(store) is None  # handed over on a clean stop
    finally:
        leader.close()
        other.close()
    assert {r.epoch for r in runs_by(store, leader.holder)} == {epoch}
    assert {r.epoch for r in runs_by(store, other.holder)} == {epoch + 1}
    assert all(r.status == "done" for r in runs_by(store, other.holder))
    check_each_run_once(store, out, leader, other)


def stall(store: Store, leader: Proc, other: Proc) -> tuple[Proc, Proc]:
    """Stop the leader (SIGSTOP) until the other process takes over, then wake it; returns
    (stalled leader, new leader). SQLite has one write lock: a process stopped inside a
    write transaction holds every other writer back until it resumes, so a stop that
    lands there is undone and tried again once the processes settle."""
    for _ in range(4):
        leader.signal(signal.SIGSTOP)  # a stop-the-world pause: its jobs fall due meanwhile
        try:
            wait_for(lambda: runs_by(store, other.holder), "the takeover", timeout=TTL + 3)
        except AssertionError:
            leader.signal(signal.SIGCONT)
            settled = len(run_rows(store)) + 2
            wait_for(lambda n=settled: len(run_rows(store)) > n, "the processes to settle")
            if runs_by(store, other.holder):  # it took over once the lock was free
                return leader, other
            continue
        leader.signal(signal.SIGCONT)
        return leader, other
    raise AssertionError("every stop landed inside a write transaction")


def test_a_leader_that_stalls_past_its_lease_runs_nothing_twice_when_it_wakes(
    setup: tuple[Store, Path, str],
) -> None:
    store, out, url = setup
    leader, other = start_two(store, out.parent, url)
    try:
        wait_for(lambda: len(runs_by(store, leader.holder, "sweep:usage-drop")) >= 2, "sweeps")
        stalled, new = stall(store, leader, other)
        wait_for(lambda: "lost the scheduler lease" in stalled.text(), "the old leader to stop")
        before = len(runs_by(store, new.holder))
        wait_for(lambda: len(runs_by(store, new.holder)) > before + 1, "the new leader to go on")
        assert holder_of(store) == new.holder
        assert stalled.stop() == 0 and new.stop() == 0
    finally:
        leader.close()
        other.close()
    # whether its scheduler or its lease loop woke first, the old leader claimed nothing more
    lost = stalled.text().index("lost the scheduler lease")
    assert not CLAIMED.search(stalled.text(), lost)
    check_each_run_once(store, out, leader, other)
