"""Workflow and activity payloads. Inputs carry ids and validated definitions, never secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from csautomation.playbooks.spec import Playbook


class PlaybookInput(BaseModel):
    playbook: Playbook
    playbook_version: str
    account_id: str
    rule_id: str = ""
    rule_version: str = ""
    explain: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    # multiplies every wait, timeout and check interval; the demo runs a day in a second
    time_scale: float = Field(default=1.0, gt=0, le=1)


class StepRecord(BaseModel):
    step_id: str
    kind: str
    started_at: datetime
    ended_at: datetime | None = None
    result: str = ""


class PlaybookResult(BaseModel):
    outcome: str
    steps: list[StepRecord]


class FactsInput(BaseModel):
    account_id: str


class TaskInput(BaseModel):
    idempotency_key: str  # workflow id + step id: one task however often this is retried
    workflow_id: str
    step_id: str
    account_id: str
    connector: str | None
    assignee: str
    subject: str
    description: str
    due_at: datetime
    priority: str
    context: dict[str, Any]


class EscalationInput(BaseModel):
    account_id: str
    severity: str
    reason: str
    source_workflow_id: str
    rule_id: str = ""


class EscalationAction(BaseModel):
    """A person's action on an escalation, signalled to its workflow."""

    by: str  # the person id of whoever acted
    note: str = ""
    to: str = ""  # reassign: the person id of the new holder
    until: datetime | None = None  # snooze: until when


class EscalationEvent(BaseModel):
    at: datetime
    # opened, notified, climbed, exhausted, acknowledged, reassigned, snoozed, woke, resolved
    kind: str
    by: str = "system"
    level: int = 0
    detail: str = ""


class EscalationState(BaseModel):
    """What a manager sees: the workflow's query answer, and the store's copy of it."""

    workflow_id: str
    account_id: str
    severity: str
    reason: str = ""
    rule_id: str = ""
    source_workflow_id: str = ""
    team: str = ""
    status: str = "open"  # open, acknowledged, snoozed, resolved
    level: int = 0
    holder: str = ""  # person id
    holder_name: str = ""
    opened_at: datetime
    ack_by: datetime | None = None  # the current level's deadline, while open
    snoozed_until: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str = ""
    timeline: list[EscalationEvent] = Field(default_factory=list)


class RunOutcome(BaseModel):
    workflow_id: str
    outcome: str


class NotifyInput(BaseModel):
    idempotency_key: str
    workflow_id: str
    step_id: str
    account_id: str
    channel: str
    template: str
    context: dict[str, Any] = Field(default_factory=dict)


class UpdateInput(BaseModel):
    idempotency_key: str
    workflow_id: str
    step_id: str
    account_id: str
    connector: str | None
    field: str
    value: str | int | float | bool | None


class ActionResult(BaseModel):
    connector: str
    record_id: str
    created: bool


class DeadLetterInput(BaseModel):
    """An action that failed for good: what the dead-letter store keeps to re-drive it."""

    idempotency_key: str
    workflow_id: str
    step_id: str
    action: str  # the activity name
    connector: str
    account_id: str
    payload: dict[str, Any]  # the activity's input, as it was sent
    errors: list[dict[str, Any]]  # outermost first: type, message, retryable, details
    attempts: int
    first_failure: datetime  # when the step started; its first attempt failed after it
    last_failure: datetime


class OpenEscalation(BaseModel):
    workflow_id: str  # deterministic: the same problem never opens two escalations
    input: EscalationInput
    # what the reason's template sees of the firing beside the account (rule, params)
    context: dict[str, Any] = Field(default_factory=dict)


class EscalationPlanInput(BaseModel):
    account_id: str
    severity: str
    start: datetime
    from_level: int = 1


class EscalationRecord(BaseModel):
    state: EscalationState
    seq: int  # increasing per workflow: an older write never overwrites a newer one
    plan: dict[str, Any] | None = None


class EscalationNotice(BaseModel):
    """One person told about an escalation through one channel (a CRM task, Slack, a
    webhook); the idempotency key makes it once, however often it is retried."""

    idempotency_key: str
    workflow_id: str
    step_id: str
    account_id: str
    severity: str
    reason: str
    level: int
    channel: str  # connector id
    person_id: str
    ack_by: datetime | None = None
