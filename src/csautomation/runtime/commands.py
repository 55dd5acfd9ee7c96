"""The `csauto` commands that run processes: demo, dev, worker, pipeline, tasks, signals.

Every command builds its settings once (CSAUTO_* environment variables, then options) and
turns configuration problems into a clear message and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from csautomation import logs
from csautomation.errors import ConfigFileError, CsAutomationError
from csautomation.settings import Settings

log = logging.getLogger(__name__)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
T = TypeVar("T")

tasks_app = typer.Typer(help="Tasks of the built-in local CRM.", no_args_is_help=True)
signals_app = typer.Typer(help="Store signals for evaluation.", no_args_is_help=True)
runs_app = typer.Typer(help="The index of playbook and escalation runs.", no_args_is_help=True)

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="default: CSAUTO_DATA_DIR")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="default: CSAUTO_DATABASE_URL")]
AddressOpt = Annotated[
    str | None, typer.Option("--temporal-address", help="default: CSAUTO_TEMPORAL_ADDRESS")
]
QueuesOpt = Annotated[
    str, typer.Option("--queues", help="comma-separated priorities: critical,high,normal,low")
]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        help="serve /metrics and /health/live on this port (default: CSAUTO_METRICS_PORT; "
        "none). Keep it private",
    ),
]


def _fail(exc: Exception) -> None:
    if isinstance(exc, ConfigFileError):
        for p in exc.problems:
            err.print(f"[red]error[/red] {p}", soft_wrap=True)
        err.print(f"{len(exc.problems)} problem(s) found")
    else:
        err.print(f"[red]error[/red] {exc}", soft_wrap=True)
    raise typer.Exit(1)


class _Terminated(Exception):
    """SIGTERM asked the process to stop: a requested stop, which ends with exit code 0."""


async def _stoppable(factory: Callable[[], Awaitable[T]]) -> T:
    """SIGTERM cancels the main task, so servers and workers shut down as on Ctrl-C."""
    task = asyncio.current_task()
    assert task is not None
    terminated: list[bool] = []

    def terminate() -> None:
        terminated.append(True)
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await factory()
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise


def _run(factory: Callable[[], Awaitable[T]], fast_loop: bool = False) -> T:
    """Run a coroutine to completion; Ctrl-C ends it quietly, our errors end it clearly.
    `fast_loop`: on uvloop where it is installed (the HTTP server: about 1.5x the requests
    a second of asyncio's own loop in bench/ingest.py)."""
    # A long-running process keeps caches of many small objects (each account's signal
    # history, its facts) that the cyclic garbage collector would otherwise traverse again
    # and again: fewer young-generation passes took the pipeline from about 1,000 to 1,700
    # signals evaluated a second (measured on 1,000 accounts of 60-day histories). Objects
    # freed by reference counting (nearly all) are freed at once all the same.
    # Set back when the command ends: a command run inside another process (a test's
    # CliRunner) must not change that process's collector.
    before = gc.get_threshold()
    gc.set_threshold(10_000, 10, 10)
    loop_factory = None
    if fast_loop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_stoppable(factory))
    except _Terminated:
        err.print("stopped")
        raise typer.Exit(0) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("stopped")
        raise typer.Exit(130) from None
    except (CsAutomationError, ValueError) as exc:
        _fail(exc)
        raise  # unreachable: _fail exits
    finally:
        gc.set_threshold(*before)


def _settings(
    data_dir: Path | None = None, db: str | None = None, address: str | None = None
) -> Settings:
    given: dict[str, Any] = {}
    if data_dir is not None:
        given["data_dir"] = data_dir
    if db is not None:
        given["database_url"] = db
    if address is not None:
        given["temporal_address"] = address
    return Settings(**given)  # options win over CSAUTO_* variables


@contextlib.contextmanager
def _probing(settings: Settings, port: int | None) -> Iterator[Any]:
    """This process's /metrics and /health/live while the block runs, when a port is
    given (`--metrics-port`, else CSAUTO_METRICS_PORT); yields the server, or None."""
    port = settings.metrics_port if port is None else port
    if port is None:
        yield None
        return
    from csautomation.runtime.probe import ProbeServer

    with ProbeServer(settings.metrics_host, port) as probe:
        out.print(f"metrics and liveness on {probe.url}/metrics, /health/live")
        yield probe


async def _connect(settings: Settings, lazy: bool = False) -> Any:
    """The Temporal client of settings, traced when CSAUTO_OTEL is on."""
    from csautomation.runtime.server import connect, tracing_interceptors

    return await connect(
        settings.temporal_address,
        settings.temporal_namespace,
        lazy=lazy,
        interceptors=tracing_interceptors(settings.otel),
    )


def _config(settings: Settings) -> tuple[Any, dict[str, Any], Any]:
    from csautomation.facts.health import load_health_model
    from csautomation.playbooks.loader import load_playbooks
    from csautomation.rules.loader import load_rules

    path = settings.health_model_path
    if path is None and Path("health_model.yaml").exists():
        path = Path("health_model.yaml")
    try:
        model = load_health_model(path)
        playbooks = load_playbooks([settings.playbooks_path])
        ruleset = load_rules([settings.rules_path])
    except CsAutomationError as exc:
        _fail(exc)
    from csautomation.rules.spec import StartPlaybook

    wanted = {
        a.start_playbook
        for r in ruleset.rules
        for a in r.rule.actions
        if isinstance(a, StartPlaybook)
    }
    missing = sorted(wanted - set(playbooks))
    if missing:
        err.print(f"[red]error[/red] rules start playbooks that do not exist: {', '.join(missing)}")
        raise typer.Exit(1)
    return model, playbooks, ruleset


def _store(settings: Settings) -> Any:
    from csautomation.store.repo import Store

    store = Store(settings.database_url)
    try:
        store.create_all()  # migrates, or refuses a schema newer than this code
    except CsAutomationError as exc:
        _fail(exc)
    return store


def _connectors(settings: Settings, store: Any) -> Any:
    """The configured connectors (connectors/), each breaker reporting to the store."""
    from csautomation.connectors.loader import build_connectors, load_connectors
    from csautomation.connectors.resilience import BreakerState
    from csautomation.store.deadletters import save_breaker

    try:
        configs = load_connectors([settings.connectors_path])
    except CsAutomationError as exc:
        _fail(exc)

    def report(state: BreakerState) -> None:
        save_breaker(store, state.connector, state.state, state.failures, state.last_error)

    return build_connectors(configs, store, on_change=report)


def _escalations(settings: Settings, actions: Any, page_url: str = "") -> Any:
    """The escalation workflow's activities over escalation_matrix.yaml and people.yaml."""
    from csautomation.activities.escalation import EscalationActivities
    from csautomation.escalation.matrix import load_escalation_config

    try:
        matrix, people = load_escalation_config(
            settings.escalation_matrix_path, settings.people_path
        )
    except CsAutomationError as exc:
        _fail(exc)
    return EscalationActivities(actions, matrix, people, page_url=page_url)


def _review_app(
    settings: Settings,
    store: Any,
    client: Any,
    facts: Any = None,
    on_stored: Callable[[], None] | None = None,
) -> Any:
    """The manager's review page, its API and the signal intake (sources.yaml) over the
    store and the escalation workflows."""
    from csautomation.api.actions import TemporalActions
    from csautomation.api.app import create_app
    from csautomation.escalation.people import load_people
    from csautomation.ingest.sources import load_sources

    try:
        people = load_people(settings.people_path)
        sources = load_sources(settings.sources_path)
    except CsAutomationError as exc:
        _fail(exc)
    for name, variable in sources.missing_secrets().items():
        log.warning("source %s refuses every signal until %s is set", name, variable)
    return create_app(
        store,
        people,
        TemporalActions(client),
        facts=facts,
        sources=sources,
        on_stored=on_stored,
        temporal=client,
    )


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
        typer.Option("--serve", help="keep the review page and Temporal UI up after the summary"),
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
    settings = _settings()
    model, playbooks, ruleset = _config(settings)
    out.rule("csautomation demo")
    out.print(
        f"{len(ruleset.enabled)} rules and {len(playbooks)} playbooks validated; "
        f"one playbook day lasts {day_seconds:g} s"
    )
    opts = DemoOptions(
        data_dir=data_dir,
        sample_dir=(
            settings.data_dir / "sample" if accounts == 500 else data_dir / f"sample-{accounts}"
        ),
        accounts=accounts,
        rule_paths=[settings.rules_path],
        playbooks=playbooks,
        model=model,
        day_seconds=day_seconds,
        complete_share=complete_share,
        serve=serve,
        matrix_path=settings.escalation_matrix_path,
        people_path=settings.people_path,
        review_port=port,
    )
    logs.setup(logging.WARNING, "%(levelname)s %(message)s")
    result = _run(lambda: run_demo(opts, out))
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

    settings = _settings(db=database_url, address=address)
    model, _, _ = _config(settings)
    names = queue_names([q.strip() for q in queues.split(",") if q.strip()])

    async def main() -> None:
        with _probing(settings, metrics_port):
            client = await _connect(settings)
            store = _store(settings)
            actions = PlaybookActivities(store, model, connectors=_connectors(settings, store))
            workers = build_workers(
                client,
                actions,
                names,
                WorkerConfig(sandboxed=settings.workflow_sandbox),
                _escalations(settings, actions, settings.review_url).all(),
            )
            out.print(f"worker on {settings.temporal_address}: {', '.join(names)}")
            await asyncio.gather(*(w.run() for w in workers))

    logs.setup(logging.INFO)
    _run(main)


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
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Evaluate stored signals and start the workflows their firings call for, until stopped."""
    from csautomation.pipeline import Pipeline, SqlCooldowns
    from csautomation.rules.runtime import RuleRuntime

    settings = _settings(db=database_url, address=address)
    model, playbooks, _ = _config(settings)

    async def main() -> None:
        with _probing(settings, metrics_port):
            client = await _connect(settings)
            store = _store(settings)
            runtime = RuleRuntime([settings.rules_path], model, cooldowns=SqlCooldowns(store))
            out.print(f"pipeline: {_masked(settings.database_url)} -> {settings.temporal_address}")
            await Pipeline(store, runtime, playbooks, client).run_forever(poll)

    logs.setup(logging.INFO)
    _run(main)


def dev(
    data_dir: DataDirOpt = None,
    load_sample: Annotated[bool, typer.Option("--load-sample")] = False,
    port: Annotated[int, typer.Option(help="the review page's port on 127.0.0.1")] = 8000,
) -> None:
    """Everything in one process: the bundled Temporal dev server (SQLite in the data
    folder), a worker for every queue, the signal pipeline, the scheduler (schedules.yaml:
    rule sweeps, completion sync, pulls) and the manager's review page with the signals
    API. Ctrl-C stops it."""
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.api.server import serve_async
    from csautomation.pipeline import Pipeline, SqlCooldowns
    from csautomation.rules.runtime import RuleRuntime
    from csautomation.runtime.server import start_dev_server, tracing_interceptors
    from csautomation.runtime.worker import WorkerConfig, build_workers
    from csautomation.scheduling.cli import _schedules
    from csautomation.scheduling.scheduler import run_scheduler
    from csautomation.store.facts import FactsReader
    from csautomation.store.outbox import mark_all_evaluated

    settings = _settings(data_dir=data_dir)
    model, playbooks, _ = _config(settings)
    schedules = _schedules(None)

    async def main() -> None:
        store = _store(settings)
        if load_sample:
            from csautomation.runtime.demo import load_sample as read_sample

            accounts, signals = read_sample(settings.data_dir / "sample")
            store.upsert_accounts(accounts)
            store.add_signals(signals)
            mark_all_evaluated(store)
        server = await start_dev_server(
            settings.data_dir, interceptors=tracing_interceptors(settings.otel)
        )
        runtime = RuleRuntime([settings.rules_path], model, cooldowns=SqlCooldowns(store))
        runtimes = [runtime]
        try:
            client = server.env.client
            facts = FactsReader(store, model)  # one derivation serves rules and playbooks
            connectors = _connectors(settings, store)
            actions = PlaybookActivities(store, model, facts=facts, connectors=connectors)
            page = f"http://127.0.0.1:{port}"
            workers = build_workers(
                client,
                actions,
                config=WorkerConfig(sandboxed=settings.workflow_sandbox),
                extra=_escalations(settings, actions, page).all(),
            )
            pipeline = Pipeline(store, runtime, playbooks, client, facts=facts)
            app = _review_app(settings, store, client, facts, on_stored=pipeline.wake.set)
            # the scheduler's jobs run on its own thread: they get their own rule runtime
            sweeps = RuleRuntime([settings.rules_path], model, cooldowns=SqlCooldowns(store))
            runtimes.append(sweeps)
            out.print(f"Temporal {server.address}, UI {server.ui_url}; review page {page}")
            out.print(
                f"store {_masked(settings.database_url)}; signals in: POST {page}/v1/signals "
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
                ),
                serve_async(app, "127.0.0.1", port),
            )
        finally:
            await server.env.shutdown()
            for r in runtimes:
                r.close()

    logs.setup(logging.INFO)
    _run(main)


@signals_app.command("add")
def signals_add(
    account: str,
    type_: Annotated[str, typer.Argument(metavar="TYPE")],
    payload: Annotated[str, typer.Option("--payload", help="JSON object")] = "{}",
    key: Annotated[str | None, typer.Option("--key", help="idempotency key")] = None,
    database_url: DbOpt = None,
) -> None:
    """Store one signal durably; a running pipeline evaluates it within a second."""
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from csautomation.facts.model import Signal

    try:
        body = json.loads(payload)
        fields: dict[str, Any] = {
            "type": type_,
            "account_id": account,
            "occurred_at": datetime.now(UTC),
            "payload": body,
        }
        if key:
            fields["idempotency_key"] = key
        signal = Signal.model_validate(fields)
    except json.JSONDecodeError as exc:
        err.print(f"--payload is not JSON: {exc.msg} (column {exc.colno})")
        raise typer.Exit(1) from None
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            err.print(f"{'.'.join(map(str, e['loc'])) or 'signal'}: {e['msg']}")
        raise typer.Exit(1) from None
    fresh = _store(_settings(db=database_url)).add_signal(signal)
    out.print(("stored " if fresh else "already stored ") + signal.idempotency_key)


def ingest(
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file of signals")],
    format_: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the suffix)")
    ] = None,
    show: Annotated[int, typer.Option("--show", help="rejected rows to list")] = 20,
    database_url: DbOpt = None,
) -> None:
    """Import signals from a file: each row validated and stored once (importing the same
    file again changes nothing); a report of rows accepted and rejected, with line numbers.
    Exit code 1 when a row was rejected."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from csautomation.ingest.batch import detect_format, import_file

    if not file.is_file():
        _fail(CsAutomationError(f"{file}: no such file"))
    try:
        fmt = detect_format(file, format_)
    except ValueError as exc:
        _fail(CsAutomationError(str(exc)))
    store = _store(_settings(db=database_url))
    with file.open("rb") as handle:
        lines = sum(1 for _ in handle)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as bar:
        task = bar.add_task(f"importing {file.name}", total=lines)
        report = import_file(
            store, file, fmt, progress=lambda line: bar.update(task, completed=line)
        )
    out.print(
        f"{report.file}: {report.rows} rows, {report.accepted} accepted "
        f"({report.stored} new, {report.duplicates} already stored), "
        f"{report.rejected_rows} rejected",
        soft_wrap=True,
        markup=False,
    )
    for problem in report.rejected[:show]:
        out.print(f"  {problem}", soft_wrap=True, markup=False)
    if len(report.rejected) > show:
        out.print(f"  ... and {len(report.rejected) - show} more (--show N)")
    if report.rejected:
        raise typer.Exit(1)


@tasks_app.command("list")
def tasks_list(
    assignee: Annotated[str | None, typer.Option("--assignee")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open or done")] = "open",
    database_url: DbOpt = None,
) -> None:
    """Tasks in the local CRM."""
    from csautomation.store.repo import local_tasks

    table = Table()
    for c in ("id", "assignee", "account", "subject", "due", "status"):
        table.add_column(c)
    for t in local_tasks(_store(_settings(db=database_url))):
        if t.kind != "task" or (assignee and t.assignee != assignee):
            continue
        if status and t.status != status:
            continue
        due = t.due_at.date().isoformat() if t.due_at else ""
        table.add_row(str(t.id), t.assignee, t.account_id, t.subject, due, t.status)
    out.print(table)


@tasks_app.command("complete")
def tasks_complete(task_id: int, address: AddressOpt = None, database_url: DbOpt = None) -> None:
    """Mark a local task done and tell its playbook (completion sync)."""
    from csautomation.runtime.tasks import complete_task

    settings = _settings(db=database_url, address=address)

    async def main() -> Any:
        client = await _connect(settings)
        return await complete_task(client, _store(settings), task_id)

    row = _run(main)
    if row is None:
        err.print(f"no task {task_id} in the local CRM")
        raise typer.Exit(1)
    out.print(f"task {task_id} done; signalled {row.workflow_id}")


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option("--status")] = None, database_url: DbOpt = None
) -> None:
    """Workflows started from rule firings, with their status and outcome."""
    from csautomation.store.outbox import runs

    table = Table()
    for c in ("workflow id", "queue", "status", "outcome", "started"):
        table.add_column(c)
    for r in runs(_store(_settings(db=database_url)), status):
        table.add_row(r.workflow_id, r.task_queue, r.status, r.outcome, r.started_at.isoformat())
    out.print(table)


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

    settings = _settings(db=database_url, address=address)

    async def main() -> None:
        # lazy: signals are taken in, and pages shown, while Temporal is down; actions on
        # escalations answer 503 until it is back (and /health/ready says so)
        client = await _connect(settings, lazy=True)
        app = _review_app(settings, _store(settings), client)
        out.print(f"review page on http://{host}:{port}; signals in at /v1/signals, API at /docs")
        await serve_async(app, host, port)

    logs.setup(logging.INFO)
    _run(main, fast_loop=True)


people_app = typer.Typer(help="The people directory (people.yaml).", no_args_is_help=True)


@people_app.command("hash-password")
def hash_password() -> None:
    """Prompt for a password and print its argon2 hash, for a sign_in: entry."""
    from csautomation.api.auth import hash_password_command

    hash_password_command()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("serve")(serve)
    app.command("ingest")(ingest)
    app.add_typer(people_app, name="people")
    app.command("dev")(dev)
    app.command("worker")(worker)
    app.command("pipeline")(pipeline)
    app.add_typer(tasks_app, name="tasks")
    app.add_typer(signals_app, name="signals")
    app.add_typer(runs_app, name="runs")


def _masked(url: str) -> str:
    """The database URL without its password (alembic is imported only when needed)."""
    from csautomation.store.migrate import masked

    return masked(url)
