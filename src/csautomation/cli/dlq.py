"""`csauto dlq`: the dead-letter store of failed actions, and their re-drive."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from csautomation import bootstrap
from csautomation.cli.common import DataDirOpt, DbOpt, err, open_store, out, plain, read_store
from csautomation.errors import CsAutomationError
from csautomation.settings import Settings

app = typer.Typer(help="The dead-letter store of failed actions.", no_args_is_help=True)


@app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="also re-driven and discarded")] = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Failed actions waiting to be re-driven or discarded."""
    from csautomation.store.deadletters import dead_letters

    rows = dead_letters(
        read_store(database_url, data_dir),
        None if all_ else "open",
    )
    table = Table(title="dead letters")
    for col in ("id", "status", "connector", "action", "workflow / step", "attempts", "error"):
        table.add_column(col)
    for r in rows:
        last = r.errors[-1] if r.errors else {}
        table.add_row(
            str(r.id),
            r.status,
            plain(r.connector),
            r.action,
            plain(f"{r.workflow_id} / {r.step_id}"),
            str(r.attempts),
            plain(f"{last.get('type', '')}: {last.get('message', '')}"[:80]),
        )
    out.print(table)
    out.print(f"{len(rows)} dead letter(s)")


@app.command("show")
def dlq_show(row_id: int, database_url: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """One dead letter, whole: payload, error chain, attempts, first and last failure."""
    from csautomation.store.deadletters import dead_letter

    row = dead_letter(read_store(database_url, data_dir), row_id)
    if row is None:
        raise CsAutomationError(f"no dead letter {row_id}")
    out.print_json(json.dumps(row.model_dump(mode="json")))


@app.command("discard")
def dlq_discard(row_id: int, database_url: DbOpt = None) -> None:
    """Give up on a failed action (it stays listed with --all)."""
    from csautomation.store.deadletters import resolve

    if not resolve(open_store(database_url), row_id, "discarded"):
        raise CsAutomationError(f"no open dead letter {row_id}")
    out.print(f"dead letter {row_id} discarded")


@app.command("retry")
def dlq_retry(
    row_id: Annotated[int | None, typer.Argument(help="a dead letter's id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every open dead letter")] = False,
    database_url: DbOpt = None,
) -> None:
    """Re-drive failed actions through the same idempotency key, so a vendor that did
    receive an earlier attempt keeps one record; a paused playbook is then resumed."""
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.activities.redrive import failed_again, redrive
    from csautomation.store.deadletters import dead_letters, record_dead_letter, resolve

    if (row_id is None) == (not all_):
        raise CsAutomationError("give a dead letter's id, or --all")
    settings = bootstrap.settings(database_url=database_url)
    model = bootstrap.load_configuration(settings).model
    store = bootstrap.open_store(settings)
    connectors = bootstrap.build_connectors(settings, store)
    acts = PlaybookActivities(store, model, connectors=connectors)
    escalations = bootstrap.build_escalations(settings, acts)
    rows = [r for r in dead_letters(store) if all_ or r.id == row_id]
    if not rows:
        raise CsAutomationError("no open dead letter to retry")
    done: list[tuple[str, str]] = []
    failed = 0
    for r in rows:
        assert r.id is not None
        try:
            receipt = redrive(acts, r.action, r.payload, escalations)
        except Exception as exc:  # a process edge: the entry stays open, with this failure
            failed += 1
            record_dead_letter(store, failed_again(r, exc))
            err.print(Text("still failing ", "red") + plain(f"{r.id}: {exc}"))
            continue
        resolve(store, r.id, "redriven", receipt)
        done.append((r.workflow_id, r.step_id))
        out.print(plain(f"re-driven {r.id}: {r.connector} record {receipt}"))
    if done:
        _tell_workflows(settings, done)
    out.print(f"{len(done)} re-driven, {failed} still failing")
    if failed:
        raise typer.Exit(1)


def _tell_workflows(settings: Settings, steps: list[tuple[str, str]]) -> None:
    """Signal `redriven` to each playbook still running; one paused on the step goes on."""
    from temporalio.service import RPCError

    async def main() -> None:
        client = await bootstrap.connect(settings)
        for workflow_id, step_id in steps:
            try:
                await client.get_workflow_handle(workflow_id).signal("redriven", step_id)
            except RPCError:  # closed, or gone with retention: nothing waits for it
                continue

    try:
        asyncio.run(main())
    except CsAutomationError as exc:
        told = plain(f" ({exc}); paused ones stay paused")
        err.print(Text("the playbooks were not told", "yellow") + told)
