"""`csauto scheduler`: run the scheduler, list its jobs, sweep a rule now."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from csautomation import bootstrap, logs
from csautomation.cli.common import (
    AddressOpt,
    DataDirOpt,
    DbOpt,
    MetricsPortOpt,
    err,
    out,
    probing,
    read_store,
    run,
)
from csautomation.errors import ServiceUnavailableError

app = typer.Typer(
    help="Scheduled rule sweeps, data pulls and completion sync (schedules.yaml).",
    no_args_is_help=True,
)

SchedulesOpt = Annotated[
    Path | None,
    typer.Option(
        "--schedules", envvar="CSAUTO_SCHEDULES_PATH", help="default: schedules.yaml, if present"
    ),
]


@app.command("run")
def scheduler_run(
    schedules: SchedulesOpt = None,
    address: AddressOpt = None,
    database_url: DbOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """The scheduler process: every scheduler process competes for one lease, and the one
    holding it runs the jobs. Ctrl-C stops it and hands the lease over."""
    from csautomation.pipeline import SqlCooldowns
    from csautomation.rules.runtime import RuleRuntime
    from csautomation.scheduling.scheduler import run_scheduler

    settings = bootstrap.settings(database_url=database_url, temporal_address=address)
    config = bootstrap.load_schedules(settings, schedules)
    configuration = bootstrap.load_configuration(settings)

    async def main() -> None:
        store = bootstrap.open_store(settings)
        client = connectors = redriver = None
        if config.completion_sync.enabled or config.redrive.enabled:  # the Temporal jobs
            try:
                # the re-drive only tells paused playbooks: it works while Temporal is away
                client = await bootstrap.connect(settings, lazy=not config.completion_sync.enabled)
            except ServiceUnavailableError as exc:
                raise ServiceUnavailableError(
                    f"{exc}. The scheduler needs Temporal for completion sync only; "
                    "`completion_sync: {enabled: false}` in schedules.yaml runs it without"
                ) from None
            connectors = bootstrap.build_connectors(settings, store)
        if config.redrive.enabled and connectors is not None:
            from csautomation.activities.playbook import PlaybookActivities
            from csautomation.activities.redrive import Redriver

            acts = PlaybookActivities(store, configuration.model, connectors=connectors)
            escalations = bootstrap.build_escalations(settings, acts)
            redriver = Redriver(
                acts, config.redrive, escalations, concurrency=config.redrive.concurrency
            )
        # rules checked against the playbooks at each reload, as in the pipeline
        live = bootstrap.live_configuration(settings, configuration)
        runtime = RuleRuntime(
            live.rule_paths, configuration.model, cooldowns=SqlCooldowns(store), source=live
        )
        out.print(
            f"scheduler on {bootstrap.masked(settings)}; `csauto scheduler jobs` lists its jobs"
        )
        try:
            await run_scheduler(
                store,
                runtime,
                config,
                connectors_path=settings.connectors_path,
                client=client,
                connectors=connectors,
                redriver=redriver,
            )
        finally:
            runtime.close()

    async def probed() -> None:
        with probing(settings, metrics_port):
            await main()

    logs.setup(logging.INFO)
    run(probed)


@app.command("jobs")
def jobs(
    schedules: SchedulesOpt = None, database_url: DbOpt = None, data_dir: DataDirOpt = None
) -> None:
    """The jobs with their next run times, their last runs, and the current leader."""
    from csautomation.rules.loader import load_rules
    from csautomation.scheduling import runs
    from csautomation.scheduling.jobs import plan_jobs
    from csautomation.scheduling.leader import current_lease
    from csautomation.scheduling.scheduler import scheduled_jobs

    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    config = bootstrap.load_schedules(settings, schedules)
    ruleset = load_rules([settings.rules_path])
    store = read_store(database_url, data_dir)  # the scheduler's tables are in its schema
    planned = {
        s.id: s
        for s in plan_jobs(config, ruleset, config.completion_sync.enabled, config.redrive.enabled)
    }
    stored = {j.id: j for j in scheduled_jobs(store.engine)}
    last = runs.last_runs(store.engine)
    table = Table()
    for column in ("job", "schedule", "next run (UTC)", "last run", "status"):
        table.add_column(column)
    for job_id in sorted(planned.keys() | stored.keys()):
        spec, job, run = planned.get(job_id), stored.get(job_id), last.get(job_id)
        schedule = spec.describe if spec else str(job.trigger) if job else ""
        if job is None:
            when = "not stored yet"
        elif job.next_run_time is None:
            when = "paused"
        else:
            when = _utc(job.next_run_time)
        if spec is None:
            schedule += " (no longer configured: removed when a scheduler leads)"
        table.add_row(
            job_id,
            schedule,
            when,
            _utc(run.fire_time) if run else "",
            run.status if run else "",
        )
    out.print(table)
    lease = current_lease(store.engine)
    if lease is not None and lease.live(datetime.now(UTC)):
        out.print(
            f"leader: {lease.holder} (epoch {lease.epoch}), lease until {_utc(lease.expires_at)}",
            markup=False,
            soft_wrap=True,
        )
    else:
        out.print("leader: none (no scheduler process holds the lease)")


@app.command("sweep")
def sweep_now(
    rule_id: str,
    at: Annotated[
        str | None,
        typer.Option("--at", help="ISO date or time (UTC unless it says), default now"),
    ] = None,
    database_url: DbOpt = None,
) -> None:
    """Sweep one scheduled rule over every account now (or as of --at): its firings go
    to the dispatch outbox, as a scheduled sweep's do."""
    from csautomation.rules.runtime import RuleRuntime
    from csautomation.scheduling.sweep import sweep
    from csautomation.scheduling.sweep_facts import SweepFacts

    when = _parse_at(at)
    settings = bootstrap.settings(database_url=database_url)
    model = bootstrap.load_configuration(settings).model
    store = bootstrap.open_store(settings)
    runtime = RuleRuntime([settings.rules_path], model)
    try:
        # histories read as columns: faster than Signal objects, even read once
        result = sweep(store, runtime, [rule_id], when, kept=SweepFacts(store, model))
    finally:
        runtime.close()
    out.print(
        f"{rule_id} at {_utc(result.at)}: {result.accounts} accounts evaluated, "
        f"{result.fired} fired, {result.suppressed} suppressed by cooldown"
        + (
            f"; {result.unreadable} account(s) left out: their facts cannot be computed "
            "(the log says why)"
            if result.unreadable
            else ""
        ),
        markup=False,
        soft_wrap=True,
    )


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"--at: expected an ISO date or time such as 2026-11-01T06:00, found {value!r}")
        raise typer.Exit(2) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
