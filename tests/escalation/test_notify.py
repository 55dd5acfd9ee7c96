"""One escalation notice, through the escalation activity: a CRM task assigned to the
person, due at the deadline; a Slack message that mentions them by member id; once per
idempotency key."""

from __future__ import annotations

from datetime import UTC, datetime

from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.base import NotifyRequest, Receipt
from csautomation.connectors.config import SlackConfig
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.registry import Connectors
from csautomation.facts.health import load_health_model
from csautomation.store.repo import local_tasks
from csautomation.workflows.types import EscalationNotice
from factories import playbook_store
from playbook_support import escalation_activities

DUE = datetime(2026, 11, 2, 12, 30, tzinfo=UTC)


class Slack:
    def __init__(self) -> None:
        self.config = SlackConfig(id="slack", type="slack", webhook_url_env="SLACK_URL")
        self.name = "slack"
        self.sent: list[NotifyRequest] = []

    def notify(self, request: NotifyRequest) -> Receipt:
        self.sent.append(request)
        return Receipt("slack", request.idempotency_key, created=True)


def notice(channel: str) -> EscalationNotice:
    return EscalationNotice(
        idempotency_key=f"escalation:r:ACME:1:L1.0:{channel}:csm-01",
        workflow_id="escalation:r:ACME:1",
        step_id=f"L1.0:{channel}:csm-01",
        account_id="ACME",
        severity="critical",
        reason="usage fell 70%",
        level=1,
        channel=channel,
        person_id="csm-01",
        ack_by=DUE,
    )


def test_a_crm_gets_a_task_and_slack_a_mention_each_once(db_url: str) -> None:
    store = playbook_store(db_url)
    slack = Slack()
    connectors = Connectors({"local": LocalCrm(store), "slack": slack}, "local", "local")
    esc = escalation_activities(
        PlaybookActivities(store, load_health_model(), connectors=connectors)
    )
    member = esc.people.get("csm-01")
    assert member is not None and member.slack

    for _ in range(2):  # a retried activity
        esc.notify_escalation(notice("local"))
        esc.notify_escalation(notice("slack"))

    [task] = local_tasks(store, "escalation:r:ACME:1")
    assert (task.assignee, task.priority) == ("csm-01", "critical")
    # SQLite gives the time back without its zone, PostgreSQL with it: the same instant
    assert task.due_at is not None and task.due_at.replace(tzinfo=UTC) == DUE
    assert task.subject == "Escalation (critical): Acme Corp"
    assert "Priya Raman" in task.description and "usage fell 70%" in task.description
    [message] = slack.sent
    assert f"<@{member.slack}>" in message.text and "Priya Raman" not in message.text
    assert "acknowledge by 2026-11-02 12:30 UTC" in message.text
