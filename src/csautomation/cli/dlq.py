"""`csauto dlq`: the dead-letter store of failed actions, and their re-drive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from csautomation import bootstrap
from csautomation.cli.common import DataDirOpt, DbOpt, err, open_store, out, plain, read_store
from csautomation.errors import CsAutomationError
from csautomation.settings import Settings

if TYPE_CHECKING:
    from csautomation.store.tables import DeadLetterRow

app = typer.Typer(help="The dead-letter store of failed actions.", no_args_is_help=True)


@app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="also re-driven and discarded")] = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Failed actions: those the scheduler re-drives by itself (transient failures, with
    the time of the next try), those waiting for a person, and with --all the resolved."""
    from csautomation.store.deadletters import dead_letters

    rows = dead_letters(
        read_store(database_url, data_dir),
        None if all_ else "open",
    )
    table = Table(title="dead letters")
    for col in ("id", "state", "connector", "action", "workflow / step", "attempts", "error"):
        table.add_column(col)
    for r in rows:
        last = r.errors[-1] if r.errors else {}
        table.add_row(
            str(r.id),
            _state(r),
            plain(r.connector),
            r.action,
            plain(f"{r.workflow_id} / {r.step_id}"),
            str(r.attempts),
            plain(f"{last.get('type', '')}: {last.get('message', '')}"[:80]),
        )
    out.print(table)
    out.print(f"{len(rows)} dead letter(s)")


def _state(row: DeadLetterRow) -> str:
    """What happens to the entry next, in words."""
    if row.status != "open":
        return f"resolved ({row.status})"
    if row.next_redrive_at is not None:
        at = row.next_redrive_at.strftime("%Y-%m-%d %H:%M UTC")
        tried = f", {row.redrives} re-drive(s) so far" if row.redrives else ""
        return f"auto re-drive pending at {at}{tried}"
    return "waiting for a person"


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
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="re-drives at once")] = 4,
    patience: Annotated[
        float,
        typer.Option(min=0, help="seconds an entry may wait for an open breaker before it is left"),
    ] = 600.0,
    database_url: DbOpt = None,
) -> None:
    """Re-drive failed actions through the same idempotency key, so a vendor that did
    receive an earlier attempt keeps one record; a paused playbook is then resumed. The
    re-drives pace themselves by the connector's breaker and rate limit (an open breaker
    is waited for, not counted as a failure). Exits 1 only when some still fail."""
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.activities.redrive import Outcome, Redriver
    from csautomation.store.deadletters import dead_letters

    if (row_id is None) == (not all_):
        raise CsAutomationError("give a dead letter's id, or --all")
    settings = bootstrap.settings(database_url=database_url)
    model = bootstrap.load_configuration(settings).model
    policy = bootstrap.load_schedules(settings, None).redrive
    store = bootstrap.open_store(settings)
    rows = [r for r in dead_letters(store) if all_ or r.id == row_id]
    if not rows:
        if all_:
            out.print("no open dead letter to retry")
            return
        raise CsAutomationError(f"no open dead letter {row_id}")
    connectors = bootstrap.build_connectors(settings, store)
    acts = PlaybookActivities(store, model, connectors=connectors)
    redriver = Redriver(
        acts,
        policy,
        bootstrap.build_escalations(settings, acts),
        concurrency=concurrency,
        patience=patience,
        tries=3,
    )
    with _progress(len(rows)) as step:

        def told(o: Outcome) -> None:
            if o.status == "redriven":
                line = f"re-driven {o.row.id}: {o.row.connector} record {o.record_id}"
                step(plain(line))
            else:
                what = "still failing" if o.status == "failed" else "left waiting"
                message = o.error.get("message", "")
                step(Text(f"{what} ", "red") + plain(f"{o.row.id}: {message}"))

        try:
            outcomes = redriver.run(rows, told)
        finally:
            connectors.close()
    done = [(o.row.workflow_id, o.row.step_id) for o in outcomes if o.status == "redriven"]
    if done:
        _tell_workflows(settings, done)
    failed = len(outcomes) - len(done)
    out.print(f"{len(rows)} to retry: {len(done)} re-driven, {failed} still failing")
    if failed:
        raise typer.Exit(1)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Text], None]]:
    """A step function: a rich progress bar on a terminal, one plain line per entry
    otherwise (logs, CI)."""
    if not out.is_terminal:
        yield out.print
        return
    with Progress(console=out, transient=False) as progress:
        task = progress.add_task("re-driving", total=total)

        def step(line: Text) -> None:
            progress.console.print(line)
            progress.advance(task)

        yield step


def _tell_workflows(settings: Settings, steps: list[tuple[str, str]]) -> None:
    """Signal `redriven` to each playbook still running; one paused on the step goes on."""
    from csautomation.activities.redrive import tell_workflows

    async def main() -> None:
        await tell_workflows(await bootstrap.connect(settings), steps)

    try:
        asyncio.run(main())
    except CsAutomationError as exc:
        told = plain(f" ({exc}); paused ones stay paused")
        err.print(Text("the playbooks were not told", "yellow") + told)
