"""`csauto escalations`: the manager's review page on the command line.

list and show read the escalations index in the store; ack, resolve, reassign and snooze
signal the escalation's workflow, as the page's buttons do, and print its new state. The
command line is an operator's tool: it acts as the person named by `--by` and does not
apply the page's team visibility.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from csautomation.errors import CsAutomationError
from csautomation.escalation.cli import schema, simulate, validate
from csautomation.runtime.commands import AddressOpt, DbOpt, _fail, _run, _settings, _store, out
from csautomation.workflows.types import EscalationAction, EscalationState

escalations_app = typer.Typer(
    help="Escalations: the matrix, and the open ones.", no_args_is_help=True
)
escalations_app.command("validate")(validate)
escalations_app.command("simulate")(simulate)
escalations_app.command("schema")(schema)

ByOpt = Annotated[str, typer.Option("--by", help="your person id in people.yaml")]


def _age(since: datetime, now: datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    return (
        f"{minutes // 1440}d{minutes % 1440 // 60}h"
        if minutes >= 1440
        else f"{minutes // 60}h{minutes % 60:02d}m"
    )


@escalations_app.command("list")
def list_(
    severity: Annotated[str | None, typer.Option(help="critical, high, medium, low")] = None,
    team: Annotated[str | None, typer.Option()] = None,
    holder: Annotated[str | None, typer.Option(help="a person id")] = None,
    level: Annotated[int | None, typer.Option()] = None,
    all_: Annotated[bool, typer.Option("--all", help="resolved ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    database_url: DbOpt = None,
) -> None:
    """Open escalations, most urgent first."""
    from csautomation.store.escalations import Filters, list_escalations

    store = _store(_settings(db=database_url))
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
            s.workflow_id,
            s.account_id,
            s.severity,
            s.status,
            str(s.level),
            s.holder_name or s.holder,
            _age(s.opened_at, now),
            f"{s.ack_by:%Y-%m-%d %H:%M}" if s.ack_by else "",
        )
    out.print(table)


@escalations_app.command("show")
def show(workflow_id: str, database_url: DbOpt = None) -> None:
    """One escalation: its state and timeline, as last recorded."""
    from csautomation.store.escalations import get_escalation

    st = get_escalation(_store(_settings(db=database_url)), workflow_id)
    if st is None:
        _fail(CsAutomationError(f"no escalation '{workflow_id}'"))
        return
    _print(st)


def _print(st: EscalationState) -> None:
    out.print(
        f"[bold]{st.workflow_id}[/bold]  {st.severity}  {st.status}  level {st.level}  "
        f"held by {st.holder_name or st.holder}  team {st.team or '-'}"
    )
    if st.ack_by:
        out.print(f"acknowledge by {st.ack_by:%Y-%m-%d %H:%M} UTC")
    for e in st.timeline:
        out.print(f"  {e.at:%Y-%m-%d %H:%M}  {e.kind:<12} {e.by:<10} {e.detail}")


def _act(address: str | None, workflow_id: str, kind: str, action: EscalationAction) -> None:
    from csautomation.api.actions import TemporalActions
    from csautomation.runtime.server import connect

    settings = _settings(address=address)

    async def main() -> EscalationState:
        actions = TemporalActions(
            await connect(settings.temporal_address, settings.temporal_namespace)
        )
        await getattr(actions, kind)(workflow_id, action)
        return await actions.state(workflow_id)

    try:
        _print(_run(main))
    except CsAutomationError as exc:
        _fail(exc)


@escalations_app.command("ack")
def ack(workflow_id: str, by: ByOpt, note: str = "", address: AddressOpt = None) -> None:
    """Acknowledge: the climb stops and you hold it."""
    _act(address, workflow_id, "acknowledge", EscalationAction(by=by, note=note))


@escalations_app.command("resolve")
def resolve(
    workflow_id: str,
    by: ByOpt,
    note: Annotated[str, typer.Option(help="the resolution, for the record")],
    address: AddressOpt = None,
) -> None:
    """Resolve it, with a note saying how."""
    _act(address, workflow_id, "resolve", EscalationAction(by=by, note=note))


@escalations_app.command("reassign")
def reassign(
    workflow_id: str,
    by: ByOpt,
    to: Annotated[str, typer.Option(help="the new holder's person id")],
    note: str = "",
    address: AddressOpt = None,
) -> None:
    """Hand it to someone else, who is told through the level's channels."""
    _act(address, workflow_id, "reassign", EscalationAction(by=by, to=to, note=note))


@escalations_app.command("snooze")
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


def register(app: Any) -> None:
    app.add_typer(escalations_app, name="escalations")
