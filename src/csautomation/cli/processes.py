"""The `csauto` commands that run long-lived processes: demo, dev, worker, pipeline, serve.

Each builds its parts through `csautomation.bootstrap` from one Settings (CSAUTO_*
variables, then options) and runs until it is done or stopped (SIGTERM: exit 0).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from csautomation import bootstrap, logs
from csautomation.cli.common import (
    AddressOpt,
    DataDirOpt,
    DbOpt,
    MetricsPortOpt,
    err,
    out,
    probing,
    run,
)

if TYPE_CHECKING:
    from csautomation.bootstrap import Configuration
    from csautomation.runtime.server import DevServer
    from csautomation.scheduling.config import Schedules
    from csautomation.settings import Settings
    from csautomation.store.repo import Store

QueuesOpt = Annotated[
    str, typer.Option("--queues", help="comma-separated priorities: critical,high,normal,low")
]


def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="wiped and rebuilt each run")] = Path(
        ".csauto/demo"
    ),
    day_seconds: Annotated[
        float, typer.Option("--day-seconds", help="how long one playbook day lasts")
    ] = 1.0,
    complete_share: Annotated[
        float, typer.Option("--complete-share", help="share of tasks the CSMs complete")
    ] = 0.6,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="keep the review page, My work, the Temporal UI and POST /v1/signals (demo token: "
            "demo-source-token) up after the summary",
        ),
    ] = False,
    accounts: Annotated[
        int, typer.Option("--accounts", help="sample size (500: the shared sample data set)")
    ] = 500,
    port: Annotated[
        int, typer.Option("--port", help="the review page's port on 127.0.0.1 (0: any free)")
    ] = 8000,
) -> None:
    """The main job: sample signals through the shipped rules into Temporal playbooks and
    local CRM tasks, on the bundled dev server, ending with a summary."""
    from csautomation.runtime.demo import DemoOptions, print_summary, run_demo

    if not 0 < day_seconds <= 86400 or not 0 <= complete_share <= 1 or accounts < 1:
        err.print(
            "--day-seconds must be in (0, 86400], --complete-share in [0, 1], --accounts >= 1"
        )
        raise typer.Exit(2)
    settings = bootstrap.settings()
    config = bootstrap.load_configuration(settings)
    out.rule("csautomation demo")
    out.print(
        f"{len(config.ruleset.enabled)} rules and {len(config.playbooks)} playbooks validated; "
        f"one playbook day lasts {day_seconds:g} s"
    )
    opts = DemoOptions(
        data_dir=data_dir,
        sample_dir=(
            settings.data_dir / "sample" if accounts == 500 else data_dir / f"sample-{accounts}"
        ),
        accounts=accounts,
        rule_paths=[settings.rules_path],
        playbooks=dict(config.playbooks),
        model=config.model,
        day_seconds=day_seconds,
        complete_share=complete_share,
        serve=serve,
        matrix_path=settings.escalation_matrix_path,
        people_path=settings.people_path,
        review_port=port,
        temporal_log_level=settings.temporal_log_level,
    )
    logs.setup(logging.WARNING, "%(levelname)s %(message)s")
    result = run(lambda: run_demo(opts, out))
    if not serve:  # a serving demo printed its summary before it began to serve
        out.rule("summary")
        print_summary(result, out, data_dir)


def worker(
    queues: QueuesOpt = "critical,high,normal,low",
    address: AddressOpt = None,
    database_url: DbOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """A Temporal worker for the given priority queues (more urgent queues served first)."""
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.pipeline import queue_names
    from csautomation.runtime.worker import WorkerConfig, build_workers

    settings = bootstrap.settings(database_url=database_url, temporal_address=address)
    model = bootstrap.load_configuration(settings).model
    names = queue_names([q.strip() for q in queues.split(",") if q.strip()])

    async def main() -> None:
        with probing(settings, metrics_port):
            client = await bootstrap.connect(settings)
            store = bootstrap.open_store(settings)
            connectors = bootstrap.build_connectors(settings, store)
            actions = PlaybookActivities(store, model, connectors=connectors)
            workers = build_workers(
                client,
                actions,
                names,
                WorkerConfig(sandboxed=settings.workflow_sandbox),
                bootstrap.build_escalations(settings, actions, settings.review_url).all(),
            )
            out.print(f"worker on {settings.temporal_address}: {', '.join(names)}")
            await asyncio.gather(*(w.run() for w in workers))

    logs.setup(logging.INFO)
    run(main)


def pipeline(
    address: AddressOpt = None,
    database_url: DbOpt = None,
    poll: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="seconds between looks for signals stored by other processes (an indexed query)",
        ),
    ] = 0.2,
    lease_seconds: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=600.0,
            help="how long a stopped pipeline's partitions wait before the others take "
            "them over (renewed every fifth of it)",
        ),
    ] = 10.0,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Evaluate stored signals and start the workflows their firings call for, until
    stopped. Run several on PostgreSQL: they share the accounts' partitions (on SQLite one
    holds them all and the others stand by)."""
    from csautomation.pipeline import Pipeline, SqlCooldowns
    from csautomation.rules.runtime import RuleRuntime
    from csautomation.store.partitions import Partitions

    settings = bootstrap.settings(database_url=database_url, temporal_address=address)
    config = bootstrap.load_configuration(settings)

    async def main() -> None:
        with probing(settings, metrics_port):
            client = await bootstrap.connect(settings)
            store = bootstrap.open_store(settings)
            cooldowns = SqlCooldowns(store)
            live = bootstrap.live_configuration(settings, config)
            runtime = RuleRuntime(live.rule_paths, config.model, cooldowns=cooldowns, source=live)
            out.print(f"pipeline: {bootstrap.masked(settings)} -> {settings.temporal_address}")
            lease = timedelta(seconds=lease_seconds)
            partitions = Partitions(store.engine, ttl=lease, renew_every=lease / 5)
            out.print(f"pipeline {partitions.member}: partitions leased for {lease_seconds:g} s")
            await Pipeline(store, runtime, live, client, partitions=partitions).run_forever(poll)

    logs.setup(logging.INFO)
    run(main)


def dev(
    data_dir: DataDirOpt = None,
    load_sample: Annotated[bool, typer.Option("--load-sample")] = False,
    port: Annotated[
        int | None,
        typer.Option(help="the review page's port on 127.0.0.1 (default: CSAUTO_DEV_PORT, 8000)"),
    ] = None,
) -> None:
    """Everything in one process: the bundled Temporal dev server (SQLite in the data
    folder), a worker for every queue, the signal pipeline, the scheduler (schedules.yaml:
    rule sweeps, completion sync, pulls) and the manager's review page with the signals
    API. Ctrl-C stops it."""
    from csautomation.runtime.server import start_dev_server, tracing_interceptors

    settings = bootstrap.settings(data_dir=data_dir)
    config = bootstrap.load_configuration(settings)
    schedules = bootstrap.load_schedules(settings)
    port = settings.dev_port if port is None else port

    async def main() -> None:
        store = bootstrap.open_store(settings)
        if load_sample:
            _load_sample(store, settings.data_dir / "sample")
        server = await start_dev_server(
            settings.data_dir,
            interceptors=tracing_interceptors(settings.otel),
            log_level=settings.temporal_log_level,
        )
        try:
            await _run_dev(settings, config, schedules, store, server, port)
        finally:
            await server.shutdown()

    logs.setup(logging.INFO)
    run(main)


def _load_sample(store: Store, sample_dir: Path) -> None:
    """The sample data set into the store, marked evaluated: history, not news."""
    from csautomation.runtime.demo import load_sample as read_sample
    from csautomation.store.outbox import mark_all_evaluated

    accounts, signals = read_sample(sample_dir)
    store.upsert_accounts(accounts)
    store.add_signals(signals)
    mark_all_evaluated(store)


async def _run_dev(
    settings: Settings,
    config: Configuration,
    schedules: Schedules,
    store: Store,
    server: DevServer,
    port: int,
) -> None:
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.activities.redrive import Redriver
    from csautomation.api.server import serve_async
    from csautomation.pipeline import Pipeline, SqlCooldowns
    from csautomation.rules.runtime import RuleRuntime
    from csautomation.runtime.worker import WorkerConfig, build_workers
    from csautomation.scheduling.scheduler import run_scheduler
    from csautomation.store.facts import FactsReader

    client = server.env.client
    facts = FactsReader(store, config.model)  # one derivation serves rules and playbooks
    connectors = bootstrap.build_connectors(settings, store)
    actions = PlaybookActivities(store, config.model, facts=facts, connectors=connectors)
    page = f"http://127.0.0.1:{port}"
    escalations = bootstrap.build_escalations(settings, actions, page)
    workers = build_workers(
        client,
        actions,
        config=WorkerConfig(sandboxed=settings.workflow_sandbox),
        extra=escalations.all(),
    )
    again = schedules.redrive
    redriver = (
        Redriver(actions, again, escalations, concurrency=again.concurrency)
        if again.enabled
        else None
    )
    # rules and playbooks follow their files; a new pair serves the next evaluation and
    # the next dispatch, running workflows keep the playbook they started with
    live = bootstrap.live_configuration(settings, config)
    rules = live.rule_paths
    runtime = RuleRuntime(rules, config.model, cooldowns=SqlCooldowns(store), source=live)
    # the scheduler's jobs run on its own thread: they get their own rule runtime
    sweeps = RuleRuntime(rules, config.model, cooldowns=SqlCooldowns(store), source=live)
    try:
        pipeline = Pipeline(store, runtime, live, client, facts=facts)
        app = bootstrap.build_review_app(
            settings,
            store,
            client,
            facts,
            on_stored=pipeline.wake.set,
            rules=lambda: live.served.ruleset,
        )
        out.print(f"Temporal {server.address}, UI {server.ui_url}; review page {page}")
        out.print(
            f"store {bootstrap.masked(settings)}; signals in: POST {page}/v1/signals "
            f"(sources.yaml; the API at {page}/docs) or `csauto signals add`"
        )
        await asyncio.gather(
            *(w.run() for w in workers),
            pipeline.run_forever(),
            run_scheduler(
                store,
                sweeps,
                schedules,
                connectors_path=settings.connectors_path,
                client=client,
                connectors=connectors,
                facts=facts,
                redriver=redriver,
            ),
            serve_async(app, "127.0.0.1", port),
        )
    finally:
        runtime.close()
        sweeps.close()


def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    address: AddressOpt = None,
    database_url: DbOpt = None,
) -> None:
    """The manager's review page, its HTTP API and the signal intake (POST /v1/signals,
    sources.yaml); sign-in from people.yaml; set CSAUTO_SESSION_SECRET so sessions survive
    a restart. A pipeline (`csauto pipeline`) evaluates what comes in."""
    from csautomation.api.server import serve_async

    settings = bootstrap.settings(database_url=database_url, temporal_address=address)

    async def main() -> None:
        # lazy: signals are taken in, and pages shown, while Temporal is down; actions on
        # escalations answer 503 until it is back (and /health/ready says so)
        client = await bootstrap.connect(settings, lazy=True)
        app = bootstrap.build_review_app(settings, bootstrap.open_store(settings), client)
        out.print(f"review page on http://{host}:{port}; signals in at /v1/signals, API at /docs")
        await serve_async(app, host, port)

    logs.setup(logging.INFO)
    run(main, fast_loop=True)
