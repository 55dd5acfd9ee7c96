"""`csauto audit report`: one account's audit trail as a self-contained HTML page; and the
`csauto audit` group it belongs to, whose bare form lists the ledger as it always did.

    csauto audit --account ACME --since 30d            the ledger (cli/audit.py)
    csauto audit report --account ACME --since 90d --html acme.html [--temporal | --histories DIR]
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from typer.core import TyperGroup

from csautomation import bootstrap
from csautomation.cli import audit
from csautomation.cli.common import AddressOpt, DataDirOpt, DbOpt, err, out, plain, read_store, run
from csautomation.errors import CsAutomationError

app = typer.Typer(
    help="The decision ledger, and one account's audit report.",
    invoke_without_command=True,
    no_args_is_help=False,
    cls=TyperGroup,
)


def unless_subcommand(command: Callable[..., None]) -> Callable[..., None]:
    """`command` as a group's callback: the same options (Typer reads them from the
    signature), run only when no subcommand is named."""
    sig = inspect.signature(command, eval_str=True)
    first = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def callback(ctx: typer.Context, **kwargs: Any) -> None:
        if ctx.invoked_subcommand is None:
            command(**kwargs)

    hints = get_type_hints(command, include_extras=True)
    callback.__doc__ = command.__doc__
    callback.__annotations__ = {"ctx": typer.Context, **hints}
    params = [first.replace(annotation=typer.Context), *sig.parameters.values()]
    callback.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return callback


app.callback(invoke_without_command=True)(unless_subcommand(audit.audit))


HISTORY_HINT = (
    "waits and branch decisions come from the workflows' histories: add --temporal (while "
    "the Temporal server runs) or --histories DIR (files of `csauto history export`)"
)


@app.command("report")
def report(
    account: Annotated[str, typer.Option("--account", help="the account's id")],
    html: Annotated[Path, typer.Option("--html", help="the HTML file to write")],
    since: Annotated[str, typer.Option("--since", help="how far back, e.g. 90d")] = "90d",
    histories: Annotated[
        Path | None,
        typer.Option("--histories", help="a folder of history files (csauto history export)"),
    ] = None,
    temporal: Annotated[
        bool, typer.Option("--temporal", help="read the runs' histories from the Temporal server")
    ] = False,
    address: AddressOpt = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write one account's audit report as a single HTML page that needs no network: each
    rule firing with the rule version and the facts it read, the playbook version each run
    executed, each step, task and escalation with who acted and when, and the decision
    ledger's chain check."""
    from csautomation.audit.report import build_report, chain_verified, run_ids
    from csautomation.audit.report_html import render

    start = _since(since)
    settings = bootstrap.settings(
        data_dir=data_dir, database_url=database_url, temporal_address=address
    )
    store = read_store(database_url, data_dir)  # looking never creates or changes a store
    _check_account(store, account)
    ids = run_ids(store, account, start)
    found: dict[str, Any] = {}
    notes: dict[str, str] = {}
    if histories is not None:
        found, notes = _from_files(histories, ids)
    elif temporal:
        found, notes = run(lambda: _from_temporal(settings, ids))
    page = build_report(
        store,
        account,
        start,
        names=_names(settings),
        histories=found,
        history_notes=notes,
        chain=chain_verified,  # what `csauto audit verify` finds
    )
    if ids and not found and histories is None and not temporal:
        page.notes.append(HISTORY_HINT)
    html.write_text(render(page), encoding="utf-8")
    runs = sum(len(f.runs) for f in page.firings) + len(page.other_runs)
    out.print(
        plain(
            f"{html}: the audit report of {page.account_name} ({account}) since {page.since}: "
            f"{len(page.firings)} firings, {runs} runs ({len(found)} with their history), "
            f"{len(page.tasks)} tasks, {len(page.escalations)} escalations, "
            f"{len(page.ledger)} ledger entries; {page.chain.text}"
        ),
        soft_wrap=True,
    )


def _since(value: str) -> datetime:
    from csautomation.config import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--since {value!r}: {exc}") from None


def _check_account(store: Any, account: str) -> None:
    """An account the store knows, or one the ledger still tells of (removed from the CRM
    since): else an error, with the nearest account id."""
    from csautomation.references import did_you_mean
    from csautomation.store.ledger import Query, entries

    if store.account(account) is not None or entries(store, Query(account_id=account, limit=1)):
        return
    known = [a.id for a in store.list_accounts(limit=100_000)]
    raise CsAutomationError(
        f"no account {account} in the store, and nothing in its ledger"
        f"{did_you_mean(account, known)}"
    )


def _names(settings: Any) -> dict[str, str]:
    from csautomation.escalation.people import load_people

    if not settings.people_path.exists():
        return {}
    return {p.id: p.name for p in load_people(settings.people_path).people}


def _from_files(folder: Path, ids: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    from csautomation.audit.replay import file_name, read_history

    found, notes = {}, {}
    for wid in ids:
        path = folder / file_name(wid)
        if path.exists():
            found[wid] = read_history(path, wid)
        else:
            notes[wid] = f"no history file for this run in {folder}"
    return found, notes


async def _from_temporal(settings: Any, ids: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each run's history, read from the server (reading starts or changes nothing)."""
    from temporalio.service import RPCError, RPCStatusCode

    client = await bootstrap.connect(settings)

    async def one(wid: str) -> tuple[str, Any]:
        try:
            return wid, await client.get_workflow_handle(wid).fetch_history()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return wid, "Temporal no longer has its history (the namespace's retention)"
            return wid, f"Temporal did not give its history: {exc.message}"

    found, notes = {}, {}
    for wid, got in await asyncio.gather(*(one(w) for w in ids)):
        if isinstance(got, str):
            notes[wid] = got
        else:
            found[wid] = got
    if notes:
        err.print(f"{len(notes)} of {len(ids)} histories not read from Temporal", markup=False)
    return found, notes
