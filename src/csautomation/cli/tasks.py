"""`csauto tasks` (the built-in local CRM) and `csauto runs` (the index of workflow runs)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from csautomation import bootstrap
from csautomation.cli.common import AddressOpt, DataDirOpt, DbOpt, err, out, plain, read_store, run
from csautomation.errors import CsAutomationError

app = typer.Typer(help="Tasks of the built-in local CRM.", no_args_is_help=True)
runs_app = typer.Typer(help="The index of playbook and escalation runs.", no_args_is_help=True)


@app.command("list")
def tasks_list(
    assignee: Annotated[str | None, typer.Option("--assignee")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open, done or all")] = "open",
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Tasks in the local CRM, soonest due first, with the playbook step that created each."""
    from csautomation.store.tasks import work_items

    table = Table()
    for c in ("id", "assignee", "account", "subject", "due", "playbook", "status"):
        table.add_column(c, overflow="fold")  # ids and names whole, never cut short
    store = read_store(database_url, data_dir)
    for t in work_items(store, None if assignee is None else [assignee], _status(status)):
        due = t.due_at.date().isoformat() if t.due_at else ""
        origin = f"{t.playbook or '?'} · {t.step_id}"
        table.add_row(
            str(t.id),
            plain(t.assignee),
            plain(t.account_id),
            plain(t.subject),
            due,
            plain(origin),
            t.status,
        )
    out.print(table)


@app.command("show")
def tasks_show(
    task_id: int,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """One task of the local CRM: its description, due date, account and the playbook
    step that created it."""
    from csautomation.store.tasks import work_item

    t = work_item(read_store(database_url, data_dir), task_id)
    if t is None:
        err.print(f"no task {task_id} in the local CRM")
        raise typer.Exit(1)
    fields = [
        ("task", str(t.id)),
        ("subject", t.subject),
        ("status", t.status),
        ("assignee", t.assignee),
        ("account", f"{t.account_name} ({t.account_id})"),
        ("due", t.due_at.isoformat() if t.due_at else "none"),
        ("priority", t.priority),
        ("playbook", t.playbook or "unknown run"),
        ("step", t.step_id),
        ("rule", t.rule_id or "-"),
        ("workflow", t.workflow_id),
        ("created", t.created_at.isoformat()),
    ]
    for name, value in fields:
        out.print(plain(f"{name + ':':<10} {value}"))
    out.print("description:")
    out.print(plain(t.description or "(none)"))


@app.command("complete")
def tasks_complete(
    task_id: int,
    by: Annotated[
        str | None,
        typer.Option("--by", help="person id (people.yaml) of whoever completed it"),
    ] = None,
    address: AddressOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Mark a local task done and tell its playbook (completion sync). The ledger and the
    timeline credit the person named by --by (an escalation's task: its acknowledgement);
    without it, the task's assignee, named as the actor."""
    from csautomation.ingest.completions import complete_task
    from csautomation.store.tasks import work_item

    settings = bootstrap.settings(database_url=database_url, temporal_address=address)
    if by is not None:
        _check_person(settings, by)

    async def main() -> Any:
        client = await bootstrap.connect(settings)
        store = bootstrap.open_store(settings)
        actor = by
        if actor is None:  # credit someone by name: the ledger never records no actor
            found = work_item(store, task_id)
            actor = found.assignee if found is not None else ""
        return await complete_task(client, store, task_id, actor), actor

    row, actor = run(main)
    if row is None:
        err.print(f"no task {task_id} in the local CRM")
        raise typer.Exit(1)
    credited = f", credited to {actor}" if actor else ""
    out.print(plain(f"task {task_id} done{credited}; signalled {row.workflow_id}"))


def _check_person(settings: Any, person: str) -> None:
    from csautomation.references import did_you_mean

    known = bootstrap.known_names(settings).people
    if known is not None and person not in known:
        raise CsAutomationError(
            f"--by {person}: no such person in {settings.people_path}{did_you_mean(person, known)}"
        )


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option("--status")] = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Workflows started from rule firings, with their status and outcome."""
    from csautomation.store.outbox import runs

    table = Table()
    for c in ("workflow id", "queue", "status", "outcome", "started"):
        table.add_column(c)
    for r in runs(read_store(database_url, data_dir), status):
        table.add_row(
            plain(r.workflow_id),
            plain(r.task_queue),
            r.status,
            plain(r.outcome),
            r.started_at.isoformat(),
        )
    out.print(table)


def _status(status: str | None) -> str | None:
    return None if status in (None, "", "all") else status
