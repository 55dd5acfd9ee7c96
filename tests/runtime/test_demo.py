"""The README's main job, end to end, as a user runs it: a real `csauto demo` process on the
bundled Temporal dev server, on a small sample so that it takes seconds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from csautomation.store.outbox import runs
from csautomation.store.repo import Store, local_tasks

ROOT = Path(__file__).parents[2]
CSAUTO = Path(sys.executable).parent / "csauto"


@pytest.mark.slow
@pytest.mark.sqlite_only  # the demo keeps its store in its data folder, on SQLite
def test_demo_runs_every_firing_to_completion_with_one_task_per_step(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.run(
        [
            *(str(CSAUTO), "demo", "--data-dir", str(data), "--accounts", "60"),
            *("--day-seconds", "0.1", "--port", "0"),
        ],
        cwd=ROOT,
        env={**os.environ, "CSAUTO_DATA_DIR": str(tmp_path), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for heading in ("Rules fired", "Workflows", "Tasks per CSM", "Temporal UI: http"):
        assert heading in proc.stdout
    assert "Traceback" not in proc.stderr

    store = Store(f"sqlite:///{data}/csauto.db")
    all_runs = runs(store)
    playbooks = [r for r in all_runs if r.kind == "playbook"]
    assert playbooks, "the sample should make rules fire"
    # every playbook ran to its end; the escalations stay open for the managers
    assert [r.workflow_id for r in playbooks if r.status == "running"] == []
    assert "escalations open for the managers" in proc.stdout
    assert all(r.outcome for r in playbooks)
    tasks = [t for t in local_tasks(store) if t.kind == "task"]
    # every playbook's first step creates a task, and no step ever created two
    assert {t.workflow_id for t in tasks} >= {r.workflow_id for r in playbooks}
    steps = [(t.workflow_id, t.step_id) for t in tasks]
    assert len(steps) == len(set(steps))
    assert_people_read_rendered_text(store, data)
    store.engine.dispose()


TEMPLATE_MARKS = ("{{", "{%", "{#", "None")


def delivered(store: Store) -> list[tuple[str, str]]:
    """Every text the demo delivered to people: the local CRM's tasks and notifications,
    and the escalations (reason, events, notes) as the review page and API read them."""
    texts: list[tuple[str, str]] = []
    for t in local_tasks(store):
        texts += [(f"{t.kind} {t.id} subject", t.subject), (f"{t.kind} {t.id}", t.description)]
    with store.engine.connect() as conn:
        for wf_id, state in conn.execute(sa.text("SELECT workflow_id, state FROM escalations")):
            texts.append((f"escalation {wf_id}", json.dumps(json.loads(state))))
    return texts


def assert_people_read_rendered_text(store: Store, data: Path) -> None:
    texts = delivered(store)
    assert sum(1 for what, _ in texts if what.startswith("escalation")) > 0
    bad = [(what, text[:200]) for what, text in texts if any(m in text for m in TEMPLATE_MARKS)]
    assert bad == []
    with store.engine.connect() as conn:
        states = [json.loads(s) for (s,) in conn.execute(sa.text("SELECT state FROM escalations"))]
    # the rules' own escalations and the playbooks' both name their account
    accounts = store.accounts({s["account_id"] for s in states})
    for s in states:
        assert accounts[s["account_id"]].name in s["reason"], s
    asyncio.run(replay_some(store, data))


async def replay_some(store: Store, data: Path) -> None:
    """`csauto replay` of a playbook run that escalated and of a rule's own escalation,
    against the demo's Temporal data (no worker: nothing resumes)."""
    from csautomation.runtime.server import start_dev_server

    all_runs = runs(store)
    escalated = next(r for r in all_runs if r.kind == "playbook" and r.outcome == "escalated")
    direct = next(r for r in all_runs if r.kind == "escalation")
    server = await start_dev_server(data, port=None, ui=False)
    try:
        for wf_id in (escalated.workflow_id, direct.workflow_id):
            proc = await asyncio.to_thread(
                subprocess.run,
                [str(CSAUTO), "replay", wf_id, "--temporal-address", server.address],
                env={**os.environ, "CSAUTO_DATABASE_URL": str(store.engine.url)},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
            shown = [m for m in ("{{", "{%", "{#") if m in proc.stdout]
            assert shown == [], proc.stdout
    finally:
        await server.shutdown()
