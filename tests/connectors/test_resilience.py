"""The circuit breaker and the rate limit, on an injected clock."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from csautomation.connectors.config import Breaker, DailyAllocation, RateLimit
from csautomation.connectors.resilience import (
    Allocation,
    BreakerState,
    CircuitBreaker,
    Guard,
    Guardable,
    TemporalClock,
    TokenBucket,
)
from csautomation.errors import (
    CircuitOpenError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def down() -> None:
    raise ConnectorUnavailableError("crm", "create_task", "HTTP 503", status=503)


def test_the_breaker_opens_at_its_threshold_probes_once_and_closes() -> None:
    clock = Clock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(
        "crm", Breaker(failures=3, reset_after=timedelta(seconds=30)), clock, changes.append
    )
    guard = Guard("crm", breaker)
    calls = 0

    def vendor() -> str:
        nonlocal calls
        calls += 1
        down()
        return "never"

    for _ in range(3):
        with pytest.raises(ConnectorUnavailableError):
            guard.call("create_task", vendor)
    assert breaker.snapshot().state == "open" and calls == 3
    with pytest.raises(CircuitOpenError) as caught:
        guard.call("create_task", vendor)
    assert calls == 3  # no call was made while open
    assert caught.value.retry_after == pytest.approx(30.0)
    clock.now += 31
    with pytest.raises(ConnectorUnavailableError) as probe:
        guard.call("create_task", vendor)  # the probe fails: open again
    assert not isinstance(probe.value, CircuitOpenError) and calls == 4
    assert breaker.snapshot().state == "open"
    clock.now += 31
    assert guard.call("create_task", lambda: "ok") == "ok"
    assert breaker.snapshot().state == "closed"
    assert [c.state for c in changes] == ["open", "half_open", "open", "half_open", "closed"]


def test_only_one_probe_goes_through_while_half_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker("crm", Breaker(failures=1, reset_after=timedelta(seconds=5)), clock)
    breaker.failure(ConnectorUnavailableError("crm", "op", "x"))
    clock.now += 6
    breaker.before("op")  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before("op")


def test_calls_in_flight_when_it_opened_neither_reopen_nor_extend_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker("crm", Breaker(failures=1, reset_after=timedelta(seconds=5)), clock)
    unwell = ConnectorUnavailableError("crm", "op", "x")
    breaker.failure(unwell)
    opened = breaker.snapshot().opened_at
    clock.now += 3
    breaker.failure(unwell)  # a straggler, answered after the breaker opened
    assert breaker.snapshot().opened_at == opened
    clock.now += 3
    assert breaker.before("op") is True  # the probe
    breaker.failure(unwell)  # another straggler, while the probe is out
    assert breaker.snapshot().state == "half_open"
    breaker.failure(unwell, probe=True)
    assert breaker.snapshot().state == "open"


class WatchedCondition(threading.Condition):
    """The breaker's condition, telling the test when a call has begun to wait on it."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def test_a_call_during_the_probe_waits_for_its_answer() -> None:
    clock = Clock()
    probing = threading.Event()
    breaker = CircuitBreaker(
        "crm",
        Breaker(failures=1, reset_after=timedelta(seconds=5)),
        clock,
        on_change=lambda s: probing.set() if s.state == "half_open" else None,
    )
    watched = breaker._changed = WatchedCondition(breaker._lock)
    guard = Guard("crm", breaker, wait_limit=30.0)
    breaker.failure(ConnectorUnavailableError("crm", "op", "x"))
    clock.now += 6
    answer = threading.Event()
    outcome: list[str] = []

    def probe() -> str:
        answer.wait(30)
        return "probe"

    prober = threading.Thread(target=lambda: outcome.append(guard.call("op", probe)))
    prober.start()
    assert probing.wait(10)
    waiter = threading.Thread(target=lambda: outcome.append(guard.call("op", lambda: "waited")))
    waiter.start()
    assert watched.waiting.wait(10)  # the second call waits on the probe, not failing
    answer.set()
    prober.join(10)
    waiter.join(10)
    assert outcome == ["probe", "waited"]


def test_a_probe_that_dies_of_our_own_bug_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("crm", Breaker(failures=1, reset_after=timedelta(seconds=5)), clock)
    guard = Guard("crm", breaker)
    breaker.failure(ConnectorUnavailableError("crm", "op", "x"))
    clock.now += 6

    def bug() -> str:
        raise KeyError("ours")

    with pytest.raises(KeyError):
        guard.call("op", bug)
    assert guard.call("op", lambda: "probe") == "probe"
    assert breaker.snapshot().state == "closed"


def test_the_temporal_clock_is_the_wall_clock_outside_an_activity() -> None:
    before = time.time()
    assert before <= TemporalClock()() <= time.time()


def test_check_passes_unguarded_and_traffic_through_the_guard() -> None:
    class Vendor(Guardable):
        def call(self, operation: str) -> str:
            return self._guarded(operation, lambda: operation)

    breaker = CircuitBreaker("crm", Breaker(failures=1), Clock())
    breaker.failure(ConnectorUnavailableError("crm", "op", "x"))
    vendor = Vendor(Guard("crm", breaker))
    assert vendor.call("check") == "check"  # verification reaches the vendor while open
    with pytest.raises(CircuitOpenError):
        vendor.call("create_task")


def test_a_refused_request_does_not_count_against_the_vendor() -> None:
    breaker = CircuitBreaker("crm", Breaker(failures=1), Clock())
    breaker.failure(ConnectorValidationError("crm", "op", "bad field", status=400))
    assert breaker.snapshot().state == "closed"


def test_the_rate_limit_spreads_a_burst_at_the_vendor_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(per_second=10, burst=5), clock, clock.sleep)
    start = clock.now
    assert all(bucket.acquire(timeout=10) for _ in range(25))
    assert clock.now - start == pytest.approx(2.0)  # 5 at once, then 20 at 10/s
    assert bucket.acquire(timeout=0.01) is False


def test_backoff_grows_is_capped_and_jittered() -> None:
    from csautomation.activities.playbook import backoff
    from csautomation.connectors.config import Retry

    policy = Retry(initial=timedelta(seconds=1), maximum=timedelta(seconds=30), backoff=2.0)
    assert [backoff(policy, a, 0.0) for a in (1, 2, 3, 6, 10)] == [1, 2, 4, 30, 30]
    assert backoff(policy, 3, 0.999) == pytest.approx(4 * 0.8, rel=1e-3)


def test_an_endpoint_class_takes_its_own_bucket_and_others_the_connectors() -> None:
    clock = Clock()
    general = TokenBucket(RateLimit(per_second=10, burst=2), clock, clock.sleep)
    search = TokenBucket(RateLimit(per_second=1, burst=1), clock, clock.sleep)
    breaker = CircuitBreaker("crm", Breaker(), clock)
    guard = Guard("crm", breaker, general, wait_limit=0.0, buckets={"search": search})
    assert guard.call("create_task", lambda: "made", "search") == "made"
    with pytest.raises(ConnectorRateLimitedError, match="this vendor's search requests"):
        guard.call("create_task", lambda: "made", "search")  # search's one token is spent
    # the general bucket's two tokens are untouched by searches
    assert [guard.call("create_task", lambda: "made") for _ in range(2)] == ["made"] * 2
    with pytest.raises(ConnectorRateLimitedError, match="this vendor's requests"):
        guard.call("create_task", lambda: "made")


def test_a_daily_allocation_refuses_at_its_line_and_looks_again_later() -> None:
    clock = Clock()
    quota = Allocation(
        "sf", DailyAllocation(stop_at=0.5, recheck_after=timedelta(minutes=1)), clock
    )
    guard = Guard("sf", CircuitBreaker("sf", Breaker(), clock), quota=quota)
    assert guard.call("create_task", lambda: 1) == 1  # nothing reported yet: through
    quota.observe(49, 100)
    assert guard.call("create_task", lambda: 2) == 2
    quota.observe(50, 100)
    calls: list[int] = []
    with pytest.raises(ConnectorRateLimitedError, match="used 50 of its 100") as caught:
        guard.call("create_task", lambda: calls.append(1))
    assert calls == [] and caught.value.retry_after == 60
    clock.now += 61
    assert guard.call("create_task", lambda: 3) == 3  # one call looks again...
    with pytest.raises(ConnectorRateLimitedError):
        guard.call("create_task", lambda: 4)  # ...and the others wait for its answer
