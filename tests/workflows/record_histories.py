"""Record one history per shipped playbook for the replay test.

Run after a deliberate, versioned change to the playbook workflow or a shipped playbook,
into a new folder under histories/ (the older folders stay: runs recorded then must still
replay):
    .venv/bin/python tests/workflows/record_histories.py histories/NAME
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).parents[1]))
from csautomation.runtime.server import test_server_path  # noqa: E402
from csautomation.workflows.playbook import PlaybookWorkflow  # noqa: E402
from factories import playbook_store  # noqa: E402
from playbook_support import (  # noqa: E402
    HISTORIES,
    PLAYBOOKS,
    RECORDED_ACCOUNT,
    make_worker,
    playbook_input,
)


async def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter
    ) as env:
        with tempfile.TemporaryDirectory() as tmp:
            store = playbook_store(Path(tmp))
            async with make_worker(env.client, store, "record"):
                for playbook_id in sorted(PLAYBOOKS):
                    account = RECORDED_ACCOUNT.get(playbook_id, "ACME")
                    wf_id = f"playbook:recorded:{account}:{playbook_id}"
                    handle = await env.client.start_workflow(
                        PlaybookWorkflow.run,
                        playbook_input(playbook_id, account),
                        id=wf_id,
                        task_queue="record",
                    )
                    result = await handle.result()
                    history = await handle.fetch_history()
                    path = folder / f"{playbook_id}.json"
                    path.write_text(history.to_json(), encoding="utf-8")
                    print(f"{path}: outcome {result.outcome}, {len(result.steps)} steps")
            store.engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(Path(__file__).parent / sys.argv[1] if len(sys.argv) > 1 else HISTORIES))
