"""A rule's own `create_task` action is the playbook step model itself: its priority,
connector, due date and text reach each vendor as the rule wrote them (the rule's task used to
be copied field by field, and every red-health task arrived as Normal)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.facts.health import load_health_model
from csautomation.pipeline.dispatch import Firing, plan
from csautomation.rules.loader import load_rules
from csautomation.store.deadletters import dead_letters
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from factories import TODAY, playbook_store, vendor_connectors
from fakes.vendors import SF_KEY, Vendors
from playbook_support import GRACEFUL_SHUTDOWN

NOW = datetime.combine(TODAY, time(12), tzinfo=UTC)


RULES = """
rules:
  - id: red-health-{vendor}
    name: Health score is red
    owner: cs-ops@example.com
    priority: high
    trigger: {{on: [usage_daily]}}
    conditions: health.band == red
    cooldown: 30d
    actions:
      - create_task:
          connector: {vendor}
          subject: "Health is red for {{{{ account.name }}}}"
          description: "Review the account plan."
          due_in: 2d
          priority: high
"""


def firing(folder: Path, vendor: str) -> Firing:
    """The firing a rule file's `create_task` action makes, loaded as a user's file is."""
    path = folder / f"red-{vendor}.yaml"
    path.write_text(RULES.format(vendor=vendor))
    [compiled] = load_rules([path]).rules
    rule = compiled.rule
    return Firing(
        rule_id=rule.id,
        rule_version=compiled.version,
        account_id="ACME",
        window=1,
        priority=rule.priority.value,
        at=NOW,
        actions=tuple(a.model_dump(mode="json", by_alias=True) for a in rule.actions),
    )


@pytest.mark.asyncio
async def test_a_rule_task_with_priority_high_reaches_each_vendor_as_high(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    connectors = vendor_connectors(vendors, store, tmp_path)
    acts = PlaybookActivities(store, load_health_model(), clock=lambda: NOW, connectors=connectors)
    queue = f"rule-task-{uuid.uuid4()}"
    vendor_ids = ("salesforce", "zendesk", "hubspot")
    planned = [p for v in vendor_ids for p in plan(firing(tmp_path, v), {})]
    started: dict[str, datetime] = {}
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[PlaybookWorkflow, EscalationWorkflow],
            activities=acts.all(),
            activity_executor=ThreadPoolExecutor(4),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        ):
            for p in planned:
                handle = await client.start_workflow(
                    p.run, p.arg, id=p.workflow_id, task_queue=queue
                )
                result = await handle.result()
                assert result.outcome == "completed"
                started[p.workflow_id] = result.steps[0].started_at
    finally:
        connectors.close()

    assert dead_letters(store) == []
    [sf] = vendors.salesforce.tasks.values()
    [zd] = vendors.zendesk.tickets.values()
    [hs] = vendors.hubspot.objects["tasks"].values()
    props: dict[str, Any] = hs["properties"]
    assert sf["Priority"] == "High"
    assert zd["priority"] == "high"
    assert props["hs_task_priority"] == "HIGH"
    # the other fields came along too: the rendered subject, the due date two days on
    assert (
        sf["Subject"] == zd["subject"] == props["hs_task_subject"] == "Health is red for Acme Corp"
    )
    assert sf[SF_KEY].endswith(":task")
    # due two days after the step ran (the run's own clock)
    [sf_start, zd_start, _] = (started[p.workflow_id] for p in planned)
    assert str(sf["ActivityDate"]) == (sf_start + timedelta(days=2)).date().isoformat()
    assert str(zd["due_at"]) == (zd_start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
