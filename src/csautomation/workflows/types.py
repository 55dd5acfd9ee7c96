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


class TaskResult(BaseModel):
    task_id: str
    created: bool


class EscalationInput(BaseModel):
    account_id: str
    severity: str
    reason: str
    source_workflow_id: str


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
