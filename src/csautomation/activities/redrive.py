"""Re-drive a dead-lettered action: the same activity, its recorded input, the same
idempotency key, so a vendor that did receive an earlier attempt keeps one record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from csautomation.errors import CsAutomationError
from csautomation.store.deadletters import DeadLetter
from csautomation.store.tables import DeadLetterRow
from csautomation.workflows import activity_names as names
from csautomation.workflows.types import EscalationNotice, NotifyInput, TaskInput, UpdateInput

if TYPE_CHECKING:
    from csautomation.activities.escalation import EscalationActivities
    from csautomation.activities.playbook import PlaybookActivities

__all__ = ["failed_again", "redrive"]


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


def failed_again(row: DeadLetterRow, exc: Exception) -> DeadLetter:
    """`row` after one more failed re-drive: `exc` added to its error chain."""
    return DeadLetter(
        idempotency_key=row.idempotency_key,
        workflow_id=row.workflow_id,
        step_id=row.step_id,
        action=row.action,
        connector=row.connector,
        account_id=row.account_id,
        payload=row.payload,
        errors=[
            *row.errors,
            {"type": type(exc).__name__, "message": str(exc), "retryable": True, "details": {}},
        ],
        attempts=row.attempts + 1,
        first_failure=row.first_failure,
        last_failure=datetime.now(UTC),
    )
