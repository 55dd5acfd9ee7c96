"""A circuit breaker and a rate limit per connector, around every vendor call.

    closed --(N consecutive failures)--> open --(reset_after)--> half-open
    half-open --(the probe succeeds)--> closed;  --(it fails)--> open again

While open, a call is not made: it fails at once with `CircuitOpenError`, whose
`retry_after` is the time left before the next probe, so Temporal's retry waits for the
vendor instead of hammering it. Only failures that say the vendor is unwell count
(unavailable, timeouts, resets, rate limits); a validation error is the request's fault.

The rate limit is a token bucket at the vendor's published rate: a call waits for a token
(up to the call's timeout), so a burst of playbooks is spread out rather than refused.
Endpoints a vendor limits on their own (HubSpot's search) have a bucket of their own, and
a daily allocation a vendor reports (Salesforce's) refuses calls before it runs out.

Both live in the worker process; each state change is reported to `on_change` (the store
keeps the latest per connector for `csauto connectors status`) and to the process's
`csauto_connector_breaker_state` gauge; each request's duration and each error's kind go
to `csauto_connector_call_seconds` and `csauto_connector_errors_total`.

The breaker keeps time on `temporal_clock`: the worker's wall clock, moved forward to the
time Temporal scheduled the current activity attempt whenever that is later. Temporal
delays a retry by the breaker's Retry-After, so the retry must find the breaker that much
older: with a server clock ahead of ours, or under the test server's time skipping, the
wall clock alone would still find it open and spend the action's attempts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from temporalio import activity

from csautomation import metrics
from csautomation.connectors.config import Breaker, DailyAllocation, RateLimit
from csautomation.errors import (
    CircuitOpenError,
    ConnectorError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
)

T = TypeVar("T")
Clock = Callable[[], float]


class TemporalClock:
    """Seconds since the epoch, never behind the current activity attempt's scheduled time."""

    def __init__(self) -> None:
        self._ahead = 0.0  # how far Temporal's clock has been seen ahead of ours
        self._lock = threading.Lock()

    def __call__(self) -> float:
        now = time.time()
        if activity.in_activity():
            scheduled = activity.info().current_attempt_scheduled_time.timestamp()
            with self._lock:
                self._ahead = max(self._ahead, scheduled - now)
        return now + self._ahead


temporal_clock = TemporalClock()


@dataclass(frozen=True)
class BreakerState:
    connector: str
    state: str  # closed, open, half_open
    failures: int  # consecutive
    opened_at: float | None  # clock time
    last_error: str


class CircuitBreaker:
    def __init__(
        self,
        connector: str,
        config: Breaker,
        clock: Clock = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.connector = connector
        self.threshold = config.failures
        self.reset_after = config.reset_after.total_seconds()
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a probe's answer came
        self._state = "closed"
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._last_error = ""
        metrics.BREAKER_STATE.labels(connector).set(0)

    def snapshot(self) -> BreakerState:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> BreakerState:
        return BreakerState(
            self.connector, self._state, self._failures, self._opened_at, self._last_error
        )

    def before(self, operation: str, wait: float = 0.0) -> bool:
        """Let a call through (True when it is the half-open probe), or raise
        CircuitOpenError. While a probe is in flight, wait up to `wait` seconds (real
        time) for its answer rather than fail at once."""
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                if self._state == "closed":
                    return False
                assert self._opened_at is not None
                left = self._opened_at + self.reset_after - self.clock()
                if self._state == "open" and left <= 0:
                    self._state = "half_open"
                    self._probing = False
                if self._state == "half_open" and not self._probing:
                    self._probing = True  # this call is the probe
                    changed = self._snapshot()
                    break
                remaining = deadline - time.monotonic()
                if self._state == "half_open" and remaining > 0:
                    self._changed.wait(remaining)  # the probe's answer decides
                    continue
                raise CircuitOpenError(
                    self.connector,
                    operation,
                    f"circuit open after {self._failures} consecutive failures "
                    f"(last: {self._last_error}); next probe in {max(left, 0):.0f} s",
                    retry_after=max(left, 1.0),
                )
        self._notify(changed)
        return True

    def success(self) -> None:
        with self._lock:
            changed = self._state != "closed" or self._failures > 0
            self._state, self._failures, self._opened_at, self._probing = "closed", 0, None, False
            snap = self._snapshot()
            self._changed.notify_all()
        if changed:
            self._notify(snap)

    def abandon(self, probe: bool) -> None:
        """The call failed without a verdict on the vendor (our own bug): if it was the
        probe, let the next call probe instead."""
        with self._changed:
            if probe and self._state == "half_open":
                self._probing = False
                self._changed.notify_all()

    def failure(self, exc: ConnectorError, probe: bool = False) -> None:
        """Count a failure. Once open, only the probe's failure decides (it opens the
        breaker again): calls that were in flight when it opened say nothing new."""
        if not isinstance(exc, (ConnectorUnavailableError, ConnectorRateLimitedError)):
            self.success()  # the vendor answered (it refused the request): it is up
            return
        if isinstance(exc, CircuitOpenError):
            return
        with self._lock:
            if self._state != "closed" and not probe:
                return
            self._failures += 1
            self._last_error = str(exc)[:300]
            opened = self._state == "half_open" or (
                self._state == "closed" and self._failures >= self.threshold
            )
            if opened:
                self._state, self._opened_at, self._probing = "open", self.clock(), False
                self._changed.notify_all()
            snap = self._snapshot()
        if opened:
            self._notify(snap)

    def _notify(self, snap: BreakerState) -> None:
        # the state now, not the snapshot's: notifications may arrive out of order
        metrics.BREAKER_STATE.labels(self.connector).set(metrics.BREAKER_CODES[self._state])
        if self.on_change is not None:
            self.on_change(snap)


class TokenBucket:
    def __init__(
        self,
        config: RateLimit,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = config.per_second
        self.capacity = float(config.burst)
        self.clock = clock
        self.sleep = sleep
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def acquire(self, timeout: float) -> bool:
        """Take a token, waiting up to `timeout` seconds; False when none came in time."""
        deadline = self.clock() + timeout
        while True:
            with self._lock:
                now = self.clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1 - 1e-9:  # float dust is not worth a wait
                    self._tokens = max(0.0, self._tokens - 1)
                    return True
                wait = max((1 - self._tokens) / self.rate, 0.001)
            if now + wait > deadline:
                return False
            self.sleep(wait)


class Allocation:
    """A vendor's daily request allocation as its answers report it (Salesforce's
    `Sforce-Limit-Info: api-usage=N/M`). Once `stop_at` of it is used, calls are refused
    as rate limited, without a request, until `recheck_after` has passed: then one call
    goes through and its answer's figure decides again."""

    def __init__(self, connector: str, config: DailyAllocation, clock: Clock = time.monotonic):
        self.connector = connector
        self.stop_at = config.stop_at
        self.recheck_after = config.recheck_after.total_seconds()
        self.clock = clock
        self._lock = threading.Lock()
        self._used: tuple[int, int] | None = None  # (used, limit) as last reported
        self._seen = 0.0

    def observe(self, used: int, limit: int) -> None:
        with self._lock:
            self._used, self._seen = (used, limit), self.clock()

    @property
    def usage(self) -> tuple[int, int] | None:
        with self._lock:
            return self._used

    def check(self, operation: str) -> None:
        with self._lock:
            if self._used is None:
                return
            used, limit = self._used
            if limit <= 0 or used < self.stop_at * limit:
                return
            left = self._seen + self.recheck_after - self.clock()
            if left <= 0:
                self._seen = self.clock()  # this call looks again; the others keep waiting
                return
        raise ConnectorRateLimitedError(
            self.connector,
            operation,
            f"the org has used {used} of its {limit} daily API requests; csautomation "
            f"stops at {self.stop_at:.0%} (daily_api.stop_at) to leave the rest to the "
            f"org's other integrations; next look in {left:.0f} s",
            retry_after=max(left, 1.0),
        )


class Guard:
    """The breaker and the rate limits of one connector, around each of its calls: each
    HTTP request for the vendor connectors (`Guardable`), so that the rate limit counts
    what the vendor counts and one failed request is one failure, not a whole action.
    `bucket` limits every request; `buckets` the endpoint classes a vendor limits on
    their own (a request to one takes its class's token instead); `quota` is a daily
    allocation the vendor reports."""

    def __init__(
        self,
        connector: str,
        breaker: CircuitBreaker,
        bucket: TokenBucket | None = None,
        wait_limit: float = 30.0,
        buckets: Mapping[str, TokenBucket] | None = None,
        quota: Allocation | None = None,
    ) -> None:
        self.connector = connector
        self.breaker = breaker
        self.bucket = bucket
        self.buckets = dict(buckets or {})
        self.quota = quota
        self.wait_limit = wait_limit

    def call(self, operation: str, fn: Callable[[], T], endpoint: str = "") -> T:
        errors = metrics.CONNECTOR_ERRORS
        try:
            probe = self.breaker.before(operation, wait=self.wait_limit)
        except CircuitOpenError:
            errors.labels(self.connector, "circuit_open").inc()
            raise
        bucket = self.buckets.get(endpoint, self.bucket)
        if bucket is not None and not bucket.acquire(self.wait_limit):
            errors.labels(self.connector, "throttled").inc()
            self.breaker.abandon(probe)
            kind = f"{endpoint} " if endpoint in self.buckets else ""
            throttled = ConnectorRateLimitedError(
                self.connector,
                operation,
                f"our own rate limit for this vendor's {kind}requests is exhausted",
                retry_after=1.0,
            )
            throttled.sent = False  # no request left: a wait, not the vendor's answer
            raise throttled
        if self.quota is not None:
            try:
                self.quota.check(operation)
            except ConnectorRateLimitedError as exc:
                errors.labels(self.connector, "throttled").inc()
                self.breaker.abandon(probe)
                exc.sent = False  # our own share of the daily allocation: a wait
                raise
        began = time.perf_counter()
        try:
            result = fn()
        except ConnectorError as exc:
            self._took(operation, began)
            errors.labels(self.connector, metrics.error_kind(exc)).inc()
            self.breaker.failure(exc, probe)
            raise
        except BaseException:
            self._took(operation, began)
            errors.labels(self.connector, "internal").inc()
            self.breaker.abandon(probe)
            raise
        self._took(operation, began)
        self.breaker.success()
        return result

    def _took(self, operation: str, began: float) -> None:
        seconds = time.perf_counter() - began
        metrics.CONNECTOR_SECONDS.labels(self.connector, operation).observe(seconds)


class Guardable:
    """A connector that sends each vendor request through `_guarded`, built with its guard
    (`build_connectors` makes one per connector; None: unguarded, as `csauto connectors
    check` builds them). Verification (`check`) passes unguarded: it must reach the vendor
    even while the breaker is open, and its verdict is not traffic."""

    def __init__(self, guard: Guard | None = None) -> None:
        self.guard = guard

    def _guarded(self, operation: str, fn: Callable[[], T], endpoint: str = "") -> T:
        if self.guard is None or operation == "check":
            return fn()
        return self.guard.call(operation, fn, endpoint)
