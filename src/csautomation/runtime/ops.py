"""`csauto connectors` and `csauto dlq`: the connectors' configuration, credentials and
breakers, and the dead-letter store with its re-drive."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from csautomation.connectors.loader import build_connectors
from csautomation.errors import ConnectorError, CsAutomationError
from csautomation.runtime.commands import (
    DbOpt,
    _config,
    _escalations,
    _fail,
    _settings,
    _store,
    err,
    out,
)

connectors_app = typer.Typer(help="Vendor connectors (connectors/).", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter store of failed actions.", no_args_is_help=True)


def _configs(settings: Any) -> dict[str, Any]:
    from csautomation.connectors.loader import load_connectors

    try:
        return load_connectors([settings.connectors_path])
    except CsAutomationError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


@connectors_app.command("validate")
def validate() -> None:
    """Check every file in connectors/ (file:line:column errors, exit code 1)."""
    configs = _configs(_settings())
    enabled = sum(1 for c in configs.values() if c.enabled)
    out.print(f"{len(configs)} connector(s) valid, {enabled} enabled")


def _needs(config: Any) -> list[str]:
    """The environment variables a configuration names."""
    names: list[str] = []
    for part in (config, getattr(config, "auth", None)):
        if part is None:
            continue
        for field, value in part:
            if field.endswith("_env") and isinstance(value, str):
                names.append(value)
    return names


@connectors_app.command("check")
def check() -> None:
    """Verify each connector's configuration and credentials against the live service with
    one authenticated call; a verdict per connector, exit code 1 if any enabled one fails."""
    from csautomation.connectors.loader import vendor

    settings = _settings()
    configs = _configs(settings)
    table = Table(title="connectors check")
    for col in ("connector", "type", "verdict"):
        table.add_column(col)
    failed = 0
    for config in configs.values():
        missing = [n for n in _needs(config) if not os.environ.get(n)]
        if config.type == "local":
            verdict = "[green]ok[/green]: built-in, kept in the csautomation store"
        elif not config.enabled:
            need = f"; needs {', '.join(missing)}" if missing else ""
            verdict = f"[dim]disabled[/dim] (enabled: true in its file{need})"
        else:
            connector = vendor(config, os.environ, True)
            try:
                said = connector.check()
                verdict = f"[green]ok[/green]: {said}"
            except ConnectorError as exc:
                failed += 1
                verdict = f"[red]FAILED[/red]: {exc}"
            finally:
                connector.close()
        table.add_row(config.id, config.type, verdict)
    out.print(table)
    if failed:
        raise typer.Exit(1)


@connectors_app.command("status")
def status(database_url: DbOpt = None) -> None:
    """Each connector's breaker, as its workers last reported it, and its dead letters."""
    from csautomation.store.deadletters import breaker_states, dead_letters

    settings = _settings(db=database_url)
    configs = _configs(settings)
    store = _store(settings)
    states = breaker_states(store)
    open_dl: dict[str, int] = {}
    for dl in dead_letters(store):
        open_dl[dl.connector] = open_dl.get(dl.connector, 0) + 1
    table = Table(title="connectors status")
    for col in ("connector", "type", "enabled", "breaker", "failures", "dead letters", "last"):
        table.add_column(col)
    for config in configs.values():
        st = states.get(config.id)
        breaker = st.state if st else "closed"
        colour = {"closed": "green", "open": "red", "half_open": "yellow"}.get(breaker, "white")
        table.add_row(
            config.id,
            config.type,
            "yes" if config.enabled else "no",
            f"[{colour}]{breaker}[/{colour}]" + ("" if st else " (no calls yet)"),
            str(st.failures if st else 0),
            str(open_dl.get(config.id, 0)),
            (st.last_error[:60] if st and st.last_error else ""),
        )
    out.print(table)


@connectors_app.command("sync")
def sync(database_url: DbOpt = None) -> None:
    """One completion-sync pass: tasks completed at the vendors move their playbooks on
    (`csauto dev` runs one a minute)."""
    from csautomation.ingest.completions import sync_completions
    from csautomation.runtime.server import connect

    settings = _settings(db=database_url)
    store = _store(settings)
    connectors = build_connectors(_configs(settings), store)

    async def main() -> int:
        client = await connect(settings.temporal_address, settings.temporal_namespace)
        return await sync_completions(client, store, connectors)

    try:
        told = asyncio.run(main())
    except CsAutomationError as exc:
        _fail(exc)
        return
    out.print(f"{told} playbook(s) told of completed tasks")


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="also re-driven and discarded")] = False,
    database_url: DbOpt = None,
) -> None:
    """Failed actions waiting to be re-driven or discarded."""
    from csautomation.store.deadletters import dead_letters

    rows = dead_letters(_store(_settings(db=database_url)), None if all_ else "open")
    table = Table(title="dead letters")
    for col in ("id", "status", "connector", "action", "workflow / step", "attempts", "error"):
        table.add_column(col)
    for r in rows:
        last = r.errors[-1] if r.errors else {}
        table.add_row(
            str(r.id),
            r.status,
            r.connector,
            r.action,
            f"{r.workflow_id} / {r.step_id}",
            str(r.attempts),
            f"{last.get('type', '')}: {last.get('message', '')}"[:80],
        )
    out.print(table)
    out.print(f"{len(rows)} dead letter(s)")


@dlq_app.command("show")
def dlq_show(row_id: int, database_url: DbOpt = None) -> None:
    """One dead letter, whole: payload, error chain, attempts, first and last failure."""
    from csautomation.store.deadletters import dead_letter

    row = dead_letter(_store(_settings(db=database_url)), row_id)
    if row is None:
        _fail(CsAutomationError(f"no dead letter {row_id}"))
        return
    out.print_json(json.dumps(row.model_dump(mode="json")))


@dlq_app.command("discard")
def dlq_discard(row_id: int, database_url: DbOpt = None) -> None:
    """Give up on a failed action (it stays listed with --all)."""
    from csautomation.store.deadletters import resolve

    if not resolve(_store(_settings(db=database_url)), row_id, "discarded"):
        _fail(CsAutomationError(f"no open dead letter {row_id}"))
    out.print(f"dead letter {row_id} discarded")


@dlq_app.command("retry")
def dlq_retry(
    row_id: Annotated[int | None, typer.Argument(help="a dead letter's id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every open dead letter")] = False,
    database_url: DbOpt = None,
) -> None:
    """Re-drive failed actions through the same idempotency key, so a vendor that did
    receive an earlier attempt keeps one record; a paused playbook is then resumed."""
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.store.deadletters import dead_letters, record_dead_letter, resolve

    if (row_id is None) == (not all_):
        _fail(CsAutomationError("give a dead letter's id, or --all"))
    settings = _settings(db=database_url)
    model, _, _ = _config(settings)
    store = _store(settings)
    connectors = build_connectors(_configs(settings), store)
    acts = PlaybookActivities(store, model, connectors=connectors)
    escalations = _escalations(settings, acts)
    rows = [r for r in dead_letters(store) if all_ or r.id == row_id]
    if not rows:
        _fail(CsAutomationError("no open dead letter to retry"))
    done: list[tuple[str, str]] = []
    failed = 0
    for r in rows:
        assert r.id is not None
        try:
            receipt = redrive(acts, r.action, r.payload, escalations)
        except Exception as exc:  # a process edge: the entry stays open, with this failure
            failed += 1
            record_dead_letter(store, _again(r, exc))
            err.print(f"[red]still failing[/red] {r.id}: {exc}")
            continue
        resolve(store, r.id, "redriven", receipt)
        done.append((r.workflow_id, r.step_id))
        out.print(f"re-driven {r.id}: {r.connector} record {receipt}")
    if done:
        _tell_workflows(settings, done)
    out.print(f"{len(done)} re-driven, {failed} still failing")
    if failed:
        raise typer.Exit(1)


def redrive(acts: Any, action: str, payload: dict[str, Any], escalations: Any = None) -> str:
    """Run a dead-lettered action again with its recorded input; the vendor's record id.
    `escalations` (EscalationActivities) serves the escalation workflow's notices."""
    from csautomation.workflows.types import (
        EscalationNotice,
        NotifyInput,
        TaskInput,
        UpdateInput,
    )

    kinds: dict[str, tuple[Any, Any]] = {
        "create_task": (acts, TaskInput),
        "notify": (acts, NotifyInput),
        "update_account": (acts, UpdateInput),
        "notify_escalation": (escalations, EscalationNotice),
    }
    target, model = kinds.get(action, (None, None))
    if target is None:
        raise CsAutomationError(f"cannot re-drive action '{action}'")
    result = getattr(target, action)(model.model_validate(payload))
    return str(result.record_id)


def _again(row: Any, exc: Exception) -> Any:
    from csautomation.store.deadletters import DeadLetter

    return DeadLetter(
        idempotency_key=row.idempotency_key,
        workflow_id=row.workflow_id,
        step_id=row.step_id,
        action=row.action,
        connector=row.connector,
        account_id=row.account_id,
        payload=row.payload,
        errors=[
            *row.errors,
            {"type": type(exc).__name__, "message": str(exc), "retryable": True, "details": {}},
        ],
        attempts=row.attempts + 1,
        first_failure=row.first_failure,
        last_failure=datetime.now(UTC),
    )


def _tell_workflows(settings: Any, steps: list[tuple[str, str]]) -> None:
    """Signal `redriven` to each playbook still running; one paused on the step goes on."""
    from temporalio.service import RPCError

    from csautomation.runtime.server import connect

    async def main() -> None:
        client = await connect(settings.temporal_address, settings.temporal_namespace)
        for workflow_id, step_id in steps:
            try:
                await client.get_workflow_handle(workflow_id).signal("redriven", step_id)
            except RPCError:  # closed, or gone with retention: nothing waits for it
                continue

    try:
        asyncio.run(main())
    except CsAutomationError as exc:
        err.print(f"[yellow]the playbooks were not told[/yellow] ({exc}); paused ones stay paused")


def register(app: typer.Typer) -> None:
    app.add_typer(connectors_app, name="connectors")
    app.add_typer(dlq_app, name="dlq")
