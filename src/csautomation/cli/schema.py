"""`csauto schema accounts | signals`: the JSON Schema of the data files and API bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csautomation.cli.common import write_schema

app = typer.Typer(help="JSON Schema of accounts and signals (docs/data.md).", no_args_is_help=True)
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o")]


@app.command("accounts")
def schema_accounts(output: OutputOpt = None) -> None:
    """The JSON Schema of one account (a JSONL line, a CSV row, PUT /v1/accounts)."""
    from csautomation.facts.model import Account

    write_schema(Account, "csautomation account", output)


@app.command("signals")
def schema_signals(output: OutputOpt = None) -> None:
    """The JSON Schema of one signal, its payload per type (a JSONL line, a CSV row,
    POST /v1/signals)."""
    from csautomation.facts.schema import signal_schema

    write_schema(signal_schema(), "csautomation signal", output)
