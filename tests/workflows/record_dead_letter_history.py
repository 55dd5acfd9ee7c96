"""Record the history of a playbook run whose action is dead-lettered, for the replay test.

The refusing CRM fails the first task for good (a validation error); the run records the dead
letter, goes on (`on_failure: continue`) and completes. Run after a deliberate, versioned
change to the dead-letter path, into a new file (older recordings stay: runs recorded then must
still replay):
    .venv/bin/python tests/workflows/record_dead_letter_history.py histories/dead-letter/NAME.json
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).parents[1]))
from csautomation.activities.playbook import PlaybookActivities  # noqa: E402
from csautomation.connectors.base import Receipt, TaskRequest  # noqa: E402
from csautomation.connectors.registry import Connectors  # noqa: E402
from csautomation.errors import ConnectorValidationError  # noqa: E402
from csautomation.facts.health import load_health_model  # noqa: E402
from csautomation.playbooks.spec import Playbook  # noqa: E402
from csautomation.runtime.converter import data_converter  # noqa: E402
from csautomation.runtime.server import test_server_path  # noqa: E402
from csautomation.workflows.escalation import EscalationWorkflow  # noqa: E402
from csautomation.workflows.playbook import PlaybookWorkflow  # noqa: E402
from csautomation.workflows.types import PlaybookInput  # noqa: E402
from factories import TODAY, playbook_store  # noqa: E402

WORKFLOW_ID = "playbook:recorded:ACME:dead-letter"
PLAYBOOK = Playbook.model_validate(
    {
        "id": "dead-letter",
        "name": "A refused task, then the rest",
        "owner": "cs-ops",
        "steps": [
            {"id": "call", "create_task": {"subject": "Call {{ account.name }}"}},
            {"id": "done", "complete": {"outcome": "done"}},
        ],
    }
)


class Refusing:
    name = "crm"

    def create_task(self, request: TaskRequest) -> Receipt:  # noqa: ARG002
        raise ConnectorValidationError("crm", "create_task", "FIELD_INTEGRITY", status=400)


async def main(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=data_converter
    ) as env:
        with tempfile.TemporaryDirectory() as tmp:
            store = playbook_store(Path(tmp))
            acts = PlaybookActivities(
                store,
                load_health_model(),
                clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
                connectors=Connectors({"crm": Refusing()}, default="crm", fallback=None),
            )
            async with Worker(
                env.client,
                task_queue="record",
                workflows=[PlaybookWorkflow, EscalationWorkflow],
                activities=acts.all(),
                activity_executor=ThreadPoolExecutor(2),
            ):
                handle = await env.client.start_workflow(
                    PlaybookWorkflow.run,
                    PlaybookInput(
                        playbook=PLAYBOOK, playbook_version=PLAYBOOK.version, account_id="ACME"
                    ),
                    id=WORKFLOW_ID,
                    task_queue="record",
                )
                result = await handle.result()
                history = await handle.fetch_history()
            path.write_text(history.to_json(), encoding="utf-8")
            print(f"{path}: outcome {result.outcome}")
            store.engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(Path(__file__).parent / sys.argv[1]))
