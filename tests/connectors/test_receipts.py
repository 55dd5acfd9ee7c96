"""A retried action whose vendor call had succeeded calls the vendor no more, even for a
vendor that cannot deduplicate (Slack's webhooks)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.base import NotifyRequest, Receipt
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.registry import Connectors
from csautomation.facts.health import load_health_model
from csautomation.workflows.types import NotifyInput
from factories import TODAY, playbook_store


class Webhook:
    name = "slack"

    def __init__(self) -> None:
        self.posted: list[str] = []

    def notify(self, request: NotifyRequest) -> Receipt:
        self.posted.append(request.text)  # no idempotency at the vendor
        return Receipt("slack", request.idempotency_key, True)


def test_a_retry_after_a_lost_completion_posts_once(db_url: str) -> None:
    store = playbook_store(db_url)
    hook = Webhook()
    acts = PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=Connectors(
            {"slack": hook, "local": LocalCrm(store)}, default="local", fallback=None
        ),
    )
    inp = NotifyInput(
        idempotency_key="playbook:x:notify",
        workflow_id="playbook:x",
        step_id="notify",
        account_id="ACME",
        channel="slack",
        template="{{ account.name }} renews soon",
    )
    first = acts.notify(inp)
    again = acts.notify(inp)  # Temporal retrying: the first completion was lost
    assert hook.posted == ["Acme Corp renews soon"]
    assert (first.created, again.created) == (True, False)
    assert again.record_id == first.record_id
