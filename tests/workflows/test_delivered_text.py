"""What people read from every step of every shipped playbook: each task, notification,
escalation reason and escalation message is delivered through the real activities to the
local CRM, and the text that arrives is read as people read it.

For an ordinary account no delivered text holds a template mark (`{{`, `{%`), "None" or an
unrendered variable; for an account whose own name looks like a template or like markup,
the name arrives exactly as written (rendered once, never evaluated again).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from csautomation.activities.playbook import PlaybookActivities
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.playbook import template_context
from csautomation.workflows.types import (
    EscalationNotice,
    NotifyInput,
    PlaybookInput,
    TaskInput,
    UpdateInput,
)
from factories import TODAY, account, daily_usage
from playbook_support import PLAYBOOKS, escalation_activities

PLAIN = "Acme Corp"
HOSTILE = 'Zeta {{ 7*7 }} {% if 1 %}x{% endif %} [/red] "Ünï"'
MARKS = ("{{", "{%", "{#", "None", "Undefined")


def deliver_every_step(store: Store, pb: Playbook, account_id: str) -> list[tuple[str, str]]:
    """Each action step of `pb` run by its activity for the account; returns (what, text)
    for every text that reached a person."""
    acts = PlaybookActivities(
        store, load_health_model(), clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC)
    )
    escalations = escalation_activities(acts)
    env = ActivityEnvironment()
    wf_id = f"playbook:test:{pb.id}:{account_id}"
    context = template_context(
        PlaybookInput(
            playbook=pb,
            playbook_version=pb.version,
            account_id=account_id,
            rule_id="usage-decline",
            rule_version="abc",
            params=dict(pb.parameters),
        )
    )
    texts: list[tuple[str, str]] = []
    for step in pb.steps:
        key = f"{wf_id}:{step.id}"
        common = {"idempotency_key": key, "workflow_id": wf_id, "step_id": step.id}
        if step.create_task is not None:
            t = step.create_task
            env.run(
                acts.create_task,
                TaskInput(
                    **common,
                    account_id=account_id,
                    connector=t.connector,
                    assignee=t.assignee,
                    subject=t.subject,
                    description=t.description,
                    due_at=datetime.combine(TODAY, time(12), tzinfo=UTC) + timedelta(days=3),
                    priority=t.priority.value,
                    context=context,
                ),
            )
        elif step.notify is not None:
            env.run(
                acts.notify,
                NotifyInput(
                    **common,
                    account_id=account_id,
                    channel=step.notify.channel,
                    template=step.notify.template,
                    context=context,
                ),
            )
        elif step.update_account is not None:
            u = step.update_account
            env.run(
                acts.update_account,
                UpdateInput(
                    **common,
                    account_id=account_id,
                    connector=u.connector,
                    field=u.field,
                    value=u.value,
                    context=context,
                ),
            )
        elif step.escalate is not None:
            reason = acts.render_for(account_id, step.escalate.reason, context)
            texts.append((f"{pb.id}/{step.id} reason", reason))
            env.run(
                escalations.notify_escalation,
                EscalationNotice(
                    **common,
                    account_id=account_id,
                    severity=step.escalate.severity,
                    reason=reason,
                    level=1,
                    channel="local",
                    person_id="csm-01",
                ),
            )
    for row in local_tasks(store, wf_id):
        texts.append((f"{pb.id}/{row.step_id} {row.kind}", f"{row.subject}\n{row.description}"))
    return texts


def kinds_delivered(store: Store, pb: Playbook, account_id: str) -> set[str]:
    return {row.kind for row in local_tasks(store, f"playbook:test:{pb.id}:{account_id}")}


@pytest.fixture
def accounts(store: Store) -> Store:
    store.upsert_accounts(
        [
            account(id="ACME", name=PLAIN, arr=2e5, seats=40),
            account(id="ZETA", name=HOSTILE, arr=2e5, seats=40),
        ]
    )
    store.add_signals([*daily_usage("ACME", TODAY), *daily_usage("ZETA", TODAY)])
    return store


def test_every_step_kind_is_exercised_by_the_shipped_playbooks() -> None:
    kinds = {step.kind for pb in PLAYBOOKS.values() for step in pb.steps}
    assert {"create_task", "notify", "escalate", "update_account"} <= kinds


@pytest.mark.parametrize("playbook", sorted(PLAYBOOKS))
def test_every_delivered_text_is_rendered(accounts: Store, playbook: str) -> None:
    pb = PLAYBOOKS[playbook]
    texts = deliver_every_step(accounts, pb, "ACME")
    assert texts, f"{playbook} delivers nothing"
    bad = [(what, text) for what, text in texts if any(m in text for m in MARKS)]
    assert bad == []
    # every template that names the account shows its name
    named = [s for s in pb.steps if "account.name" in s.model_dump_json()]
    assert len([t for _, t in texts if PLAIN in t]) >= len(named)
    wanted = {"create_task": "task", "notify": "notification", "update_account": "account_update"}
    expected = {wanted[s.kind] for s in pb.steps if s.kind in wanted}
    assert kinds_delivered(accounts, pb, "ACME") >= expected


@pytest.mark.parametrize("playbook", sorted(PLAYBOOKS))
def test_a_name_that_looks_like_a_template_arrives_as_written(
    accounts: Store, playbook: str
) -> None:
    pb = PLAYBOOKS[playbook]
    texts = deliver_every_step(accounts, pb, "ZETA")
    named = [t for _, t in texts if "Zeta" in t]
    assert named, texts
    for text in named:
        assert HOSTILE in text, text
        assert "49" not in text.replace(HOSTILE, "")


def test_kinds_of_local_rows_are_known(accounts: Store) -> None:
    """The kinds this test reads are the ones the local CRM writes."""
    pb = PLAYBOOKS["renewal-risk"]
    deliver_every_step(accounts, pb, "ACME")
    assert kinds_delivered(accounts, pb, "ACME") <= {"task", "notification", "account_update"}


def test_a_text_value_of_an_account_update_is_a_template(accounts: Store) -> None:
    pb = Playbook.model_validate(
        {
            "id": "flag",
            "name": "Flag",
            "owner": "cs-ops",
            "steps": [
                {
                    "id": "note",
                    "update_account": {
                        "field": "Risk_Note__c",
                        "value": "Flagged by {{ rule.id }} at health {{ facts['health.score'] }}",
                    },
                }
            ],
        }
    )
    deliver_every_step(accounts, pb, "ACME")
    [row] = local_tasks(accounts, "playbook:test:flag:ACME")
    assert row.subject.startswith("Risk_Note__c = Flagged by usage-decline at health ")
    assert not any(m in row.subject for m in MARKS), row.subject
