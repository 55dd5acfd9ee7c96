"""`csauto quarantine`: the operator's side of the signal quarantine, the same operations as
`GET /v1/quarantine`, `GET /v1/quarantine/{id}` and `POST /v1/quarantine/{id}/reprocess`
and `/discard`, with the same meaning (both call `ingest.intake`).

Everything shown comes from senders (raw text, error messages naming their values, account
ids), so it is printed as plain text: rich markup in it is not interpreted and terminal
control characters are written as escapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from csautomation.cli.common import DataDirOpt, DbOpt, fail, open_store, out, plain, read_store
from csautomation.errors import CsAutomationError

if TYPE_CHECKING:
    from csautomation.store.repo import Store
    from csautomation.store.tables import QuarantineRow

app = typer.Typer(
    help="Signals that could not be accepted, and stored ones held back.", no_args_is_help=True
)


class Status(StrEnum):
    open = "open"
    reprocessed = "reprocessed"
    discarded = "discarded"
    all = "all"


IdArg = Annotated[int, typer.Argument(help="a quarantined item's id (see `list`)", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON, as the HTTP API answers")]
ByOpt = Annotated[str | None, typer.Option("--by", help="who resolves it (default: cli:<OS user>)")]

# sender-supplied text as rich prints it literally, control characters as escapes (JSON-
# parsed items arrive escaped; unreadable bodies do not)
_plain = plain


def _die(message: str) -> NoReturn:
    fail(CsAutomationError(message))  # fail prints it as text


@contextmanager
def _opened(
    database_url: str | None, data_dir: Path | None = None, looking: bool = False
) -> Iterator[Store]:
    """The store, with configuration and database failures as one clear line (exit 1).
    `looking`: a command that only reads, which opens the store as it is (`read_store`)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        store = read_store(database_url, data_dir) if looking else open_store(database_url)
    except CsAutomationError as exc:  # a schema newer than this code, say
        _die(str(exc))
    except ValidationError as exc:  # CSAUTO_* variables: every problem, one per line
        _die(f"the settings are not valid: {exc}")
    except (SQLAlchemyError, ImportError, OSError, ValueError) as exc:  # URL, driver, folder
        _die(f"cannot open the store: {_first_line(exc)}")
    try:
        yield store
    except SQLAlchemyError as exc:
        _die(f"the store failed: {_first_line(exc)}")
    finally:
        store.engine.dispose()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite: naive


def _when(value: datetime | None, form: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return _utc(value).strftime(form) if value else ""


def _error_line(error: dict[str, Any]) -> str:
    index = error.get("index")
    where = f"[{index}] " if index is not None else ""
    field = error.get("field") or ""
    return f"{where}{field + ': ' if field else ''}{error.get('message', '')}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _account(raw: str) -> str:
    from csautomation.ingest.validate import read_json

    data, _ = read_json(raw)  # the door's bounds: a 5,000-digit number is no crash here
    value = data.get("account_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _item(row: QuarantineRow) -> dict[str, Any]:
    """The HTTP API's shape of one item (routes.QuarantineItem), plus when it was resolved."""
    return {
        "id": row.id,
        "source": row.source,
        "status": row.status,
        "times": row.times,
        "errors": row.errors,
        "raw": row.raw,
        "signal_key": row.signal_key,
        "received_at": _utc(row.received_at).isoformat(),
        "last_seen_at": _utc(row.last_seen_at).isoformat(),
        "resolved_by": row.resolved_by,
        "result_key": row.result_key,
        "resolved_at": _utc(row.resolved_at).isoformat() if row.resolved_at else None,
    }


def _print_json(data: Any) -> None:
    # plain text, not rich's JSON renderer: the output is for jq and scripts
    out.print(json.dumps(data, indent=2, ensure_ascii=False), markup=False, soft_wrap=True)


@app.command("list")
def quarantine_list(
    status: Annotated[Status, typer.Option("--status", help="which items")] = Status.open,
    source: Annotated[str | None, typer.Option("--source", help="one source's items")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="at most")] = 200,
    as_json: JsonOpt = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Quarantined items, oldest first: why each was refused, how often it came."""
    from csautomation.store.quarantine import held

    with _opened(database_url, data_dir, looking=True) as store:
        rows = held(store, None if status is Status.all else status.value, source, limit)
    if as_json:
        _print_json({"count": len(rows), "items": [_item(r) for r in rows]})
        return
    # eight columns fit 80 characters only without rules and edge padding
    table = Table(
        title=f"quarantine ({status.value}; times in UTC)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    table.add_column("id", no_wrap=True)
    for name in ("source", "times"):
        table.add_column(name)
    for name in ("first seen", "last seen"):
        table.add_column(name, min_width=10)
    table.add_column("status")
    table.add_column("account", max_width=14)  # the error needs the room more
    table.add_column("first error")
    for r in rows:
        first = _error_line(r.errors[0]) if r.errors else ""
        more = f" (+{len(r.errors) - 1} more)" if len(r.errors) > 1 else ""
        table.add_row(
            str(r.id),
            _plain(r.source),
            str(r.times),
            _when(r.received_at, "%Y-%m-%d %H:%M"),
            _when(r.last_seen_at, "%Y-%m-%d %H:%M"),
            r.status,
            _plain(_account(r.raw)),
            _plain(_cut(first, 100) + more),
        )
    out.print(table)
    shown = f"{len(rows)} item(s)" + (f" (--limit {limit} reached)" if len(rows) == limit else "")
    out.print(shown)


@app.command("show")
def quarantine_show(
    row_id: IdArg, as_json: JsonOpt = False, database_url: DbOpt = None, data_dir: DataDirOpt = None
) -> None:
    """One item, whole: every error and the raw text as it came."""
    from csautomation.store.quarantine import get_held

    with _opened(database_url, data_dir, looking=True) as store:
        row = get_held(store, row_id)
    if row is None:
        _die(f"no quarantined item {row_id}")
    if as_json:
        _print_json(_item(row))
        return
    resolved = f"{_when(row.resolved_at)} by {row.resolved_by}" if row.resolved_at else ""
    facts = [
        ("item", str(row.id)),
        ("status", row.status),
        ("source", row.source),
        ("account", _account(row.raw)),
        ("times seen", str(row.times)),
        ("first seen", _when(row.received_at)),
        ("last seen", _when(row.last_seen_at)),
        ("held signal", row.signal_key),  # stored, held back from evaluation
        ("resolved", resolved),
        ("became signal", row.result_key),
    ]
    for label, value in facts:
        if value:
            out.print(Text(f"{label + ':':<15}") + _plain(value))
    out.print(f"errors ({len(row.errors)}):")
    for error in row.errors:
        out.print(Text("  ") + _plain(_error_line(error)), soft_wrap=True)
    out.print("raw:")
    out.print(_plain(row.raw), soft_wrap=True)  # as kept: copy it, fix it, `retry --file`


def _user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError, ImportError):  # no login name (containers): still say where
        return "cli"


def _corrected(file: Path | None, data: str | None) -> Any:
    """The corrected signal given, parsed; None when none was."""
    if file is not None and data is not None:
        _die("give the corrected signal with --file or --data, not both")
    if file is not None:
        where = str(file)
        try:
            text = file.read_text(encoding="utf-8-sig")  # a BOM from Windows editors is fine
        except UnicodeDecodeError as exc:
            _die(f"{where}: not UTF-8 text (byte {exc.start})")
        except OSError as exc:
            _die(f"cannot read {where}: {exc.strerror or exc}")
    elif data is not None:
        where, text = "--data", data
    else:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _die(f"{where}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except RecursionError:
        _die(f"{where}: not valid JSON: nested too deeply")


@app.command("retry")
def quarantine_retry(
    row_id: IdArg,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="a corrected signal, as JSON", dir_okay=False),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="a corrected signal, inline")] = None,
    by: ByOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Re-process an item: the corrected signal when given, else the item as it was kept.
    A stored signal held back (an unknown account, facts or rules that could not be
    computed from it) goes back to evaluation, in place of the stored one when a corrected
    signal is given (same idempotency key, or none); a running pipeline picks it up within
    its poll interval."""
    from csautomation.ingest.intake import reprocess
    from csautomation.store.quarantine import get_held

    corrected = _corrected(file, data)
    who = _who(by)
    with _opened(database_url) as store:
        row = get_held(store, row_id)
        done = reprocess(store, row_id, who, corrected) if row is not None else None
    if row is None or done is None:
        _die(f"no quarantined item {row_id}")
    if done.already:
        became = f" (signal {done.key})" if done.key else ""
        _die(f"item {row_id} is already {done.already}{became}; nothing done")
    if not done.ok:
        _die(
            f"item {row_id} is still not valid and stays open:\n"
            + "\n".join(f"  {e.field + ': ' if e.field else ''}{e.message}" for e in done.errors)
        )
    if row.signal_key and corrected is None:
        out.print(Text(f"item {row_id} reprocessed: signal ") + _plain(done.key))
        out.print("  released: it goes back to evaluation")
    elif row.signal_key:
        out.print(Text(f"item {row_id} reprocessed: signal ") + _plain(done.key))
        out.print("  replaced by the corrected signal: it goes back to evaluation")
    else:
        out.print(Text(f"item {row_id} reprocessed: stored under key ") + _plain(done.key))


@app.command("discard")
def quarantine_discard(row_id: IdArg, by: ByOpt = None, database_url: DbOpt = None) -> None:
    """Give up on an item; it stays listed with --status discarded."""
    from csautomation.ingest.intake import discard

    who = _who(by)
    with _opened(database_url) as store:
        status = discard(store, row_id, who)
    if status is None:
        _die(f"no quarantined item {row_id}")
    if status != "open":
        _die(f"item {row_id} is already {status}; nothing done")
    out.print(f"item {row_id} discarded")


def _who(by: str | None) -> str:
    if by is None:
        return _user()
    if not by.strip():
        _die("--by must name someone")
    return by.strip()
