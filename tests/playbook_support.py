"""Shared set-up for playbook workflow tests and for recording replay histories."""

from __future__ import annotations

import asyncio
import os
import sysconfig
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from csautomation.activities.escalation import EscalationActivities
from csautomation.activities.playbook import PlaybookActivities
from csautomation.escalation.matrix import load_escalation_config
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal
from csautomation.playbooks.loader import load_playbooks
from csautomation.store.repo import Store
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import EscalationAction, PlaybookInput, PlaybookResult

ROOT = Path(__file__).parents[1]
TODAY = date(2026, 11, 1)
PLAYBOOKS = load_playbooks([ROOT / "workflows"])
HISTORIES = Path(__file__).parent / "workflows" / "histories"


def server_path() -> str:
    return os.path.join(sysconfig.get_path("scripts"), "temporal-test-server")


def make_store(where: str | Path) -> Store:
    """ACME, whose logins fell from 100 to 30 a day a month ago; BETA, the same, with three
    support escalations in the last two weeks. `where`: a database URL (the `db_url`
    fixture's), or a folder for a SQLite file."""
    s = Store(where if isinstance(where, str) else f"sqlite:///{where}/csauto.db")
    s.create_all()
    s.upsert_accounts(
        [
            Account(
                id=account_id,
                name=name,
                tier="enterprise",
                arr=2e5,
                seats=40,
                owner="csm-01",
                manager="mgr-01",
                renewal_date=date(2027, 2, 1),
                customer_since=date(2022, 1, 1),
            )
            for account_id, name in (("ACME", "Acme Corp"), ("BETA", "Beta Labs"))
        ]
    )
    signals = []
    for account_id in ("ACME", "BETA"):
        for back in range(90, -1, -1):
            logins = 100 if back > 30 else 30
            at = datetime.combine(TODAY - timedelta(days=back), time(9), tzinfo=UTC)
            signals.append(
                Signal(
                    type="usage_daily",
                    account_id=account_id,
                    occurred_at=at,
                    payload={"logins": logins, "active_users": logins // 4},
                )
            )
    for back in (12, 7, 2):
        at = datetime.combine(TODAY - timedelta(days=back), time(15), tzinfo=UTC)
        signals.append(
            Signal(
                type="support_escalation",
                account_id="BETA",
                occurred_at=at,
                payload={"reason": "outage"},
            )
        )
    s.add_signals(signals)
    return s


# the account each shipped playbook is recorded against, so that it runs its steps
RECORDED_ACCOUNT = {"support-recovery": "BETA"}


def make_worker(env: WorkflowEnvironment, store: Store, queue: str) -> Worker:
    acts = PlaybookActivities(
        store, load_health_model(), clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC)
    )
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=[*acts.all(), *escalation_activities(acts).all()],
        activity_executor=ThreadPoolExecutor(4),
    )


def escalation_activities(acts: PlaybookActivities) -> EscalationActivities:
    """The escalation workflow's activities on the shipped matrix and people directory."""
    matrix, people = load_escalation_config(ROOT / "escalation_matrix.yaml", ROOT / "people.yaml")
    return EscalationActivities(acts, matrix, people)


def playbook_input(playbook: str = "usage-recovery", account: str = "ACME") -> PlaybookInput:
    pb = PLAYBOOKS[playbook]
    return PlaybookInput(
        playbook=pb,
        playbook_version=pb.version,
        account_id=account,
        rule_id="usage-decline",
        rule_version="abc",
    )


async def end_escalations(
    env: WorkflowEnvironment, workflow_id: str, result: PlaybookResult, account: str = "ACME"
) -> int:
    """Resolve the escalations a finished playbook opened, and wait until they close: they
    outlive it, and one left open (or with an activity in flight) when its worker stops
    holds the test server's clock still for later tests. Call it while the worker runs."""
    ended = 0
    for step in result.steps:
        if step.kind != "escalate":
            continue
        eid = f"escalation:{account}:{workflow_id}:{step.step_id}"
        handle = env.client.get_workflow_handle(eid)
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="test", note="over"))
        assert await handle.result() == "resolved"
        ended += 1
    return ended


async def until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Wait for a condition another task (a worker, a pipeline) brings about, up to a
    deadline."""
    deadline = asyncio.get_running_loop().time() + limit
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
