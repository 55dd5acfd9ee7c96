"""What the audit tests share: a store of the playbook accounts with the shipped rules over
it, and ACME's logins down today, so that the pipeline fires usage-decline for it."""

from __future__ import annotations

from datetime import UTC, datetime, time

from temporalio.client import Client

from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.repo import Store
from factories import ROOT, TODAY
from playbook_support import PLAYBOOKS

PLAYBOOK = "playbook:usage-decline:usage-recovery:ACME:"


def acme_falls(store: Store, client: Client, queue: str, key: str) -> tuple[Pipeline, RuleRuntime]:
    """The pipeline over `store` (every priority on `queue`) with ACME's usage signal of
    TODAY stored under idempotency key `key`; close the runtime when done."""
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    pipeline = Pipeline(
        store,
        runtime,
        PLAYBOOKS,
        client,
        queues=dict.fromkeys(("critical", "high", "medium", "low"), queue),
    )
    pipeline.add_signal(
        Signal(
            type="usage_daily",
            account_id="ACME",
            occurred_at=datetime.combine(TODAY, time(18), tzinfo=UTC),
            payload={"logins": 30, "active_users": 7},
            idempotency_key=key,
        )
    )
    return pipeline, runtime
