"""A vendor hard down: its breaker opens at the threshold and calls stop, every action ends
in the dead-letter store, and after recovery a re-drive creates each record once."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.activities.redrive import redrive
from csautomation.connectors.base import Receipt, TaskRequest
from csautomation.connectors.config import Breaker, LocalConfig, Retry
from csautomation.connectors.registry import Connectors
from csautomation.connectors.resilience import CircuitBreaker, Guard, Guardable
from csautomation.errors import ConnectorUnavailableError
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.store.deadletters import dead_letters, resolve
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput
from factories import TODAY, playbook_store
from playbook_support import GRACEFUL_SHUTDOWN

RUNS = 20


class Vendor(Guardable):
    """A CRM keyed on the idempotency key, as an external-id upsert is; `up` switches it.
    Its one request per call passes its guard, as a vendor connector's requests do."""

    name = "crm"

    def __init__(self, guard: Guard) -> None:
        super().__init__(guard)
        self.config = LocalConfig(id="crm", type="local", retry=Retry(attempts=4))
        self.up = False
        self.calls = 0
        self.records: dict[str, str] = {}
        self.lock = threading.Lock()

    def create_task(self, request: TaskRequest) -> Receipt:
        return self._guarded("create_task", lambda: self._create(request))

    def _create(self, request: TaskRequest) -> Receipt:
        with self.lock:
            self.calls += 1
            if not self.up:
                raise ConnectorUnavailableError("crm", "create_task", "HTTP 503", status=503)
            known = request.idempotency_key in self.records
            if not known:
                self.records[request.idempotency_key] = f"T-{len(self.records) + 1}"
            return Receipt("crm", self.records[request.idempotency_key], not known)


PLAYBOOK = Playbook.model_validate(
    {
        "id": "down",
        "name": "Vendor down",
        "owner": "cs-ops",
        "steps": [
            {"id": "call", "create_task": {"assignee": "owner", "subject": "Call"}},
            {"id": "done", "complete": {"outcome": "done"}},
        ],
    }
)


@pytest.mark.asyncio
async def test_a_dead_vendor_is_not_hammered_and_every_action_is_redriven_once(
    client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    breaker = CircuitBreaker("crm", Breaker(failures=5, reset_after=timedelta(hours=1)))
    vendor = Vendor(Guard("crm", breaker))
    acts = PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=Connectors({"crm": vendor}, default="crm", fallback=None),
    )
    queue = f"down-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(8),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    ):
        handles = [
            await client.start_workflow(
                PlaybookWorkflow.run,
                PlaybookInput(playbook=PLAYBOOK, playbook_version="v", account_id="ACME"),
                id=f"playbook:down:{i}:{uuid.uuid4()}",
                task_queue=queue,
            )
            for i in range(RUNS)
        ]
        # one at a time: the test server's time-skipping lock is not for concurrent waits
        results = [await h.result() for h in handles]
    # on_failure: continue; each run went on, its action in the dead-letter store
    assert all(r.outcome == "incomplete" for r in results)
    assert breaker.snapshot().state == "open"
    assert vendor.calls == 5  # the threshold; every later attempt stopped at the breaker
    letters = dead_letters(store)
    assert len(letters) == RUNS
    assert {d.workflow_id for d in letters} == {h.id for h in handles}
    # the connector's own retry policy spends only attempts that reached the vendor: the
    # waits at the open breaker spent none, they ended at the workflow's outer bound
    assert all(d.attempts <= 4 for d in letters)
    assert sum(d.attempts for d in letters) < 4 * RUNS
    assert any("gave up after 100 tries" in d.errors[-1]["message"] for d in letters)
    assert {d.errors[-1]["type"] for d in letters} <= {
        "ConnectorUnavailableError",
        "CircuitOpenError",
    }

    vendor.up = True
    breaker.success()  # the vendor is back (a probe would find it so after reset_after)
    for d in letters:
        assert d.id is not None
        record = redrive(acts, d.action, d.payload)
        resolve(store, d.id, "redriven", record)
    assert len(vendor.records) == RUNS
    for d in letters:  # a second re-drive (say, a retry after a lost answer) adds nothing
        redrive(acts, d.action, d.payload)
    assert len(vendor.records) == RUNS and dead_letters(store) == []
