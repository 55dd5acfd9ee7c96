"""The misfire policy: a run missed while nothing ran runs once when the scheduler comes
back within the job's grace period, and is skipped (and logged) beyond it. Pure parts
with an injected clock; then the real APScheduler over its database job store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler

from csautomation.facts.health import load_health_model
from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling.config import Schedules
from csautomation.scheduling.executor import due_runs, run_at
from csautomation.scheduling.scheduler import Scheduler, SchedulerOptions, job_store, stored_jobs
from csautomation.store.repo import Store
from scheduling.support import run_rows, wait_for, write_rules

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_missed_runs_coalesce_into_one_within_the_grace_period() -> None:
    missed = [T0 - 2 * HOUR, T0 - HOUR, T0]
    now = T0 + timedelta(minutes=5)
    assert due_runs(missed, now, timedelta(minutes=10), coalesce=True) == ([T0], [])
    # beyond the grace period: skipped, not run late
    assert due_runs(missed, now, timedelta(minutes=1), coalesce=True) == ([], [T0])
    # without coalescing each is judged alone
    assert due_runs(missed, now, timedelta(hours=1, minutes=10), coalesce=False) == (
        [T0 - HOUR, T0],
        [T0 - 2 * HOUR],
    )
    assert due_runs(missed, now, None, coalesce=False) == (missed, [])
    assert due_runs([], now, timedelta(minutes=1), coalesce=True) == ([], [])


def test_the_executor_passes_the_fire_time_and_applies_the_policy_on_its_clock() -> None:
    seen: list[tuple[str, datetime]] = []

    def job(name: str, fire_time: datetime) -> str:
        seen.append((name, fire_time))
        return name

    def make(grace: int) -> Any:
        return SimpleNamespace(
            id="pull:x", func=job, args=("x",), kwargs={}, misfire_grace_time=grace, coalesce=True
        )

    late = T0 + timedelta(minutes=5)
    events = run_at(make(600), "default", [T0 - HOUR, T0], lambda: late)
    assert seen == [("x", T0)]
    assert [(e.code, e.scheduled_run_time, e.retval) for e in events] == [
        (EVENT_JOB_EXECUTED, T0, "x")
    ]
    events = run_at(make(60), "default", [T0], lambda: late)
    assert seen == [("x", T0)] and [e.code for e in events] == [EVENT_JOB_MISSED]


# the real scheduler -------------------------------------------------------------------------
@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuleRuntime]:
    r = RuleRuntime([write_rules(tmp_path / "rules")], load_health_model())
    yield r
    r.close()


def hourly_pull(out: Path) -> Schedules:
    return Schedules.model_validate(
        {
            "sweeps": {"enabled": False},
            "completion_sync": {"enabled": False},
            "pulls": {
                "ping": {
                    "kind": "ping",
                    "every": "1h",
                    "misfire_grace": "10m",
                    "options": {"file": str(out)},
                }
            },
        }
    )


def start(store: Store, runtime: RuleRuntime, schedules: Schedules) -> Scheduler:
    """A scheduler process coming up: it takes the free lease and starts its jobs."""
    s = Scheduler(
        store, runtime, schedules, options=SchedulerOptions(pulls_module="scheduling.support")
    )
    assert s.tick() and s.leading
    return s


def next_run(store: Store) -> datetime:
    [job] = stored_jobs(store.engine)
    assert job.id == "pull:ping"
    when = job.next_run_time
    assert isinstance(when, datetime)
    return when


def set_next_run(store: Store, when: datetime) -> None:
    """What a scheduler that went down before `when` left in the job store (written
    through the job store itself: a scheduler started for it could run the job)."""
    jobs = job_store(store.engine)
    jobs.start(BackgroundScheduler(timezone=UTC), "default")
    job = jobs.lookup_job("pull:ping")
    job._modify(next_run_time=when)
    jobs.update_job(job)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_run_missed_while_down_runs_once_on_start_within_grace_and_is_skipped_beyond(
    tmp_path: Path, store: Store, runtime: RuleRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out = tmp_path / "pulls.txt"
    schedules = hourly_pull(out)
    first = start(store, runtime, schedules)
    first.close()
    stored = next_run(store)  # the job state outlives the process
    assert HOUR - timedelta(seconds=30) < stored - datetime.now(UTC) <= HOUR

    # down for two hours: three runs missed, the last one 1 minute ago (grace: 10 minutes)
    now = datetime.now(UTC)
    set_next_run(store, now - 2 * HOUR - timedelta(minutes=1))
    second = start(store, runtime, schedules)
    try:
        wait_for(lambda: lines(out), "the missed pull to run")
        wait_for(lambda: next_run(store) > now, "the job's next run to move on")
    finally:
        second.close()
    [line] = lines(out)  # once, for the latest missed time
    ran = datetime.fromisoformat(line.split()[0])
    assert abs(ran - (now - timedelta(minutes=1))) < timedelta(seconds=2)
    assert [(r.job_id, r.status) for r in run_rows(store)] == [("pull:ping", "done")]
    assert next_run(store) - now > timedelta(minutes=58)

    # down for long enough that the missed run is 30 minutes late: skipped, and logged
    now = datetime.now(UTC)
    set_next_run(store, now - timedelta(minutes=30))
    third = start(store, runtime, schedules)
    try:
        wait_for(lambda: next_run(store) > now, "the job's next run to move on")
        wait_for(
            lambda: "missed by more than its misfire grace" in caplog.text,
            "the skipped run to be logged",
        )
    finally:
        third.close()
    assert len(lines(out)) == 1 and len(run_rows(store)) == 1
    assert timedelta(minutes=29) < next_run(store) - now <= timedelta(minutes=31)


def test_an_unchanged_job_keeps_its_next_run_and_a_changed_one_is_rescheduled(
    tmp_path: Path, store: Store, runtime: RuleRuntime
) -> None:
    out = tmp_path / "pulls.txt"
    start(store, runtime, hourly_pull(out)).close()
    soon = datetime.now(UTC) + timedelta(minutes=7)
    set_next_run(store, soon)
    start(store, runtime, hourly_pull(out)).close()  # restart, same configuration
    assert abs(next_run(store) - soon) < timedelta(seconds=1)
    daily = hourly_pull(out).model_copy(deep=True)
    daily.pulls["ping"].__dict__["every"] = timedelta(days=1)  # the file now says every: 1d
    start(store, runtime, daily).close()
    assert next_run(store) - datetime.now(UTC) > timedelta(hours=23)
    no_pulls = Schedules.model_validate({"sweeps": {"enabled": False}})
    start(store, runtime, no_pulls).close()
    assert stored_jobs(store.engine) == []


def test_a_leader_follows_edited_rule_schedules(tmp_path: Path, store: Store) -> None:
    folder = write_rules(tmp_path / "edited")
    runtime = RuleRuntime([folder], load_health_model(), reload_interval=0)
    schedules = Schedules.model_validate({"completion_sync": {"enabled": False}})
    s = start(store, runtime, schedules)
    try:
        [job] = stored_jobs(store.engine)
        assert job.id == "sweep:usage-drop" and job.next_run_time.hour == 6
        text = (folder / "usage.yaml").read_text()
        (folder / "usage.yaml").write_text(text.replace('"0 6 * * *"', '"30 7 * * *"'))
        assert s.tick()
        [job] = stored_jobs(store.engine)
        assert (job.next_run_time.hour, job.next_run_time.minute) == (7, 30)
        (folder / "usage.yaml").write_text(
            text.replace("priority: high", "enabled: false\n    priority: high")
        )
        assert s.tick()
        assert stored_jobs(store.engine) == []
    finally:
        s.close()
        runtime.close()
