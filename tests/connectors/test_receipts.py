"""A retried action whose vendor call had succeeded calls the vendor no more, even for a
vendor that cannot deduplicate (Slack's webhooks); the receipt and the action's ledger
entry are kept together, and the entry says "created" once."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pytest import MonkeyPatch
from sqlalchemy.exc import OperationalError

from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.base import NotifyRequest, Receipt
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.receipts import keep_receipt, receipt_for
from csautomation.connectors.registry import Connectors
from csautomation.facts.health import load_health_model
from csautomation.store import ledger
from csautomation.store.repo import Store
from csautomation.workflows.types import NotifyInput
from factories import TODAY, playbook_store


class Webhook:
    name = "slack"

    def __init__(self) -> None:
        self.posted: list[str] = []

    def notify(self, request: NotifyRequest) -> Receipt:
        self.posted.append(request.text)  # no idempotency at the vendor
        return Receipt("slack", request.idempotency_key, True)


INPUT = NotifyInput(
    idempotency_key="playbook:x:notify",
    workflow_id="playbook:x",
    step_id="notify",
    account_id="ACME",
    channel="slack",
    template="{{ account.name }} renews soon",
)


def activities(store: Store, hook: Webhook) -> PlaybookActivities:
    return PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=Connectors(
            {"slack": hook, "local": LocalCrm(store)}, default="local", fallback=None
        ),
    )


def effects(store: Store) -> list[ledger.Entry]:
    return ledger.entries(store, ledger.Query(workflow_id="playbook:x", kinds=ledger.EFFECTS))


def test_a_retry_after_a_lost_completion_posts_once(db_url: str) -> None:
    store = playbook_store(db_url)
    hook = Webhook()
    acts = activities(store, hook)
    first = acts.notify(INPUT)
    again = acts.notify(INPUT)  # Temporal retrying: the first completion was lost
    assert hook.posted == ["Acme Corp renews soon"]
    # the step made the message, whichever attempt's completion reached the workflow
    assert (first.created, again.created) == (True, True)
    assert again.record_id == first.record_id
    [entry] = effects(store)
    assert (entry.kind, entry.connector, entry.record_id) == ("notify", "slack", first.record_id)
    assert entry.detail["outcome"] == "created" and entry.detail["vendor"] == "created"
    assert receipt_for(store, INPUT.idempotency_key) is not None


def test_a_receipt_kept_without_its_entry_gets_it_at_the_receipts_time(db_url: str) -> None:
    """A receipt kept by an older release, whose separate ledger write never happened."""
    store = playbook_store(db_url)
    kept_at = datetime(2026, 10, 30, 8, tzinfo=UTC)
    keep_receipt(store, INPUT.idempotency_key, Receipt("slack", "m-1", True), at=kept_at)
    hook = Webhook()
    assert activities(store, hook).notify(INPUT).record_id == "m-1"
    assert hook.posted == []  # the receipt says it was posted
    [entry] = effects(store)
    assert entry.at == kept_at and entry.record_id == "m-1"
    assert entry.detail["outcome"] == "created" and entry.detail["vendor"] == "found_existing"


def test_a_receipt_is_kept_only_with_its_entry(db_url: str, monkeypatch: MonkeyPatch) -> None:
    store = playbook_store(db_url)

    def failing(*_args: object) -> None:
        raise OperationalError("insert into decision_ledger", {}, Exception("disk full"))

    monkeypatch.setattr(ledger, "append", failing)
    with pytest.raises(OperationalError):
        activities(store, Webhook()).notify(INPUT)
    assert receipt_for(store, INPUT.idempotency_key) is None  # rolled back with the entry
