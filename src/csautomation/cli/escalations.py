"""`csauto escalations`: the escalation matrix, and the open escalations on the command line.

validate, simulate and schema check escalation_matrix.yaml with people.yaml and show the
plan an escalation would follow without opening one. list and show read the escalations
index in the store; ack, resolve, reassign and snooze signal the escalation's workflow, as
the review page's buttons do, and print its new state. The command line is an operator's
tool: it acts as the person named by `--by` and does not apply the page's team visibility.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table
from rich.text import Text

from csautomation import bootstrap
from csautomation.cli.common import (
    AddressOpt,
    DataDirOpt,
    DbOpt,
    err,
    out,
    plain,
    read_store,
    run,
    safe,
)
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
from csautomation.settings import Settings
from csautomation.workflows.types import EscalationAction, EscalationState

app = typer.Typer(help="Escalations: the matrix, and the open ones.", no_args_is_help=True)

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


@app.command("validate")
def validate() -> None:
    """Check escalation_matrix.yaml and people.yaml (CSAUTO_ESCALATION_MATRIX_PATH,
    CSAUTO_PEOPLE_PATH): every problem as file:line:column, exit code 1 if any."""
    settings = bootstrap.settings()
    matrix, people = _load(settings)
    entries = sum(len(e) for e in matrix.severities.values())
    out.print(
        f"ok: {settings.escalation_matrix_path}: {len(matrix.severities)} severities "
        f"({', '.join(matrix.severities)}), {entries} entries, "
        f"{len(matrix.calendars)} calendars; {settings.people_path}: "
        f"{len(people.people)} people in {len(people.teams)} teams",
        soft_wrap=True,
        markup=False,
    )


@app.command("simulate")
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
    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    matrix, people = _load(settings)
    found, source = _account(settings, account)
    start = datetime.now(UTC) if at is None else at
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    result = plan(matrix, people, found, severity, start)
    if as_json:
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
        return
    _print_plan(result, found, source)


@app.command("schema")
def schema(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """The JSON Schema of escalation_matrix.yaml, for editors."""
    text = json.dumps(matrix_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}", markup=False)


def _load(settings: Settings) -> tuple[EscalationMatrix, People]:
    return load_escalation_config(settings.escalation_matrix_path, settings.people_path)


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
        Text("error ", "red")
        + plain(
            f"no account '{account_id}' in the store "
            f"({bootstrap.masked(settings)}) or in the sample data"
        ),
        soft_wrap=True,
    )
    raise typer.Exit(1)


def _from_store(settings: Settings, account_id: str) -> Account | None:
    from csautomation.errors import NoStoreError
    from csautomation.store.repo import Store

    try:
        store = Store.existing(settings.database_url)  # read-only: creates nothing
    except NoStoreError:
        return None
    except CsAutomationError as exc:  # no server, or a schema not the code's
        err.print(Text("warning ", "yellow") + plain(f"cannot read accounts: {exc}"))
        return None
    try:
        return store.account(account_id)
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
    # account fields and people's names are their authors' text: printed as written
    out.print(
        Text(safe(result.severity), "bold")
        + plain(
            f" escalation for {account.id} ({account.name}; "
            f"{account.tier}, ARR {_arr(account)}, {account.region}, "
            f"owner {account.owner or 'none yet'}) "
            f"from {source}"
        ),
        soft_wrap=True,
    )
    out.print(plain(f"matched: {result.matched}"), soft_wrap=True)
    if result.calendar:
        out.print(
            plain(f"calendar: {result.calendar} ({result.timezone}): deadlines count working hours")
        )
    else:
        out.print("calendar: none: deadlines count around the clock")
    out.print(plain(f"team: {result.team or '(unknown)'}"))
    table = Table()
    for column in ("round", "level", "when", "who", "channels", "ack by"):
        table.add_column(column)
    for i, rnd in enumerate(result.levels, start=1):
        table.add_row(
            str(i),
            str(rnd.level) + (f" (repeat {rnd.repeat})" if rnd.repeat else ""),
            _when(rnd.starts_at, result.timezone),
            plain("\n".join(f"{r.name} ({r.role})" for r in rnd.recipients)),
            plain(", ".join(rnd.channels)),
            _when(rnd.ack_by, result.timezone),
        )
    out.print(table)
    for note in result.notes:
        out.print(Text("note ", "yellow") + plain(note), soft_wrap=True)


ByOpt = Annotated[str, typer.Option("--by", help="your person id in people.yaml")]


def _age(since: datetime, now: datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    return (
        f"{minutes // 1440}d{minutes % 1440 // 60}h"
        if minutes >= 1440
        else f"{minutes // 60}h{minutes % 60:02d}m"
    )


@app.command("list")
def list_(
    severity: Annotated[str | None, typer.Option(help="critical, high, medium, low")] = None,
    team: Annotated[str | None, typer.Option()] = None,
    holder: Annotated[str | None, typer.Option(help="a person id")] = None,
    level: Annotated[int | None, typer.Option()] = None,
    all_: Annotated[bool, typer.Option("--all", help="resolved ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Open escalations, most urgent first."""
    from csautomation.store.escalations import Filters, list_escalations

    store = read_store(database_url, data_dir)
    status = ("open", "acknowledged", "snoozed", "resolved") if all_ else Filters.status
    found = list_escalations(
        store, Filters(severity=severity, level=level, team=team, holder=holder, status=status)
    )
    if as_json:
        out.print_json(json.dumps([s.model_dump(mode="json") for s in found]))
        return
    now = datetime.now(UTC)
    table = Table(title=f"{len(found)} escalation(s)")
    for col in ("id", "account", "severity", "status", "level", "holder", "age", "ack by"):
        table.add_column(col)
    for s in found:
        table.add_row(
            plain(s.workflow_id),
            plain(s.account_id),
            plain(s.severity),
            s.status,
            str(s.level),
            plain(s.holder_name or s.holder),
            _age(s.opened_at, now),
            f"{s.ack_by:%Y-%m-%d %H:%M}" if s.ack_by else "",
        )
    out.print(table)


@app.command("show")
def show(workflow_id: str, database_url: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """One escalation: its state and timeline, as last recorded."""
    from csautomation.store.escalations import get_escalation

    st = get_escalation(read_store(database_url, data_dir), workflow_id)
    if st is None:
        raise CsAutomationError(f"no escalation '{workflow_id}'")
    _print(st)


def _print(st: EscalationState) -> None:
    # people's text (notes, names, reasons) is printed as written: "[/red]" in a note is
    # text, not markup
    out.print(
        Text(safe(st.workflow_id), "bold")
        + plain(
            f"  {st.severity}  {st.status}  level {st.level}  "
            f"held by {st.holder_name or st.holder}  team {st.team or '-'}"
        ),
        soft_wrap=True,
    )
    if st.reason:
        out.print(plain(f"reason: {st.reason}"), soft_wrap=True)
    if st.ack_by:
        out.print(f"acknowledge by {st.ack_by:%Y-%m-%d %H:%M} UTC")
    for e in st.timeline:
        line = f"  {e.at:%Y-%m-%d %H:%M}  {e.kind:<12} {e.by:<10} {e.detail}"
        out.print(plain(line), soft_wrap=True)


def _act(address: str | None, workflow_id: str, kind: str, action: EscalationAction) -> None:
    from csautomation.api.actions import TemporalActions

    settings = bootstrap.settings(temporal_address=address)

    async def main() -> EscalationState:
        actions = TemporalActions(await bootstrap.connect(settings))
        await getattr(actions, kind)(workflow_id, action)
        return await actions.state(workflow_id)

    _print(run(main))


@app.command("ack")
def ack(workflow_id: str, by: ByOpt, note: str = "", address: AddressOpt = None) -> None:
    """Acknowledge: the climb stops and you hold it."""
    _act(address, workflow_id, "acknowledge", EscalationAction(by=by, note=note))


@app.command("resolve")
def resolve(
    workflow_id: str,
    by: ByOpt,
    note: Annotated[str, typer.Option(help="the resolution, for the record")],
    address: AddressOpt = None,
) -> None:
    """Resolve it, with a note saying how."""
    _act(address, workflow_id, "resolve", EscalationAction(by=by, note=note))


@app.command("reassign")
def reassign(
    workflow_id: str,
    by: ByOpt,
    to: Annotated[str, typer.Option(help="the new holder's person id")],
    note: str = "",
    address: AddressOpt = None,
) -> None:
    """Hand it to someone else, who is told through the level's channels."""
    _act(address, workflow_id, "reassign", EscalationAction(by=by, to=to, note=note))


@app.command("snooze")
def snooze(
    workflow_id: str,
    by: ByOpt,
    hours: Annotated[float, typer.Option(help="how long the timers wait")],
    note: str = "",
    address: AddressOpt = None,
) -> None:
    """Hold the timers; when it wakes, the current level is reached again."""
    until = datetime.now(UTC) + timedelta(hours=hours)
    _act(address, workflow_id, "snooze", EscalationAction(by=by, until=until, note=note))


def _arr(account: Account) -> str:
    return "not known" if account.arr is None else f"{account.arr:,.0f}"
