"""What the workflows share (sandbox-safe): timeouts and retry policies, and the step that
records an action that failed for good in the dead-letter store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from csautomation.workflows import activity_names as names

with workflow.unsafe.imports_passed_through():
    from csautomation.workflows.types import DeadLetterInput

TIMEOUT = timedelta(seconds=30)
# our own store (facts, outcomes, dead letters): retried until it answers
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
# a vendor action: the activity applies its connector's own policy (connectors/*.yaml:
# backoff with jitter, the vendor's Retry-After, bounded attempts) through each failure's
# next_retry_delay and non_retryable; this is only the outer bound, for unexpected errors,
# at the ceiling of `retry.attempts` so that a connector's own policy is never cut short
ACTION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=100,
)


async def dead_letter(
    err: ActivityError,
    name: str,
    arg: Any,
    step_id: str,
    connector: str,
    account_id: str,
    first_failure: datetime,
) -> None:
    """Record the action `name(arg)` that failed for good, with its error chain, in the
    dead-letter store: everything needed to re-drive it through the same key."""
    errors = failure_chain(err)
    attempt = next((e["details"].get("attempt", 0) for e in errors if e["details"]), 0)
    # the connector that failed, as the activity resolved it: a step that names none used
    # the configured default, and its dead letter must say which (`connectors status`)
    connector = next(
        (str(e["details"]["connector"]) for e in errors if e["details"].get("connector")),
        connector,
    )
    await workflow.execute_local_activity(
        names.RECORD_DEAD_LETTER,
        DeadLetterInput(
            idempotency_key=arg.idempotency_key,
            workflow_id=arg.workflow_id,
            step_id=step_id,
            action=name,
            connector=connector,
            account_id=account_id,
            payload=arg.model_dump(mode="json"),
            errors=errors,
            attempts=int(attempt) or 1,
            first_failure=first_failure,
            last_failure=workflow.now(),
        ),
        start_to_close_timeout=TIMEOUT,
        retry_policy=RETRY,
    )


def failure_chain(err: BaseException) -> list[dict[str, Any]]:
    """The failure and its causes, outermost first, as plain data."""
    out: list[dict[str, Any]] = []
    cur: BaseException | None = err
    while cur is not None and len(out) < 10:
        details: dict[str, Any] = {}
        kind = type(cur).__name__
        retryable = True
        if isinstance(cur, ApplicationError):
            kind = cur.type or kind
            retryable = not cur.non_retryable
            if cur.details and isinstance(cur.details[0], dict):
                details = dict(cur.details[0])
        message = cur.message if isinstance(cur, FailureError) else str(cur)
        out.append({"type": kind, "message": message, "retryable": retryable, "details": details})
        cur = cur.cause if isinstance(cur, FailureError) else None
    return out
