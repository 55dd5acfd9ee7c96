"""`csauto escalations validate | simulate | schema`: check escalation_matrix.yaml with
people.yaml, and show the plan an escalation would follow without opening one.

Plain functions with typer annotations; the `csauto` app registers them.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from csautomation.errors import CsAutomationError
from csautomation.escalation.matrix import (
    EscalationMatrix,
    load_escalation_config,
    matrix_json_schema,
)
from csautomation.escalation.model import EscalationPlan
from csautomation.escalation.people import People
from csautomation.escalation.policy import plan
from csautomation.facts.model import Account
from csautomation.runtime.commands import DataDirOpt, DbOpt, _fail, _settings, err, out
from csautomation.settings import Settings

# --at accepts an ISO date and time; without an offset it is UTC
AT_FORMATS = [
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
]
_SAMPLE_ID = re.compile(r"^(ACME|ACC-\d{5})$")


def validate() -> None:
    """Check escalation_matrix.yaml and people.yaml (CSAUTO_ESCALATION_MATRIX_PATH,
    CSAUTO_PEOPLE_PATH): every problem as file:line:column, exit code 1 if any."""
    settings = Settings()
    matrix, people = _load(settings)
    entries = sum(len(e) for e in matrix.severities.values())
    out.print(
        f"ok: {settings.escalation_matrix_path}: {len(matrix.severities)} severities "
        f"({', '.join(matrix.severities)}), {entries} entries, "
        f"{len(matrix.calendars)} calendars; {settings.people_path}: "
        f"{len(people.people)} people in {len(people.teams)} teams",
        soft_wrap=True,
    )


def simulate(
    severity: Annotated[
        str, typer.Option("--severity", help="a severity of the matrix: critical, high, ...")
    ],
    account: Annotated[str, typer.Option("--account", help="the account id, e.g. ACC-00005")],
    at: Annotated[
        datetime | None,
        typer.Option(
            "--at",
            formats=AT_FORMATS,
            metavar="DATETIME",
            help="when the escalation opens, e.g. 2026-12-24T15:00Z (UTC without an offset); "
            "default: now",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Print who an escalation would reach, through what, and when: nothing is sent."""
    settings = _settings(data_dir, database_url)
    matrix, people = _load(settings)
    found, source = _account(settings, account)
    start = datetime.now(UTC) if at is None else at
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    try:
        result = plan(matrix, people, found, severity, start)
    except CsAutomationError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits
    if as_json:
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
        return
    _print_plan(result, found, source)


def schema(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """The JSON Schema of escalation_matrix.yaml, for editors."""
    text = json.dumps(matrix_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")


def _load(settings: Settings) -> tuple[EscalationMatrix, People]:
    try:
        return load_escalation_config(settings.escalation_matrix_path, settings.people_path)
    except CsAutomationError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


def _account(settings: Settings, account_id: str) -> tuple[Account, str]:
    """The account from the store, else from the demo's sample data; exit 1 if neither
    has it. Reads only: no database or sample file is created."""
    found = _from_store(settings, account_id)
    if found is not None:
        return found, "the store"
    found = _from_sample(settings, account_id)
    if found is not None:
        return found, "the sample data"
    err.print(
        f"[red]error[/red] no account '{account_id}' in the store "
        f"({_masked(settings.database_url)}) or in the sample data",
        soft_wrap=True,
    )
    raise typer.Exit(1)


def _from_store(settings: Settings, account_id: str) -> Account | None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from csautomation.store.repo import Store

    url = settings.database_url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path.startswith(":memory:") or not Path(path).is_file():
            return None
    store = Store(url)
    try:
        return store.account(account_id)
    except (OperationalError, ProgrammingError) as exc:  # no tables yet, or no server
        err.print(f"[yellow]warning[/yellow] cannot read accounts from the store: {exc.orig}")
        return None
    finally:
        store.engine.dispose()


def _from_sample(settings: Settings, account_id: str) -> Account | None:
    from csautomation.sample.generate import generate, read_accounts

    written = settings.data_dir / "sample" / "accounts.jsonl"
    if written.is_file():
        accounts = read_accounts(written)
    elif _SAMPLE_ID.match(account_id):
        accounts, _ = generate()  # the demo's data set, in memory
    else:
        return None
    return next((a for a in accounts if a.id == account_id), None)


def _when(moment: datetime, timezone: str | None) -> str:
    text = f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if timezone:
        local = moment.astimezone(ZoneInfo(timezone))
        text += f"\n{local:%a %d %b %H:%M} {local.tzname()}"
    return text


def _print_plan(result: EscalationPlan, account: Account, source: str) -> None:
    out.print(
        f"[bold]{result.severity}[/bold] escalation for {account.id} ({account.name}; "
        f"{account.tier}, ARR {account.arr:,.0f}, {account.region}, owner {account.owner}) "
        f"from {source}",
        soft_wrap=True,
    )
    out.print(f"matched: {result.matched}", soft_wrap=True, markup=False)
    if result.calendar:
        out.print(f"calendar: {result.calendar} ({result.timezone}): deadlines count working hours")
    else:
        out.print("calendar: none: deadlines count around the clock")
    out.print(f"team: {result.team or '(unknown)'}")
    table = Table()
    for column in ("round", "level", "when", "who", "channels", "ack by"):
        table.add_column(column)
    for i, rnd in enumerate(result.levels, start=1):
        table.add_row(
            str(i),
            str(rnd.level) + (f" (repeat {rnd.repeat})" if rnd.repeat else ""),
            _when(rnd.starts_at, result.timezone),
            "\n".join(f"{r.name} ({r.role})" for r in rnd.recipients),
            ", ".join(rnd.channels),
            _when(rnd.ack_by, result.timezone),
        )
    out.print(table)
    for note in result.notes:
        out.print(f"[yellow]note[/yellow] {note}", soft_wrap=True)


def _masked(url: str) -> str:
    """The database URL without its password (alembic is imported only when needed)."""
    from csautomation.store.migrate import masked

    return masked(url)
