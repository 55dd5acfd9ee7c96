"""Activities of the playbook workflow, built with their dependencies.

This is the one place where connector and template problems become ApplicationError: a
problem no retry can fix (unknown account, broken template) is non-retryable; everything
else is retried by the workflow's retry policy.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from csautomation.connectors.base import (
    Connector,
    FieldUpdate,
    NotifyConnector,
    NotifyRequest,
    Receipt,
    RecordConnector,
    TaskConnector,
    TaskRequest,
)
from csautomation.connectors.config import Retry
from csautomation.connectors.local import LocalCrm, LocalRequest
from csautomation.connectors.receipts import keep_receipt, kept
from csautomation.connectors.registry import Connectors, UnknownConnectorError
from csautomation.errors import ConnectorError
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account
from csautomation.store import ledger
from csautomation.store.attempts import count_attempt
from csautomation.store.deadletters import DeadLetter, record_dead_letter
from csautomation.store.facts import FactsReader
from csautomation.store.outbox import finish_run
from csautomation.store.repo import Store
from csautomation.templates import TemplateProblem, render
from csautomation.templates import context as template_context
from csautomation.workflows import activity_names as names
from csautomation.workflows.common import ACTION_RETRY
from csautomation.workflows.types import (
    ActionResult,
    DeadLetterInput,
    FactsInput,
    NotifyInput,
    RunOutcome,
    TaskInput,
    UpdateInput,
)

log = logging.getLogger(__name__)

# the workflows' outer bound on Temporal's attempts of an action (waits included)
_OUTER_ATTEMPTS = ACTION_RETRY.maximum_attempts or 100

C = TypeVar("C", TaskConnector, NotifyConnector, RecordConnector)


class _Step(Protocol):
    """What every action's input names: the step that does it, once."""

    @property
    def idempotency_key(self) -> str: ...
    @property
    def workflow_id(self) -> str: ...
    @property
    def step_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...


def local_connectors(store: Store) -> Connectors:
    """The embedded default: every capability served by the local CRM in our store."""
    return Connectors({"local": LocalCrm(store)}, default="local", fallback="local")


class PlaybookActivities:
    def __init__(
        self,
        store: Store,
        model: HealthModel,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        connectors: Connectors | None = None,
        facts: FactsReader | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.clock = clock
        self.connectors = connectors or local_connectors(store)
        # shared with the pipeline in one process, the facts it derived are read from memory
        self.facts = facts or FactsReader(store, model)

    def account(self, account_id: str) -> Account:
        account = self.store.account(account_id)
        if account is None:
            raise ApplicationError(
                f"no account '{account_id}'", non_retryable=True, type="UnknownAccount"
            )
        return account

    def _facts(self, account: Account) -> dict[str, Any]:
        """Fresh facts: derived again only when the day or the account's signals change, so
        the goal checks of many waiting playbooks cost an index look-up each."""
        return self.facts.record(account, self.clock().date())

    def render_for(self, account_id: str, source: str, extra: dict[str, Any] | None = None) -> str:
        """`source` rendered for the account, as task texts are (an escalation's reason);
        a template that fails is returned as written (logged): an escalation must open.
        Templates are checked when their file loads, so that is for a fact gone since."""
        if "{" not in source:
            return source
        try:
            return render(source, self._context(self.account(account_id), extra or {}))
        except TemplateProblem as exc:
            activity.logger.warning("reason %r not rendered: %s", source, exc)
            return source

    def _render(self, source: str, context: dict[str, Any]) -> str:
        try:
            return render(source, context)
        except TemplateProblem as exc:
            raise ApplicationError(str(exc), non_retryable=True, type="TemplateError") from exc

    def _context(self, account: Account, extra: dict[str, Any]) -> dict[str, Any]:
        # every fact of the catalog is there, None (shown "not known") when it has no value
        # for this account; a misspelt name still fails the template
        return template_context(account.model_dump(mode="json"), self._facts(account), **extra)

    @staticmethod
    def _result(action: str, receipt: Receipt) -> ActionResult:
        """`created` as the ledger says it: the step made its record, in this attempt or in
        one that died before it could tell (store/ledger.py)."""
        created = ledger.outcome(action, receipt.created) == ledger.CREATED
        return ActionResult(
            connector=receipt.connector, record_id=receipt.record_id, created=created
        )

    @activity.defn(name=names.READ_ACCOUNT_FACTS)
    def read_account_facts(self, inp: FactsInput) -> dict[str, Any]:
        return self._facts(self.account(inp.account_id))

    @activity.defn(name=names.CREATE_TASK)
    def create_task(self, inp: TaskInput) -> ActionResult:
        account = self.account(inp.account_id)
        context = self._context(account, inp.context)
        wanted = account.owner if inp.assignee == "owner" else account.manager
        request = TaskRequest(
            idempotency_key=inp.idempotency_key,
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
            account=account,
            # an account with no owner yet: its manager, else the connector's default
            assignee=wanted or account.manager or account.owner or "",
            subject=self._render(inp.subject, context),
            description=self._render(inp.description, context),
            due_at=inp.due_at,
            priority=inp.priority,
        )
        connector = self.connector(self.connectors.tasks, inp.connector)
        return self.deliver(
            names.CREATE_TASK, inp, connector, request, lambda: connector.create_task(request)
        )

    @activity.defn(name=names.NOTIFY)
    def notify(self, inp: NotifyInput) -> ActionResult:
        account = self.account(inp.account_id)
        request = NotifyRequest(
            idempotency_key=inp.idempotency_key,
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
            account=account,
            channel=inp.channel,
            text=self._render(inp.template, self._context(account, inp.context)),
        )
        connector = self.connector(self.connectors.notifier, inp.channel)
        return self.deliver(
            names.NOTIFY, inp, connector, request, lambda: connector.notify(request)
        )

    @activity.defn(name=names.UPDATE_ACCOUNT)
    def update_account(self, inp: UpdateInput) -> ActionResult:
        account = self.account(inp.account_id)
        value = inp.value
        if isinstance(value, str) and "{" in value:  # "At risk since {{ ... }}"
            value = self._render(value, self._context(account, inp.context))
        request = FieldUpdate(
            idempotency_key=inp.idempotency_key,
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
            account=account,
            field=inp.field,
            value=value,
        )
        connector = self.connector(self.connectors.records, inp.connector)
        return self.deliver(
            names.UPDATE_ACCOUNT, inp, connector, request, lambda: connector.update_account(request)
        )

    def deliver(
        self,
        action: str,
        inp: _Step,
        connector: Connector,
        request: LocalRequest,
        call: Callable[[], Receipt],
    ) -> ActionResult:
        """Do a side effect once, entered in the decision ledger in the same transaction as
        its record: the local CRM writes its row and the entry together; a vendor's answer
        is kept as a receipt together with the entry, and an attempt that finds a receipt
        calls nobody. What the entry states: store/ledger.py."""
        if isinstance(connector, LocalCrm):
            return self._result(
                action, _vendor(lambda: connector.record(request, action), _retry(connector))
            )
        key = inp.idempotency_key
        known = kept(self.store, key)
        if known is not None:
            receipt, at = known
            # kept with its entry; a receipt kept before they were written together gets
            # its entry now (nothing if it has one)
            ledger.append_one(self.store, _entry(action, inp, receipt, at))
            return self._result(action, receipt)
        receipt = _vendor(call, _retry(connector), self._counter(key))
        # the wall clock (`self.clock` is the facts' "today", simulated in the demo)
        now = datetime.now(UTC)
        keep_receipt(self.store, key, receipt, _entry(action, inp, receipt, now), at=now)
        return self._result(action, receipt)

    def _counter(self, key: str) -> Callable[[int, bool], int]:
        """Counts the action's failed attempts in the store: those that reached the vendor,
        the ones its retry policy spends (store/attempts.py)."""
        return lambda attempt, sent: count_attempt(self.store, key, attempt, sent).sent

    @activity.defn(name=names.RECORD_DEAD_LETTER)
    def record_dead_letter(self, inp: DeadLetterInput) -> int:
        return record_dead_letter(self.store, DeadLetter(**inp.model_dump()))

    @activity.defn(name=names.RECORD_RUN_OUTCOME)
    def record_run_outcome(self, inp: RunOutcome) -> None:
        finish_run(self.store, inp.workflow_id, inp.outcome, datetime.now(UTC))

    @staticmethod
    def connector(find: Callable[[str | None], C], name: str | None) -> C:
        """`find(name)`: one of the registry's capabilities (`self.connectors.tasks`, ...);
        a connector that is not there fails the action for good."""
        try:
            return find(name)
        except UnknownConnectorError as exc:
            raise ApplicationError(str(exc), non_retryable=True, type="UnknownConnector") from exc

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.read_account_facts,
            self.create_task,
            self.notify,
            self.update_account,
            self.record_run_outcome,
            self.record_dead_letter,
        ]


def _entry(action: str, inp: _Step, receipt: Receipt, at: datetime) -> ledger.Entry:
    attempt = activity.info().attempt if activity.in_activity() else None
    return ledger.effect(
        action,
        inp.idempotency_key,
        inp.workflow_id,
        inp.step_id,
        inp.account_id,
        receipt.connector,
        receipt.record_id,
        receipt.created,
        at=at,
        attempt=attempt,
    )


def _retry(connector: Connector) -> Retry:
    config = getattr(connector, "config", None)
    return getattr(config, "retry", None) or Retry()


def backoff(policy: Retry, attempt: int, jitter: float) -> float:
    """Seconds before the attempt after `attempt`: exponential, capped, with up to 20%
    jitter (`jitter` in [0, 1)) so that retries of many playbooks do not arrive together."""
    base = policy.initial.total_seconds() * policy.backoff ** max(attempt - 1, 0)
    return min(base, policy.maximum.total_seconds()) * (1 - 0.2 * jitter)


def _vendor(
    call: Callable[[], Receipt], policy: Retry, count: Callable[[int, bool], int] | None = None
) -> Receipt:
    """The one place a connector's failure becomes Temporal's, under the connector's own
    retry policy: the vendor's refusals are non-retryable (straight to the dead-letter
    store); other failures wait the policy's backoff, or the vendor's Retry-After, until
    the policy's attempts are spent. Only attempts that reached the vendor spend them:
    `count(temporal_attempt, sent)` keeps the durable count, and a wait at our own open
    breaker or rate limit (`sent` False) is a wait, however often Temporal retries it, up
    to the workflow's outer bound (ACTION_RETRY). The attempt number travels with the
    failure for the dead-letter entry."""
    try:
        return call()
    except ConnectorError as exc:
        inside = activity.in_activity()
        temporal = activity.info().attempt if inside else 1
        attempt = count(temporal, exc.sent) if count is not None and inside else temporal
        spent = exc.retryable and exc.sent and attempt >= policy.attempts
        # Temporal's last attempt under the outer bound: whatever it met, it is final
        bounded = exc.retryable and temporal >= _OUTER_ATTEMPTS
        wait = exc.retry_after or backoff(policy, attempt, random.random())
        if not exc.sent:  # our own breaker or limit: its own wait, no backoff to grow
            wait = exc.retry_after or 1.0
        message = str(exc)
        if spent:
            message += f" (gave up after {attempt} attempts)"
        elif bounded:
            message += f" (gave up after {temporal} tries, {attempt} attempts at the vendor)"
        final = spent or bounded or not exc.retryable
        if not final:  # one line, not the SDK's warning with a traceback per attempt
            log.info("%s; attempt %d, next in %.1f s", exc, attempt, wait)
        raise ApplicationError(
            message,
            {
                "connector": exc.connector,
                "operation": exc.operation,
                "status": exc.status,
                "retry_after": exc.retry_after,
                "attempt": attempt,
                "sent": exc.sent,
            },
            type=type(exc).__name__,
            non_retryable=final,
            next_retry_delay=timedelta(seconds=wait),
            # an attempt to be retried is expected weather: BENIGN keeps it out of the
            # SDK's warnings and failure metrics; the final one is reported in full
            category=ApplicationErrorCategory.UNSPECIFIED
            if final
            else ApplicationErrorCategory.BENIGN,
        ) from None  # the ConnectorError's own cause, a vendor library's, may name a secret
