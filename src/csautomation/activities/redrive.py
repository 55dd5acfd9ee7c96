"""Re-drive a dead-lettered action: the same activity, its recorded input, the same
idempotency key, so a vendor that did receive an earlier attempt keeps one record.

`Redriver` is the one implementation behind both the scheduler's automatic re-drive
(scheduling/redrive.py) and `csauto dlq retry`: bounded concurrency, paced by the
connector's own breaker and rate limit (a wait there is not a failure: the entry is tried
again after it, or deferred), each outcome recorded on the dead letter (attempts, the
error chain, the next due time), and the playbooks told through their `redriven` signal.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from temporalio.exceptions import ApplicationError

from csautomation import metrics
from csautomation.activities.playbook import backoff
from csautomation.connectors.config import Retry
from csautomation.errors import CsAutomationError
from csautomation.store.deadletters import postpone, redrive_failed, resolve, transient
from csautomation.store.engine import aware
from csautomation.store.tables import DeadLetterRow
from csautomation.workflows import activity_names as names
from csautomation.workflows.types import EscalationNotice, NotifyInput, TaskInput, UpdateInput

if TYPE_CHECKING:
    from temporalio.client import Client

    from csautomation.activities.escalation import EscalationActivities
    from csautomation.activities.playbook import PlaybookActivities

__all__ = ["Outcome", "RedrivePolicy", "Redriver", "error_entry", "redrive", "tell_workflows"]


class RedrivePolicy(Protocol):
    """When an entry is due again (schedules.yaml `redrive:`, scheduling/config.py)."""

    @property
    def max_age(self) -> timedelta: ...

    def delay(self, redrives: int) -> timedelta: ...


def redrive(
    acts: PlaybookActivities,
    action: str,
    payload: dict[str, Any],
    escalations: EscalationActivities | None = None,
) -> str:
    """Run a dead-lettered action again with its recorded input; the vendor's record id.
    `escalations` serves the escalation workflow's notices."""
    kinds: dict[str, tuple[Any, Any]] = {
        names.CREATE_TASK: (acts, TaskInput),
        names.NOTIFY: (acts, NotifyInput),
        names.UPDATE_ACCOUNT: (acts, UpdateInput),
        names.NOTIFY_ESCALATION: (escalations, EscalationNotice),
    }
    target, model = kinds.get(action, (None, None))
    if target is None:
        raise CsAutomationError(f"cannot re-drive action '{action}'")
    result = getattr(target, action)(model.model_validate(payload))
    return str(result.record_id)


def error_entry(exc: BaseException) -> dict[str, Any]:
    """A failed re-drive as an entry of the dead letter's error chain, in the shape the
    workflow records (workflows/common.py `failure_chain`)."""
    if isinstance(exc, ApplicationError):
        details = exc.details[0] if exc.details and isinstance(exc.details[0], dict) else {}
        return {
            "type": exc.type or type(exc).__name__,
            "message": exc.message,
            "retryable": not exc.non_retryable,
            "details": dict(details),
        }
    return {"type": type(exc).__name__, "message": str(exc), "retryable": False, "details": {}}


def _waited(entry: dict[str, Any]) -> float | None:
    """Seconds to wait when the failure was our own breaker or rate limit (no request
    reached the vendor), else None."""
    details = entry["details"]
    if details.get("sent", True):
        return None
    return float(details.get("retry_after") or 1.0)


@dataclass(frozen=True)
class Outcome:
    """One dead letter's re-drive: `redriven` with the vendor's record id, `failed`
    (recorded, with `next_at` when it is due again, None: a person decides) or `deferred`
    (a wait at our own breaker: not tried, due again at `next_at`)."""

    row: DeadLetterRow
    status: str
    record_id: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    next_at: datetime | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Redriver:
    """Re-drives dead letters through the actions' own code and connectors.

    `patience`: how long (seconds) one entry may wait at our own open breaker or rate
    limit before it is deferred; `tries`: vendor failures per entry before it is recorded
    as failed again (each after the vendor's Retry-After or a backoff). The scheduler
    defers at once and tries once (its growing delays do the rest); `csauto dlq retry`
    waits for the breaker and tries a few times."""

    def __init__(
        self,
        acts: PlaybookActivities,
        policy: RedrivePolicy,
        escalations: EscalationActivities | None = None,
        *,
        concurrency: int = 4,
        patience: float = 0.0,
        tries: int = 1,
        clock: Callable[[], datetime] = _now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.acts = acts
        self.policy = policy
        self.escalations = escalations
        self.concurrency = max(1, concurrency)
        self.patience = patience
        self.tries = max(1, tries)
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()

    def run(
        self, rows: Iterable[DeadLetterRow], on_outcome: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        """Re-drive `rows`, `concurrency` at a time; each outcome recorded on its entry
        and passed to `on_outcome` (from the worker threads, one at a time)."""
        outcomes: list[Outcome] = []

        def one(row: DeadLetterRow) -> None:
            outcome = self._one(row)
            metrics.REDRIVES.labels(row.connector, outcome.status).inc()
            with self._lock:
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="redrive") as pool:
            for future in [pool.submit(one, row) for row in rows]:
                future.result()  # an error of our own (the store away) is not swallowed
        return outcomes

    def _one(self, row: DeadLetterRow) -> Outcome:
        assert row.id is not None
        waited = 0.0
        tried = 0
        while True:
            try:
                record_id = redrive(self.acts, row.action, row.payload, self.escalations)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded on the entry
                entry = error_entry(exc)
            else:
                resolve(self.acts.store, row.id, "redriven", record_id)
                return Outcome(row, "redriven", record_id)
            wait = _waited(entry)
            if wait is not None:  # our own breaker or rate limit: a wait, no attempt spent
                if waited + wait > self.patience:
                    due = self.clock() + timedelta(seconds=wait)
                    postpone(self.acts.store, row.id, due)
                    return Outcome(row, "deferred", error=entry, next_at=due)
                waited += wait
                self.sleep(wait)
                continue
            tried += 1
            if tried < self.tries and entry["retryable"] and transient([entry]):
                after = entry["details"].get("retry_after") or backoff(
                    Retry(), tried, random.random()
                )
                self.sleep(float(after))
                continue
            return self._failed(row, entry)

    def _failed(self, row: DeadLetterRow, entry: dict[str, Any]) -> Outcome:
        assert row.id is not None
        now = self.clock()
        next_at: datetime | None = None
        if transient([*row.errors, entry]):
            next_at = now + self.policy.delay(row.redrives + 1)
            if next_at - aware(row.first_failure) > self.policy.max_age:
                next_at = None  # too old for another automatic try: a person decides
        redrive_failed(self.acts.store, row.id, entry, now, next_at)
        return Outcome(row, "failed", error=entry, next_at=next_at)


async def tell_workflows(client: Client, steps: Iterable[tuple[str, str]]) -> int:
    """Signal `redriven` to each playbook still running; one paused on the step goes on.
    How many were told."""
    from temporalio.service import RPCError

    told = 0
    for workflow_id, step_id in steps:
        try:
            await client.get_workflow_handle(workflow_id).signal("redriven", step_id)
        except RPCError:  # closed, or gone with retention: nothing waits for it
            continue
        told += 1
    return told
