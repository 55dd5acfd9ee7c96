"""The misfire policy, and an APScheduler executor that applies it and hands each job
its scheduled fire time.

APScheduler hands an executor the fire times a job is due for (one, or several when runs
were missed while no scheduler ran). The policy, per job:

- `coalesce`: several missed fire times run once, as the latest of them;
- `misfire_grace`: a fire time older than this when it comes up is skipped and logged
  (a sweep missed by a day waits for its next time rather than run late).

APScheduler's own `run_job` calls the job with its stored arguments only; the run key
(`runs.py`) needs the fire time, so this executor passes it as `fire_time=`. It reads the
time from an injectable clock, which makes the policy testable without waiting.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor

from csautomation.scheduling.leader import Clock, utc_now

log = logging.getLogger(__name__)


def due_runs(
    run_times: Sequence[datetime], now: datetime, grace: timedelta | None, coalesce: bool
) -> tuple[list[datetime], list[datetime]]:
    """(fire times to run, fire times skipped as missed beyond the grace period)."""
    times = sorted(run_times)
    if coalesce and times:
        times = times[-1:]
    if grace is None:
        return times, []
    due = [t for t in times if now - t <= grace]
    return due, [t for t in times if now - t > grace]


class FireTimeExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """A thread pool executor that applies `due_runs` and passes `fire_time=`."""

    def __init__(self, max_workers: int = 4, clock: Clock = utc_now) -> None:
        super().__init__(max_workers)
        self.clock = clock

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def done(f: Any) -> None:
            if f.cancelled():  # the pool was shut down before the job started
                self._run_job_success(job.id, [])
                return
            exc = f.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, f.result())

        future = self._pool.submit(run_at, job, job._jobstore_alias, run_times, self.clock)
        future.add_done_callback(done)


def run_at(job: Any, alias: str, run_times: list[datetime], clock: Clock) -> list[Any]:
    """APScheduler's `run_job`, with the policy above and the fire time passed on."""
    grace = (
        timedelta(seconds=job.misfire_grace_time) if job.misfire_grace_time is not None else None
    )
    due, missed = due_runs(run_times, clock(), grace, job.coalesce)
    events = []
    for run_time in missed:
        log.warning(
            "skipped %s scheduled at %s: missed by more than its misfire grace (%s)",
            job.id,
            run_time.isoformat(),
            grace,
        )
        events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, alias, run_time))
    for run_time in due:
        try:
            value = job.func(*job.args, fire_time=run_time, **job.kwargs)
        except Exception:  # the executor's edge: logged and reported as an event
            exc, tb = sys.exc_info()[1:]
            log.exception("job %s (scheduled at %s) failed", job.id, run_time.isoformat())
            events.append(
                JobExecutionEvent(
                    EVENT_JOB_ERROR,
                    job.id,
                    alias,
                    run_time,
                    exception=exc,
                    traceback="".join(traceback.format_tb(tb)),
                )
            )
        else:
            events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, alias, run_time, value))
    return events
