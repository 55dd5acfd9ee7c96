"""The lease and the run-key fence, with an injected clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from csautomation.scheduling import runs
from csautomation.scheduling.leader import Lease, current_lease
from csautomation.scheduling.runs import RunKey, claim

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)
TTL = timedelta(seconds=15)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def lease(engine: Engine, holder: str, clock: Clock) -> Lease:
    return Lease(engine, holder=holder, ttl=TTL, clock=clock)


def test_one_holder_at_a_time_and_renewals_keep_the_epoch(engine: Engine) -> None:
    clock = Clock()
    a, b = lease(engine, "A", clock), lease(engine, "B", clock)
    assert a.acquire() and a.epoch == 1 and a.held()
    assert not b.acquire() and b.epoch is None and not b.held()
    for _ in range(5):  # renewed every 5 s: never lapses
        clock.advance(5)
        assert a.acquire() and a.epoch == 1
        assert not b.acquire()
    state = current_lease(engine)
    assert state is not None and (state.holder, state.epoch) == ("A", 1)
    assert state.expires_at == clock.now + TTL


def test_an_expired_lease_is_taken_over_with_a_higher_epoch(engine: Engine) -> None:
    clock = Clock()
    a, b = lease(engine, "A", clock), lease(engine, "B", clock)
    assert a.acquire()
    clock.advance(15)  # expires_at == now: not yet expired
    assert not b.acquire()
    clock.advance(0.001)
    assert not a.held()  # A knows its lease lapsed before anyone takes it
    assert b.acquire() and b.epoch == 2
    assert not a.acquire() and a.epoch is None  # A lost it: no renewal brings it back
    b.release()  # a clean stop hands over at once
    assert a.acquire() and a.epoch == 3
    clock.advance(20)  # A's own lease lapsed: taking it again is a new epoch
    assert a.acquire() and a.epoch == 4


def test_exactly_one_of_many_simultaneous_candidates_wins(engine: Engine) -> None:
    clock = Clock()
    candidates = [lease(engine, f"P{i}", clock) for i in range(8)]
    start = threading.Barrier(len(candidates))
    won: list[str] = []

    def run(candidate: Lease) -> None:
        start.wait()
        if candidate.acquire():
            won.append(candidate.holder)

    threads = [threading.Thread(target=run, args=(c,)) for c in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    state = current_lease(engine)
    assert state is not None and state.holder == won[0] and state.epoch == 1


def test_a_run_key_is_claimed_once_and_never_by_a_deposed_leader(engine: Engine) -> None:
    clock = Clock()
    a, b = lease(engine, "A", clock), lease(engine, "B", clock)
    fire = T0 + timedelta(microseconds=250_000)
    key = RunKey.of("sweep:usage-decline", fire)
    assert key.fire_time == T0  # to the second
    assert not claim(engine, key, a)  # no lease, no claim
    assert a.acquire()
    assert claim(engine, key, a)
    assert not claim(engine, key, a)  # the same key again does nothing
    assert not claim(engine, RunKey.of("sweep:usage-decline", T0 + timedelta(seconds=0.9)), a)
    runs.finish(engine, key, a, "done", {"fired": 2})
    # A stalls past its lease; B takes over. A still believes in epoch 1, with a clock that
    # says the lease holds: the database refuses it all the same.
    clock.advance(16)
    assert b.acquire() and b.epoch == 2
    late = RunKey.of("sweep:usage-decline", T0 + timedelta(minutes=1))
    a.epoch, a.expires_at = 1, clock.now + TTL
    assert not claim(engine, late, a)
    assert claim(engine, late, b)
    stored = [(r.job_id, r.fire_time, r.epoch, r.holder, r.status) for r in runs.runs(engine)]
    assert stored == [
        ("sweep:usage-decline", T0, 1, "A", "done"),
        ("sweep:usage-decline", late.fire_time, 2, "B", "running"),
    ]
    assert runs.last_runs(engine)["sweep:usage-decline"].epoch == 2
    assert runs.runs(engine)[0].result == {"fired": 2}
    assert runs.prune(engine, late.fire_time) == 1
    assert [r.epoch for r in runs.runs(engine)] == [2]
