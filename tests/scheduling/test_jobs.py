"""The job functions: each run claims its key first, records how it ended, and does
nothing where it is not the leader's."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from csautomation.facts.health import load_health_model
from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling import jobs
from csautomation.scheduling.config import Schedules
from csautomation.scheduling.jobs import JobContext, NoSchedulerError
from csautomation.scheduling.leader import Lease
from csautomation.store.facts import FactsReader
from csautomation.store.scheduler_tables import create_tables
from factories import scheduler_store
from scheduling.support import firings, run_rows, write_rules

FIRE = datetime(2026, 11, 1, 6, 0, 0, 400_000, tzinfo=UTC)


@pytest.fixture
def ctx(tmp_path: Path, db_url: str) -> Iterator[JobContext]:
    store = scheduler_store(db_url, FIRE.date())
    create_tables(store.engine)
    runtime = RuleRuntime([write_rules(tmp_path / "rules")], load_health_model())
    out = tmp_path / "pulls.txt"
    schedules = Schedules.model_validate(
        {
            "pulls": {
                "ping": {"kind": "ping", "every": "1m", "options": {"file": str(out)}},
                "broken": {"kind": "ping", "every": "1m", "options": {"fail": "vendor down"}},
            }
        }
    )
    lease = Lease(store.engine, holder="me", clock=lambda: FIRE + timedelta(seconds=3))
    assert lease.acquire()
    context = JobContext(
        store=store,
        runtime=runtime,
        schedules=schedules,
        lease=lease,
        connectors_path=tmp_path / "connectors",
        facts=FactsReader(store, runtime.model),
        pulls_module="scheduling.support",
    )
    jobs.install(context)
    yield context
    jobs.uninstall(context)
    runtime.close()
    store.engine.dispose()


def test_a_pull_runs_once_per_fire_time_with_the_fire_time_as_now(
    ctx: JobContext, tmp_path: Path
) -> None:
    assert jobs.pull_job("ping", fire_time=FIRE) == {"kind": "ping", "fetched": 1}
    assert jobs.pull_job("ping", fire_time=FIRE + timedelta(milliseconds=300)) is None
    assert (
        tmp_path / "pulls.txt"
    ).read_text() == f"{FIRE.replace(microsecond=0).isoformat()} {os.getpid()}\n"
    [row] = run_rows(ctx.store)
    assert (row.job_id, row.status, row.holder, row.epoch) == ("pull:ping", "done", "me", 1)
    assert row.result == {"kind": "ping", "fetched": 1}


def test_a_failed_run_is_recorded_and_raised(ctx: JobContext) -> None:
    with pytest.raises(RuntimeError, match="vendor down"):
        jobs.pull_job("broken", fire_time=FIRE)
    [row] = run_rows(ctx.store)
    assert (row.job_id, row.status, row.result) == (
        "pull:broken",
        "failed",
        {"error": "vendor down"},
    )
    assert jobs.pull_job("gone", fire_time=FIRE) == {"skipped": "no pull 'gone' in schedules.yaml"}


def test_a_sweep_job_sweeps_as_of_its_fire_time(ctx: JobContext) -> None:
    result = jobs.sweep_job("usage-drop", fire_time=FIRE)
    assert result is not None
    assert (result["at"], result["accounts"], result["fired"]) == (
        FIRE.replace(microsecond=0).isoformat(),
        3,
        2,
    )
    assert len(firings(ctx.store)) == 2


def test_a_deposed_leader_runs_nothing(ctx: JobContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # another process took the lease over (this one stalled); this one's view is stale
    rival = Lease(ctx.store.engine, holder="rival", clock=lambda: FIRE + timedelta(seconds=20))
    assert rival.acquire() and rival.epoch == 2
    ctx.lease.expires_at = FIRE + timedelta(seconds=30)  # still believes it holds epoch 1
    assert jobs.sweep_job("usage-drop", fire_time=FIRE) is None
    assert "claimed already, or the lease moved on" in caplog.text
    ctx.lease.forget()
    assert jobs.sweep_job("usage-drop", fire_time=FIRE) is None
    assert "this process does not lead" in caplog.text
    assert run_rows(ctx.store) == [] and firings(ctx.store) == []


def test_completion_sync_runs_on_the_loop_of_the_temporal_client(ctx: JobContext) -> None:
    assert jobs.completion_sync_job(fire_time=FIRE) == {
        "skipped": "no Temporal client in this scheduler"
    }
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        ctx.client, ctx.loop = object(), loop
        ctx.connectors = SimpleNamespace(by_name={})  # nothing reports completions
        assert jobs.completion_sync_job(fire_time=FIRE + timedelta(minutes=1)) == {"told": 0}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_a_job_outside_a_scheduler_process_says_so() -> None:
    with pytest.raises(NoSchedulerError):
        jobs.pull_job("ping", fire_time=FIRE)


def test_the_redrive_job_redrives_what_is_due_and_records_its_run(ctx: JobContext) -> None:
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.activities.redrive import Redriver
    from csautomation.scheduling.config import Redrive
    from csautomation.store.deadletters import DeadLetter, dead_letters, record_dead_letter
    from csautomation.workflows.types import TaskInput

    assert jobs.redrive_job(fire_time=FIRE) == {"skipped": "no connectors in this scheduler"}
    failed = FIRE - timedelta(minutes=5)
    task = TaskInput(
        idempotency_key="playbook:p:ACME:call",
        workflow_id="playbook:p:ACME",
        step_id="call",
        account_id="ACME",
        connector=None,  # the local CRM
        assignee="owner",
        subject="Call",
        description="",
        due_at=FIRE,
        priority="medium",
        context={},
    )
    unavailable = {"type": "ConnectorUnavailableError", "message": "503", "retryable": True}
    record_dead_letter(
        ctx.store,
        DeadLetter(
            idempotency_key=task.idempotency_key,
            workflow_id=task.workflow_id,
            step_id="call",
            action="create_task",
            connector="",
            account_id="ACME",
            payload=task.model_dump(mode="json"),
            errors=[unavailable | {"details": {}}],
            attempts=8,
            first_failure=failed,
            last_failure=failed,
        ),
    )
    acts = PlaybookActivities(ctx.store, ctx.runtime.model)
    ctx.redriver = Redriver(acts, Redrive())
    assert jobs.redrive_job(fire_time=FIRE + timedelta(minutes=1)) == {
        "redriven": 1,
        "failed": 0,
        "deferred": 0,
        "to_person": 0,
    }
    assert dead_letters(ctx.store) == []
    [resolved] = dead_letters(ctx.store, "redriven")
    assert resolved.record_id and resolved.next_redrive_at is None
    assert [r.status for r in run_rows(ctx.store)] == ["done", "done"]
