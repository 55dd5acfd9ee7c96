"""The capabilities a playbook asks for, as Protocols; vendors implement the ones they have.

Every request carries one idempotency key (workflow id + step id). A connector must turn
repeated requests with the same key into one side effect: an external-id field at the
vendor, or a look-up before create. Requests carry resolved values, never secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from csautomation.facts.model import Account


@dataclass(frozen=True)
class TaskRequest:
    idempotency_key: str
    workflow_id: str
    step_id: str
    account: Account
    assignee: str  # the CSM's or manager's user id
    subject: str
    description: str
    due_at: datetime
    priority: str


@dataclass(frozen=True)
class NotifyRequest:
    idempotency_key: str
    workflow_id: str
    step_id: str
    account: Account
    channel: str
    text: str


@dataclass(frozen=True)
class FieldUpdate:
    idempotency_key: str
    workflow_id: str
    step_id: str
    account: Account
    field: str
    value: str | int | float | bool | None


@dataclass(frozen=True)
class Receipt:
    """What the vendor holds now: its record id, and whether this call created it."""

    connector: str
    record_id: str
    created: bool


@runtime_checkable
class TaskConnector(Protocol):
    name: str

    def create_task(self, request: TaskRequest) -> Receipt: ...


@runtime_checkable
class NotifyConnector(Protocol):
    name: str

    def notify(self, request: NotifyRequest) -> Receipt: ...


@runtime_checkable
class RecordConnector(Protocol):
    name: str

    def update_account(self, request: FieldUpdate) -> Receipt: ...


# what the registry holds: a connector with at least one of the capabilities
Connector = TaskConnector | NotifyConnector | RecordConnector


@dataclass(frozen=True)
class Completion:
    """A task or ticket the vendor reports done, keyed back to the step that created it."""

    record_id: str
    idempotency_key: str  # workflow id + ":" + step id, as sent at creation
    completed_at: datetime
    completed_by: str = ""  # the vendor's user id of whoever completed it, when it tells


@runtime_checkable
class CompletionSource(Protocol):
    """Completion sync: what was completed at the vendor since a moment."""

    name: str

    def completed_since(self, since: datetime) -> list[Completion]: ...


@runtime_checkable
class Checkable(Protocol):
    """`csauto connectors check`: verify configuration and credentials against the live
    service with one cheap authenticated call; return what was verified, or raise a
    ConnectorError saying what is wrong."""

    name: str

    def check(self) -> str: ...
