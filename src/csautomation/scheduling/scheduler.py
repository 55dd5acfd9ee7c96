"""The scheduler process: elect a leader, and run APScheduler's jobs only while leading.

Every scheduler process renews (or tries to take) the lease every `renew_every`
(leader.py). The one holding it runs an APScheduler `BackgroundScheduler` over the shared
job store; the others wait. Losing the lease shuts the scheduler down at once (no new
run starts; a run already under way finishes, and its writes are idempotent), and a run
that starts anyway is refused its run key (runs.py).

Why `BackgroundScheduler` rather than `AsyncIOScheduler`: the SQLAlchemy job store and
the jobs (sweeps, the vendors' SDKs behind the pulls) are blocking code. A background
scheduler keeps them on its own thread and thread pool, so `csauto dev`, which runs the
scheduler next to the API server and the Temporal workers on one event loop, never
stalls on them. The one job that needs the loop (completion sync, through the Temporal
client) is handed to it with `run_coroutine_threadsafe`.

Job state (each job's next run time) lives in the `apscheduler_jobs` table of the store's
database, so it survives restarts: on taking the lease, the jobs the configuration asks
for are reconciled with the stored ones, and an unchanged job keeps its stored next run
time. A run missed while no scheduler ran is then due at once, and the misfire policy
(executor.py) runs it (once, coalesced) within its grace period or skips and logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import obj_to_ref
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling import runs
from csautomation.scheduling.config import Schedules
from csautomation.scheduling.executor import FireTimeExecutor
from csautomation.scheduling.jobs import PULLS_MODULE, JobContext, JobSpec, install, plan_jobs
from csautomation.scheduling.jobs import uninstall as uninstall_context
from csautomation.scheduling.leader import (
    LEASE_NAME,
    LEASE_TTL,
    RENEW_EVERY,
    Clock,
    Lease,
    current_lease,
    utc_now,
)
from csautomation.scheduling.sweep_facts import SweepFacts
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.store.scheduler_tables import JOBS_TABLE, create_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerOptions:
    lease_ttl: timedelta = LEASE_TTL
    renew_every: timedelta = RENEW_EVERY
    lease_name: str = LEASE_NAME
    holder: str | None = None  # default: host:pid:random
    clock: Clock = utc_now
    workers: int = 4
    pulls_module: str = PULLS_MODULE
    keep_runs: timedelta = timedelta(days=14)  # run keys older than this are pruned
    # changes each planned job (tests run daily sweeps every second with it)
    adjust: Callable[[JobSpec], JobSpec] | None = None


class _JobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store, inert once shut down. The scheduler's thread
    makes one more pass over the store after `shutdown()`; that pass must neither start
    nor move a job (another process may lead by then). Shutting down also leaves the
    engine, which is the store's, open."""

    closed = False

    def shutdown(self) -> None:
        self.closed = True  # under the scheduler's job store lock, as its passes are

    def get_due_jobs(self, now: datetime) -> list[Job]:
        return [] if self.closed else list(super().get_due_jobs(now))

    def get_next_run_time(self) -> datetime | None:
        return None if self.closed else cast(datetime | None, super().get_next_run_time())


def job_store(engine: Engine) -> Any:
    """APScheduler's job store, in the store's database (table apscheduler_jobs)."""
    return _JobStore(engine=engine, tablename=JOBS_TABLE)


def stored_jobs(engine: Engine) -> list[Job]:
    """The jobs in the job store, read without running a scheduler (APScheduler makes its
    table when it is not there: `scheduled_jobs` only reads)."""
    store = job_store(engine)
    store.start(BackgroundScheduler(timezone=UTC), "default")
    return list(store.get_all_jobs())


def scheduled_jobs(engine: Engine) -> list[Job]:
    """The jobs in the job store as it is: none before a scheduler made its table."""
    return stored_jobs(engine) if inspect(engine).has_table(JOBS_TABLE) else []


def _same(job: Job, spec: JobSpec, grace: int) -> bool:
    return (
        job.func_ref == obj_to_ref(spec.func)
        and tuple(job.args) == spec.args
        and str(job.trigger) == spec.schedule
        and job.misfire_grace_time == grace
        and job.coalesce == spec.coalesce
    )


def reconcile(aps: Any, specs: list[JobSpec]) -> None:
    """Make the job store hold exactly `specs`. A job whose trigger is unchanged keeps its
    stored next run time, so runs missed while nothing ran are still due."""
    stored = {job.id: job for job in aps.get_jobs()}
    for job_id in stored.keys() - {s.id for s in specs}:
        aps.remove_job(job_id)
        log.info("removed job %s (no longer configured)", job_id)
    for spec in specs:
        grace = int(spec.misfire_grace.total_seconds())
        old = stored.get(spec.id)
        if old is not None and old.next_run_time is not None and _same(old, spec, grace):
            continue
        kwargs: dict[str, Any] = {}
        if old is not None and old.next_run_time is not None and str(old.trigger) == spec.schedule:
            kwargs["next_run_time"] = old.next_run_time
        aps.add_job(
            spec.func,
            trigger=spec.trigger,
            args=list(spec.args),
            id=spec.id,
            name=spec.id,
            misfire_grace_time=grace,
            coalesce=spec.coalesce,
            max_instances=1,
            replace_existing=True,
            **kwargs,
        )


class Scheduler:
    """One process's scheduler: `tick()` every `renew_every`, `close()` at the end.
    Thread-safe: ticks and the close are serialised."""

    def __init__(
        self,
        store: Store,
        runtime: RuleRuntime,
        schedules: Schedules,
        connectors_path: Path = Path("connectors"),
        options: SchedulerOptions | None = None,
        facts: FactsReader | None = None,
        client: Any = None,
        connectors: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        redriver: Any = None,
    ) -> None:
        self.options = options or SchedulerOptions()
        o = self.options
        create_tables(store.engine)
        self.lease = Lease(store.engine, o.lease_name, o.holder, o.lease_ttl, o.clock)
        facts = facts or FactsReader(store, runtime.model)
        self.ctx = JobContext(
            store=store,
            runtime=runtime,
            schedules=schedules,
            lease=self.lease,
            connectors_path=connectors_path,
            facts=facts,
            kept=SweepFacts(store, runtime.model, fallback=facts),
            pulls_module=o.pulls_module,
            client=client,
            loop=loop,
            connectors=connectors,
            redriver=redriver,
        )
        self._aps: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._rules: str | None = None
        self._pruned: datetime | None = None
        self._waiting = False

    @property
    def leading(self) -> bool:
        return self._aps is not None

    def plan(self) -> list[JobSpec]:
        ctx = self.ctx
        specs = plan_jobs(
            ctx.schedules,
            ctx.runtime.ruleset,
            completion_sync=ctx.client is not None,
            redrive=ctx.redriver is not None,
        )
        adjust = self.options.adjust
        return [adjust(s) for s in specs] if adjust else specs

    def tick(self) -> bool:
        """Renew or take the lease; start the jobs on taking it, stop them on losing it.
        Returns whether this process leads."""
        with self._lock:
            if self._closed:
                return False
            try:
                held = self.lease.acquire()
            except SQLAlchemyError as exc:  # the database is away: lead while the lease lasts
                log.warning("lease renewal failed: %s", exc)
                held = self.lease.held()
            if held and self._aps is None:
                self._start()
            elif not held and self._aps is not None:
                log.warning("lost the scheduler lease: jobs stopped")
                self._stop()
            elif held:
                self._refresh()
            if not held and not self._waiting:
                self._log_leader()
            self._waiting = not held
            return held

    def close(self) -> None:
        """Stop the jobs and hand the lease over."""
        with self._lock:
            self._closed = True
            self._stop()
            try:
                self.lease.release()
            except SQLAlchemyError as exc:
                log.warning("could not release the scheduler lease (it expires): %s", exc)

    # internals ---------------------------------------------------------------------------
    def _start(self) -> None:
        self.ctx.runtime.reload_if_changed()
        self._rules = self.ctx.runtime.ruleset.fingerprint
        self.ctx.stopped.clear()
        install(self.ctx)
        aps = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": job_store(self.ctx.store.engine)},
            executors={"default": FireTimeExecutor(self.options.workers, self.options.clock)},
        )
        try:
            aps.start(paused=True)
            reconcile(aps, self.plan())
            aps.resume()
        except Exception:  # nothing runs half set up: stop, and try again on the next tick
            aps.shutdown(wait=False)
            uninstall_context(self.ctx)
            raise
        self._aps = aps
        log.info(
            "leading as %s (epoch %s): %d jobs",
            self.lease.holder,
            self.lease.epoch,
            len(aps.get_jobs()),
        )

    def _stop(self) -> None:
        aps, self._aps = self._aps, None
        self.ctx.stopped.set()
        if aps is not None:
            aps.shutdown(wait=False)
        uninstall_context(self.ctx)

    def _log_leader(self) -> None:
        with contextlib.suppress(SQLAlchemyError):
            state = current_lease(self.ctx.store.engine, self.lease.name)
            if state is not None and state.live(self.options.clock()):
                log.info(
                    "waiting for the scheduler lease: %s leads (epoch %d)",
                    state.holder,
                    state.epoch,
                )
                return
        log.info("waiting for the scheduler lease")

    def _refresh(self) -> None:
        """Follow edited rules (their schedules), and forget old run keys now and then."""
        runtime = self.ctx.runtime
        runtime.reload_if_changed()
        if runtime.ruleset.fingerprint != self._rules:
            self._rules = runtime.ruleset.fingerprint
            reconcile(self._aps, self.plan())
        now = self.options.clock()
        if self._pruned is None or now - self._pruned > timedelta(hours=1):
            self._pruned = now
            runs.prune(self.ctx.store.engine, now - self.options.keep_runs)


async def run_scheduler(
    store: Store,
    runtime: RuleRuntime,
    schedules: Schedules,
    *,
    connectors_path: Path = Path("connectors"),
    client: Any = None,
    connectors: Any = None,
    facts: FactsReader | None = None,
    options: SchedulerOptions | None = None,
    stop: asyncio.Event | None = None,
    redriver: Any = None,
) -> None:
    """Elect, schedule and run jobs until cancelled or `stop` is set; the lease is
    handed over on the way out. Completion sync runs only with a Temporal `client` (and
    `connectors`), on this loop; the automatic re-drive only with a `redriver`
    (activities.redrive.Redriver)."""
    scheduler = Scheduler(
        store,
        runtime,
        schedules,
        connectors_path,
        options,
        facts=facts,
        client=client,
        connectors=connectors,
        loop=asyncio.get_running_loop(),
        redriver=redriver,
    )
    stop = stop or asyncio.Event()
    wait = scheduler.options.renew_every.total_seconds()
    try:
        while not stop.is_set():
            try:
                await asyncio.to_thread(scheduler.tick)
            except Exception:  # a process edge: log, keep trying on the next tick
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
    finally:
        scheduler.close()
