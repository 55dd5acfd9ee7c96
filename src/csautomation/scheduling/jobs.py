"""The scheduler's jobs: module-level functions that only trigger work.

    sweep:<rule id>     the rule over every account (sweep.py), on the rule's own cron
    pull:<name>         csautomation.ingest.pulls.run_pull for an entry of schedules.yaml
    completion-sync     completions in the CRM signalled to their playbooks (ingest/completions.py)
    redrive             dead letters of transient failures re-driven when due (redrive.py)

APScheduler's SQLAlchemy job store pickles a reference to each job's function and its
arguments, so the functions live here at module level and take simple values (a rule id,
a pull name). What they work on (the store, the rules, the Temporal client) is the running
scheduler's `JobContext`, installed in this process while it leads.

Every run first claims its run key (`runs.claim`): a key already claimed, or a lease no
longer held, means the run is skipped, whichever process tries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from csautomation.config import format_duration as format_interval
from csautomation.errors import CsAutomationError
from csautomation.rules.loader import RuleSet
from csautomation.rules.runtime import SCHEDULE, RuleRuntime, triggered
from csautomation.scheduling import runs
from csautomation.scheduling.config import Schedules
from csautomation.scheduling.leader import Lease
from csautomation.scheduling.sweep import sweep
from csautomation.scheduling.sweep_facts import SweepFacts
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store

log = logging.getLogger(__name__)

# the module with `run_pull(kind, options, ctx)` and `PullContext(store, connectors_path, now)`
PULLS_MODULE = "csautomation.ingest.pulls"
COMPLETION_SYNC = "completion-sync"
REDRIVE = "redrive"


@dataclass
class JobContext:
    store: Store
    runtime: RuleRuntime
    schedules: Schedules
    lease: Lease
    connectors_path: Path
    facts: FactsReader
    # the accounts and histories kept between sweeps (read from the store without it)
    kept: SweepFacts | None = None
    pulls_module: str = PULLS_MODULE
    # completion sync: the Temporal client, the loop it belongs to, and the connectors
    client: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    connectors: Any = None
    sync_timeout: float = 50.0
    # automatic re-drive: an activities.redrive.Redriver over the worker's connectors
    redriver: Any = None
    # set when the scheduler stops leading: a run waiting on the loop gives up
    stopped: threading.Event = field(default_factory=threading.Event)


class NoSchedulerError(CsAutomationError):
    """A job ran in a process where no scheduler leads (no JobContext installed)."""


_lock = threading.Lock()
_context: JobContext | None = None


def install(ctx: JobContext) -> None:
    global _context
    with _lock:
        if _context is not None and _context is not ctx:
            raise RuntimeError("a scheduler already runs jobs in this process")
        _context = ctx


def uninstall(ctx: JobContext) -> None:
    global _context
    with _lock:
        if _context is ctx:
            _context = None


def current() -> JobContext:
    ctx = _context
    if ctx is None:
        raise NoSchedulerError("no scheduler runs in this process")
    return ctx


# the plan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    """A job as the configuration wants it; `scheduler.reconcile` makes the store agree."""

    id: str
    func: Callable[..., Any]
    args: tuple[str, ...]
    trigger: Any  # an APScheduler trigger (picklable)
    misfire_grace: timedelta
    coalesce: bool = True
    describe: str = ""  # for people: "cron 0 6 * * *", "every 15m"

    @property
    def schedule(self) -> str:
        """The trigger as APScheduler describes it (compared with the stored job's)."""
        return str(self.trigger)


def cron(expr: str) -> Any:
    return CronTrigger.from_crontab(expr, timezone=UTC)


def every(interval: timedelta) -> Any:
    return IntervalTrigger(seconds=int(interval.total_seconds()), timezone=UTC)


def plan_jobs(
    schedules: Schedules, ruleset: RuleSet, completion_sync: bool = True, redrive: bool = False
) -> list[JobSpec]:
    """The jobs the configuration asks for: one sweep per enabled rule with a schedule,
    one job per enabled pull, completion sync (when a Temporal client is at hand) and the
    automatic re-drive (when the connectors are)."""
    jobs: list[JobSpec] = []
    if schedules.sweeps.enabled:
        for rule in ruleset.enabled:
            expr = rule.rule.trigger.schedule
            if expr is not None and triggered(rule, SCHEDULE):
                jobs.append(
                    JobSpec(
                        f"sweep:{rule.id}",
                        sweep_job,
                        (rule.id,),
                        cron(expr),
                        schedules.sweeps.misfire_grace,
                        describe=f"cron {expr}",
                    )
                )
    for name, pull in schedules.pulls.items():
        if not pull.enabled:
            continue
        if pull.cron is not None:
            trigger, describe = cron(pull.cron), f"cron {pull.cron}"
        else:
            interval = _given(pull.every)
            trigger, describe = every(interval), f"every {format_interval(interval)}"
        jobs.append(
            JobSpec(
                f"pull:{name}",
                pull_job,
                (name,),
                trigger,
                pull.misfire_grace,
                pull.coalesce,
                describe=describe,
            )
        )
    sync = schedules.completion_sync
    if sync.enabled and completion_sync:
        jobs.append(
            JobSpec(
                COMPLETION_SYNC,
                completion_sync_job,
                (),
                every(sync.every),
                sync.misfire_grace,
                describe=f"every {format_interval(sync.every)}",
            )
        )
    again = schedules.redrive
    if again.enabled and redrive:
        jobs.append(
            JobSpec(
                REDRIVE,
                redrive_job,
                (),
                every(again.every),
                again.misfire_grace,
                describe=f"every {format_interval(again.every)}",
            )
        )
    return jobs


def _given(value: timedelta | None) -> timedelta:
    assert value is not None  # the schema asks for every or cron
    return value


# the jobs ------------------------------------------------------------------------------
def sweep_job(rule_id: str, fire_time: datetime | None = None) -> dict[str, Any] | None:
    """Sweep one scheduled rule over every account, as of its scheduled time."""

    def work(ctx: JobContext, at: datetime) -> dict[str, Any]:
        result = sweep(ctx.store, ctx.runtime, [rule_id], at, facts=ctx.facts, kept=ctx.kept)
        return result.to_dict()

    return _run_once(f"sweep:{rule_id}", fire_time, work)


def pull_job(name: str, fire_time: datetime | None = None) -> dict[str, Any] | None:
    """One pull of schedules.yaml, through csautomation.ingest.pulls.run_pull."""

    def work(ctx: JobContext, at: datetime) -> dict[str, Any]:
        pull = ctx.schedules.pulls.get(name)
        if pull is None:  # removed from schedules.yaml since the job was stored
            return {"skipped": f"no pull '{name}' in schedules.yaml"}
        module = importlib.import_module(ctx.pulls_module)  # imported only when pulls run
        pull_ctx = module.PullContext(store=ctx.store, connectors_path=ctx.connectors_path, now=at)
        return _plain(module.run_pull(pull.kind, dict(pull.options), pull_ctx))

    return _run_once(f"pull:{name}", fire_time, work)


def completion_sync_job(fire_time: datetime | None = None) -> dict[str, Any] | None:
    """Signal completed CRM tasks to their playbooks, on the loop the Temporal client uses."""

    def work(ctx: JobContext, at: datetime) -> dict[str, Any]:
        from csautomation.ingest.completions import sync_completions

        if ctx.client is None or ctx.loop is None or ctx.connectors is None:
            return {"skipped": "no Temporal client in this scheduler"}
        told = _on_loop(ctx, sync_completions(ctx.client, ctx.store, ctx.connectors, now=at))
        if told is None:
            return {"skipped": "the scheduler stopped, or the sync took too long"}
        return {"told": told}

    return _run_once(COMPLETION_SYNC, fire_time, work)


def redrive_job(fire_time: datetime | None = None) -> dict[str, Any] | None:
    """Re-drive the due dead letters of transient failures (scheduling/redrive.py), then
    tell their playbooks, on the loop the Temporal client uses."""

    def work(ctx: JobContext, at: datetime) -> dict[str, Any]:
        from csautomation.activities.redrive import tell_workflows
        from csautomation.scheduling.redrive import redrive_due

        if ctx.redriver is None:
            return {"skipped": "no connectors in this scheduler"}
        done = redrive_due(ctx.redriver, at)
        result = done.to_dict()
        if done.steps and ctx.client is not None and ctx.loop is not None:
            try:
                result["told"] = _on_loop(ctx, tell_workflows(ctx.client, done.steps))
            except Exception as exc:  # the re-drives stand; paused playbooks wait for a person
                log.warning("re-driven, but the playbooks were not told: %s", exc)
                result["told"] = f"not told: {exc}"[:300]
        return result

    return _run_once(REDRIVE, fire_time, work)


def _on_loop(ctx: JobContext, coro: Any) -> Any:
    """`coro` run on the scheduler's loop; None when it stopped or took too long."""
    assert ctx.loop is not None
    future = asyncio.run_coroutine_threadsafe(coro, ctx.loop)
    deadline = time.monotonic() + ctx.sync_timeout
    while not future.done():
        # the loop may stop with the process: do not hold its exit for the timeout
        if ctx.stopped.is_set() or time.monotonic() > deadline:
            future.cancel()
            return None
        with contextlib.suppress(concurrent.futures.TimeoutError):
            future.result(timeout=0.2)
    return future.result()


def _run_once(
    job_id: str,
    fire_time: datetime | None,
    work: Callable[[JobContext, datetime], dict[str, Any]],
) -> dict[str, Any] | None:
    """Claim the run key, then work; None when another run (or leader) has it."""
    ctx = current()
    key = runs.RunKey.of(job_id, fire_time or ctx.lease.clock())
    if not ctx.lease.held():
        log.info("%s not run: this process does not lead", key)
        return None
    if not runs.claim(ctx.store.engine, key, ctx.lease):
        log.info("%s not run: claimed already, or the lease moved on", key)
        return None
    log.info("%s claimed (epoch %s)", key, ctx.lease.epoch)
    try:
        result = work(ctx, key.fire_time)
    except Exception as exc:  # recorded on the run, then reported by the executor
        runs.finish(ctx.store.engine, key, ctx.lease, "failed", {"error": str(exc)[:500]})
        raise
    runs.finish(ctx.store.engine, key, ctx.lease, "done", result)
    log.info("%s done: %s", key, result)
    return result


def _plain(value: Any) -> dict[str, Any]:
    """A pull's result as JSON for the run row, whatever its shape."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if not isinstance(value, dict):
        value = {"result": value}
    plain = json.loads(json.dumps(value, default=str))
    assert isinstance(plain, dict)
    return plain
