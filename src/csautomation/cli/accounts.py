"""`csauto accounts`: your own accounts in (a CSV or JSONL file), listed and shown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from csautomation.cli.common import (
    DataDirOpt,
    DbOpt,
    FormatOpt,
    ShowOpt,
    import_rows,
    out,
    plain,
    print_rejected,
    read_store,
)
from csautomation.errors import CsAutomationError

app = typer.Typer(help="Accounts: import your own, list and show them.", no_args_is_help=True)


@app.command("import")
def accounts_import(
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file of accounts")],
    format_: FormatOpt = None,
    show: ShowOpt = 20,
    database_url: DbOpt = None,
) -> None:
    """Import accounts from a file (docs/data.md): each row validated and upserted by its
    id (importing the same file again changes nothing); signals held for an account not
    known until now are released to evaluation. Exit code 1 when a row was rejected."""
    from csautomation.ingest.accounts import import_accounts

    report = import_rows(file, format_, database_url, import_accounts)
    out.print(
        f"{report.file}: {report.rows} rows, {report.accepted} accepted ({report.created} new, "
        f"{report.updated} updated, {report.unchanged} unchanged), "
        f"{report.rejected_rows} rejected; {report.released} held signal(s) released",
        soft_wrap=True,
        markup=False,
    )
    print_rejected(report.rejected, show)


@app.command("list")
def accounts_list(
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many")] = 200,
    after: Annotated[str, typer.Option("--after", help="ids after this one (paging)")] = "",
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Accounts in the store, in id order."""
    accounts = read_store(database_url, data_dir).list_accounts(limit, after)
    table = Table()
    for column in ("id", "name", "tier", "owner", "ARR", "renewal"):
        table.add_column(column)
    for a in accounts:
        table.add_row(
            a.id,
            plain(a.name),
            a.tier.value,
            plain(a.owner or "-"),
            "-" if a.arr is None else f"{a.arr:,.0f}",
            str(a.renewal_date or "-"),
        )
    out.print(table)
    out.print(
        f"{len(accounts)} account(s)"
        + (f"; next page: --after {accounts[-1].id}" if len(accounts) == limit else ""),
        markup=False,
    )


@app.command("show")
def accounts_show(account_id: str, database_url: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """One account, whole, as stored (JSON)."""
    account = read_store(database_url, data_dir).account(account_id)
    if account is None:
        raise CsAutomationError(f"no account '{account_id}'")
    sys.stdout.write(json.dumps(account.model_dump(mode="json"), indent=2) + "\n")
