"""The auditor's commands: the decision ledger, workflow replay, history export, and a
firing's decision re-evaluated from what was recorded.

    csauto audit --account ACME --since 30d [--jsonl FILE]
    csauto audit verify (cli/audit_verify.py)
    csauto replay WORKFLOW_ID | --file HISTORY.json [--json]
    csauto history export WORKFLOW_ID... | --query "WorkflowType='PlaybookWorkflow'" --out DIR
    csauto rules replay FIRING_ID
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from csautomation import bootstrap
from csautomation.cli.common import (
    AddressOpt,
    DataDirOpt,
    DbOpt,
    err,
    fail,
    out,
    plain,
    read_store,
    run,
)
from csautomation.errors import CsAutomationError, NoStoreError, ServiceUnavailableError
from csautomation.store import ledger

history_app = typer.Typer(help="Workflow histories, for offline replay.", no_args_is_help=True)


def _since(value: str | None) -> datetime | None:
    from csautomation.config import parse_duration

    if value is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--since {value!r}: {exc}") from None


def audit(
    account: Annotated[str | None, typer.Option("--account", help="one account's entries")] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", help="one workflow's")] = None,
    since: Annotated[str | None, typer.Option("--since", help="how far back, e.g. 30d")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="rule_fired, workflow_started, create_task, notify, ..."),
    ] = None,
    jsonl: Annotated[
        Path | None, typer.Option("--jsonl", help="write the entries as JSON lines ('-': stdout)")
    ] = None,
    business_time: Annotated[
        bool,
        typer.Option(
            "--business-time",
            help="--since counts the signals' time a firing was evaluated at, not when "
            "entries were recorded",
        ),
    ] = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The decision ledger: every rule firing (with the facts it read), workflow start, side
    effect (with the vendor's record id), escalation change, dead letter and outcome. Each
    entry has the time it was recorded and its business time (a firing's: the time of the
    signals it was evaluated at); --since filters on the first, or on the second with
    --business-time."""
    from csautomation.store.ledger import Query, entries, to_json

    found = entries(
        read_store(database_url, data_dir),
        Query(
            account_id=account,
            workflow_id=workflow,
            since=_since(since),
            kinds=kind or (),
            business_time=business_time,
        ),
    )
    if jsonl is not None:
        lines = "".join(json.dumps(to_json(e), sort_keys=True) + "\n" for e in found)
        if str(jsonl) == "-":
            sys.stdout.write(lines)
        else:
            jsonl.write_text(lines, encoding="utf-8")
            err.print(f"{len(found)} entries written to {jsonl}", markup=False)
        return
    from rich.table import Table

    table = Table()
    for c in ("recorded (UTC)", "business time", "kind", "account", "rule / step", "workflow"):
        table.add_column(c, overflow="fold")
    table.add_column("what", overflow="fold")
    for e in found:  # ids, steps and details hold people's and vendors' text
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            f"{e.business_at:%Y-%m-%d %H:%M:%S}" if e.business_at != e.at else "same",
            e.kind,
            plain(e.account_id),
            plain(
                " ".join(
                    x for x in (e.rule_id, e.rule_version and f"v{e.rule_version}", e.step_id) if x
                )
            ),
            plain(e.workflow_id),
            plain(entry_words(e)),
        )
    out.print(table)
    out.print(f"{len(found)} entries")


def entry_words(e: Any) -> str:
    d = e.detail
    if e.kind == "rule_fired":
        facts = (d.get("explain") or {}).get("facts") or {}
        shown = ", ".join(f"{k}={v}" for k, v in list(facts.items())[:4])
        return f"firing {e.firing_id}: {shown}"
    if e.kind == "workflow_started":
        return (
            f"playbook {e.playbook_id} v{e.playbook_version}"
            if e.playbook_id
            else d.get("kind", "")
        )
    if e.kind in ("create_task", "notify", "update_account", "notify_escalation"):
        made = ledger.effect_words(e.kind, bool(d.get("created")))
        return f"{e.connector} record {e.record_id} ({made})"
    if e.kind == "escalation":
        return f"{d.get('event')} by {d.get('by')} (level {d.get('level')})"
    if e.kind == "workflow_closed":
        return str(d.get("outcome", ""))
    if e.kind in ("dead_lettered", "redriven", "discarded"):
        return f"dead letter {d.get('dead_letter_id')}: {d.get('action')}"
    return json.dumps(d, default=str)[:80]


async def _fetch(settings: Any, workflow_id: str) -> Any:
    from temporalio.service import RPCError, RPCStatusCode

    client = await bootstrap.connect(settings)
    try:
        return await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CsAutomationError(
                f"no workflow '{workflow_id}' in namespace {settings.temporal_namespace} at "
                f"{settings.temporal_address} (closed runs are kept for the namespace's "
                "retention; `csauto audit --workflow` reads the ledger, which is kept longer)"
            ) from None
        raise ServiceUnavailableError(f"Temporal: {exc.message}") from None


def replay(
    workflow_id: Annotated[str | None, typer.Argument(help="fetched from Temporal")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="a history file (csauto history export)")
    ] = None,
    address: AddressOpt = None,
    database_url: DbOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the whole result as JSON, for tooling")
    ] = False,
    code_only: Annotated[
        bool,
        typer.Option(
            "--code-only",
            help="compare the code alone, not the playbook files (a deploy's check: file "
            "edits never reach a running run)",
        ),
    ] = False,
) -> None:
    """Replay a workflow's history against the current code, print its decision timeline,
    and compare: determinism, the playbook version the run executed against the one in the
    files now (step by step), and each activity's input against the recorded one. Exit
    code 0: the same; 1: it diverges (each reason named by step); 2: could not replay."""
    from temporalio.client import WorkflowHistory

    from csautomation.audit.compare import Comparison, Definitions, compare, could_not_replay
    from csautomation.audit.replay import read_history
    from csautomation.audit.timeline import timeline

    if (workflow_id is None) == (file is None):
        raise typer.BadParameter("give a WORKFLOW_ID or --file, one of the two")
    settings = bootstrap.settings(database_url=database_url, temporal_address=address)
    definitions = None if code_only else Definitions(settings.playbooks_path, settings.rules_path)

    async def main() -> tuple[WorkflowHistory | None, Comparison]:
        history = None
        try:
            if file is not None:
                history = read_history(file)
            else:
                assert workflow_id is not None
                history = await _fetch(settings, workflow_id)
            return history, await compare(history, definitions)
        except CsAutomationError as exc:  # no history, no Temporal, unreadable files
            whose = history.workflow_id if history else workflow_id or str(file)
            return history, could_not_replay(whose, str(exc))

    history, result = run(main)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        raise typer.Exit(result.exit_code)
    if history is not None:
        tl = timeline(history)
        out.print(plain(tl.render()), soft_wrap=True)
        if file is None or database_url is not None:  # offline, the ledger only when named
            _ledger_notes(settings, tl.workflow_id)
    if result.replay:
        said = plain(f"replay: {result.replay}")
        said.stylize("green" if result.deterministic else "red", len("replay: "))
        out.print(said, soft_wrap=True)
    for line in result.render():
        out.print(plain(line), soft_wrap=True)
    raise typer.Exit(result.exit_code)


def _ledger_notes(settings: Any, workflow_id: str) -> None:
    """What the ledger adds: the firing that started the run, to re-check with `rules
    replay`. Quiet when the store is not there (an offline replay of a file)."""
    from sqlalchemy.exc import SQLAlchemyError

    from csautomation.store.ledger import Query, entries

    try:
        found = entries(bootstrap.read_store(settings), Query(workflow_id=workflow_id))
    except (SQLAlchemyError, NoStoreError):
        return
    for e in found:
        if e.kind == "workflow_started" and e.firing_id is not None:
            out.print(
                f"ledger: started by firing {e.firing_id} of {e.rule_id}; re-check the "
                f"decision with `csauto rules replay {e.firing_id}`",
                markup=False,
            )
    effects = [e for e in found if e.kind in ("create_task", "notify", "update_account")]
    for e in effects:
        out.print(plain(f"ledger: {e.kind} step {e.step_id}: {e.connector} record {e.record_id}"))


@history_app.command("export")
def history_export(
    workflow_ids: Annotated[list[str] | None, typer.Argument()] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query", help="a visibility query, e.g. \"WorkflowType='PlaybookWorkflow'\""
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the JSON files")] = Path(
        "histories"
    ),
    limit: Annotated[int, typer.Option("--limit", help="at most this many (--query)")] = 1000,
    address: AddressOpt = None,
) -> None:
    """Write workflow histories to JSON files that `csauto replay --file` replays offline
    (Temporal's format, as its UI and CLI download it, with the workflow id inside)."""
    from csautomation.audit.replay import file_name, history_json

    if not workflow_ids and query is None:
        raise typer.BadParameter("give WORKFLOW_IDs or --query")
    settings = bootstrap.settings(temporal_address=address)

    async def main() -> list[Path]:
        client = await bootstrap.connect(settings)
        ids = list(workflow_ids or [])
        if query is not None:
            async for wf in client.list_workflows(query, limit=limit):
                ids.append(wf.id)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for wf_id in dict.fromkeys(ids):
            history = await _fetch(settings, wf_id)
            path = out_dir / file_name(wf_id)
            path.write_text(history_json(history), encoding="utf-8")
            written.append(path)
        return written

    written = run(main)
    for path in written:
        out.print(str(path), markup=False)
    err.print(f"{len(written)} histories written to {out_dir}", markup=False)


def rules_replay(
    firing_id: Annotated[int, typer.Argument(help="a firing's id (csauto audit shows them)")],
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Re-evaluate a firing's recorded facts against the rule as it was at the recorded
    version, and show that the decision is the same (exit code 1 when it is not)."""
    from csautomation.audit.decisions import DecisionError, replay_firing

    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    try:
        result = replay_firing(bootstrap.read_store(settings), firing_id, settings)
    except (DecisionError, CsAutomationError) as exc:
        fail(exc)
    out.print(plain(result.render()), soft_wrap=True)
    if not result.same:
        raise typer.Exit(1)
