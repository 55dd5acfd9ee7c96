"""The README's main job, end to end, as a user runs it: a real `csauto demo` process on the
bundled Temporal dev server, on a small sample so that it takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    store.engine.dispose()
