"""`csauto signals add` and `csauto ingest`: signals into the store, each validated and
stored once; a running pipeline evaluates them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from csautomation.cli.common import (
    DbOpt,
    FormatOpt,
    ShowOpt,
    err,
    import_rows,
    open_store,
    out,
    plain,
    print_rejected,
)
from csautomation.errors import CsAutomationError

app = typer.Typer(help="Store signals for evaluation.", no_args_is_help=True)


@app.command("add")
def signals_add(
    account: str,
    type_: Annotated[str, typer.Argument(metavar="TYPE")],
    payload: Annotated[str, typer.Option("--payload", help="JSON object")] = "{}",
    key: Annotated[str | None, typer.Option("--key", help="idempotency key")] = None,
    database_url: DbOpt = None,
) -> None:
    """Store one signal durably; a running pipeline evaluates it within a second."""
    from datetime import UTC, datetime

    from csautomation.ingest.validate import check, read_json

    body, why = read_json(payload)
    if why:
        raise CsAutomationError(f"--payload cannot be read: {why}")
    fields: dict[str, Any] = {
        "type": type_,
        "account_id": account,
        "occurred_at": datetime.now(UTC).isoformat(),
        "payload": body,
    }
    if key:
        fields["idempotency_key"] = key
    signal = check(fields)
    if isinstance(signal, list):  # the same checks, and paths, as POST /v1/signals
        for e in signal:
            err.print(plain(f"{e.field or 'signal'}: {e.message}"), soft_wrap=True)
        raise typer.Exit(1)
    fresh = open_store(database_url).add_signal(signal)
    out.print(plain(("stored " if fresh else "already stored ") + signal.idempotency_key))


def ingest(
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file of signals")],
    format_: FormatOpt = None,
    show: ShowOpt = 20,
    database_url: DbOpt = None,
) -> None:
    """Import signals from a file: each row validated and stored once (importing the same
    file again changes nothing); a report of rows accepted and rejected, with line numbers.
    Exit code 1 when a row was rejected."""
    from csautomation.ingest.batch import import_file

    report = import_rows(file, format_, database_url, import_file)
    out.print(
        f"{report.file}: {report.rows} rows, {report.accepted} accepted "
        f"({report.stored} new, {report.duplicates} already stored), "
        f"{report.rejected_rows} rejected",
        soft_wrap=True,
        markup=False,
    )
    if report.unknown:
        names = ", ".join(sorted(report.unknown)[:5]) + (", ..." if len(report.unknown) > 5 else "")
        out.print(
            f"{sum(report.unknown.values())} signal(s) for {len(report.unknown)} account(s) not "
            f"known yet ({names}): held until they arrive (csauto accounts import)",
            soft_wrap=True,
            markup=False,
        )
    print_rejected(report.rejected, show)
