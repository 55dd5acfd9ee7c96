"""Pulls: the jobs `schedules.yaml` lists under `pulls:`, each bringing vendor data in as
signals. A kind has an options model (`PULL_KINDS`); the scheduler calls
`run_pull(kind, options, ctx)`.

    salesforce_accounts  Accounts changed since the cursor (SOQL by LastModifiedDate, paged by
                         nextRecordsUrl): our Account rows, `contract_update` when renewal
                         date, ARR or seats changed, `churn_prediction` when the field is set
    zendesk_tickets      the cursor-based incremental ticket export: `support_ticket`, and
                         `support_escalation` for urgent or escalation-tagged tickets
    usage_file_drop      *.jsonl and *.csv files dropped in a folder, imported as by
                         `csauto ingest`, then moved to done/ or rejected/

Exactly once by order, page by page: signals first (each with a deterministic idempotency
key), then accounts, then the cursor (table `pull_cursors`). A crash in between re-reads a
page whose signals the store already holds, and their keys drop them. Salesforce re-reads
the minute before its cursor: a record committed late carries an earlier LastModifiedDate.

Vendor failures leave as the connector's ConnectorError subclasses, the cursor where the
last committed page left it; unknown kinds, bad options and missing connectors are
ConfigErrors. A record that cannot become an account or a signal is logged and skipped;
editing it in the vendor brings it back.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from simple_salesforce.format import format_soql

from csautomation.connectors.config import SalesforceConfig, ZendeskConfig
from csautomation.connectors.loader import build_connectors, load_connectors
from csautomation.errors import ConfigError, ConnectorError
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.ingest.batch import ImportReport, import_file
from csautomation.store.pull_tables import create_pull_tables, load_cursor, save_cursor
from csautomation.store.repo import Store

if TYPE_CHECKING:
    from csautomation.connectors.salesforce import SalesforceCrm
    from csautomation.connectors.zendesk import ExportedTicket, ZendeskTicketing

log = logging.getLogger(__name__)
C = TypeVar("C", SalesforceConfig, ZendeskConfig)


@dataclass(frozen=True)
class PullContext:
    store: Store
    connectors_path: Path  # the connectors/ folder
    now: datetime  # aware UTC


@dataclass(frozen=True)
class PullResult:
    kind: str
    fetched: int  # records read from the vendor (rows, for a file drop)
    stored: int  # signals new to the store
    accounts: int  # accounts created or updated
    cursor: str  # the cursor saved for next time


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # the cursor's name: two pulls of one kind with one name share a cursor
    name: str | None = Field(default=None, min_length=1, max_length=300)

    def cursor_name(self) -> str:
        """`name`, else the connector (or the folder) pulled from."""
        return self.name or str(getattr(self, "connector", None) or getattr(self, "folder", ""))


# -- Salesforce ----------------------------------------------------------------------------
AccountField = Literal[
    "id", "name", "tier", "segment", "region", "arr", "seats", "owner", "manager",
    "renewal_date", "customer_since", "tenant",
]  # fmt: skip
# an API name, or one relationship hop (Owner.Email): it goes into SOQL as written
SfField = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]\w{0,79}(\.[A-Za-z]\w{0,79})?$")]
CONTRACT = ("renewal_date", "arr", "seats")
DEFAULT_FIELDS: dict[str, str] = {
    "name": "Name",
    "arr": "AnnualRevenue",
    "owner": "OwnerId",  # through the connector's `owners` read backwards (else kept as is)
    "customer_since": "CreatedDate",
}
SF_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"


class SalesforceAccountsOptions(_Options):
    connector: str = "salesforce"
    # our Account fields -> Salesforce fields, over DEFAULT_FIELDS; `id` defaults to the
    # connector's account_field (the External ID holding our account id)
    fields: dict[AccountField, SfField] = Field(default_factory=dict)
    # values for fields no mapping fills, for accounts new to the store (tier, manager, ...)
    defaults: dict[AccountField, Any] = Field(default_factory=dict)
    churn_field: SfField | None = None
    churn_percent: bool = False  # a Percent field: 42 means a probability of 0.42
    churn_model: str = "salesforce"
    # only Accounts whose field holds one of these values, e.g. {Type: [Customer]}
    filters: dict[SfField, str | list[str]] = Field(default_factory=dict)
    start: AwareDatetime | None = None  # the first pull: Accounts changed after it; unset: all
    overlap_seconds: float = Field(default=60, ge=0, le=86_400)


def account_soql(fields: Iterable[str], since: datetime, filters: Mapping[str, Any]) -> str:
    """Every value goes through format_soql; only constant template text is joined."""
    where = ["LastModifiedDate > {}", *["{:literal} IN {}"] * len(filters)]
    template = "SELECT {:literal} FROM Account WHERE " + " AND ".join(where)
    args: list[Any] = [", ".join(dict.fromkeys(fields)), since]
    for field, values in filters.items():
        args += [field, [values] if isinstance(values, str) else list(values)]
    return format_soql(template + " ORDER BY LastModifiedDate, Id", *args)


def _field(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _account_values(
    record: Mapping[str, Any], mapping: Mapping[str, str], people: Mapping[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ours, theirs in mapping.items():
        value = _field(record, theirs)
        if value is None or value == "":
            continue
        if ours in ("renewal_date", "customer_since") and isinstance(value, str):
            value = value[:10]  # a Date, or the day of a DateTime
        elif ours in ("owner", "manager"):
            value = people.get(str(value), str(value))
        elif ours == "tier":
            value = re.sub(r"[\s-]+", "_", str(value).strip().lower())  # Mid-Market
        elif ours == "id":
            value = str(value)
        out[ours] = value
    return out


def _salesforce_accounts(opts: SalesforceAccountsOptions, ctx: PullContext, tally: _Tally) -> str:
    name = opts.cursor_name()
    built, config = _connector(ctx, opts.connector, SalesforceConfig)
    crm: SalesforceCrm = built
    mapping = {"id": config.account_field} | DEFAULT_FIELDS | dict(opts.fields)
    people = {vendor_id: ours for ours, vendor_id in config.owners.items()}
    saved = load_cursor(ctx.store.engine, KIND_SF, name)
    cursor = _parse_cursor(saved) if saved else None
    since = cursor or opts.start or datetime(1970, 1, 1, tzinfo=UTC)
    if cursor is not None:
        since -= timedelta(seconds=opts.overlap_seconds)
    wanted = ["Id", "LastModifiedDate", *mapping.values()]
    if opts.churn_field:
        wanted.append(opts.churn_field)
    soql = account_soql(wanted, since, opts.filters)
    try:
        for records in crm.query_pages("pull_accounts", soql):
            tally.fetched += len(records)
            signals: list[Signal] = []
            changed: dict[str, Account] = {}
            for record in records:
                modified = datetime.strptime(record["LastModifiedDate"], SF_TIME)
                cursor = max(cursor or modified, modified)
                signals += _account_record(ctx.store, opts, record, mapping, people, changed)
            tally.stored += ctx.store.add_signals(signals)
            tally.accounts += ctx.store.upsert_accounts(changed.values())
            if cursor is not None:
                save_cursor(ctx.store.engine, KIND_SF, name, cursor.isoformat(), ctx.now)
    finally:
        crm.close()
    return cursor.isoformat() if cursor else ""


def _account_record(
    store: Store,
    opts: SalesforceAccountsOptions,
    record: Mapping[str, Any],
    mapping: Mapping[str, str],
    people: Mapping[str, str],
    changed: dict[str, Account],
) -> list[Signal]:
    """The record's signals; its account goes into `changed` when new or different."""
    sf_id, stamp = record["Id"], record["LastModifiedDate"]
    values = _account_values(record, mapping, people)
    if "id" not in values:
        log.debug("Salesforce Account %s holds no account id (%s): skipped", sf_id, mapping["id"])
        return []
    before = changed.get(values["id"]) or store.account(values["id"])
    base = before.model_dump() if before else {str(k): v for k, v in opts.defaults.items()}
    crm_ids = dict(base.get("crm_ids") or {}) | {opts.connector: sf_id}
    try:
        account = Account.model_validate(base | values | {"crm_ids": crm_ids})
    except ValidationError as exc:
        log.warning("Salesforce Account %s skipped: %s", sf_id, _short(exc))
        return []
    if account != before:
        changed[account.id] = account
    when = datetime.strptime(stamp, SF_TIME)
    key = f"sf:Account:{sf_id}:{stamp}"
    out: list[Signal | None] = []
    contract = {
        f: getattr(account, f)
        for f in CONTRACT
        if f in values and (before is None or getattr(before, f) != getattr(account, f))
    }
    if contract:
        payload = {f: v.isoformat() if isinstance(v, date) else v for f, v in contract.items()}
        out.append(_signal(SignalType.contract_update, account.id, when, payload, key))
    churn = _field(record, opts.churn_field) if opts.churn_field else None
    if isinstance(churn, int | float | str) and churn != "":
        try:
            probability = float(churn) / (100 if opts.churn_percent else 1)
        except ValueError:
            probability = -1.0  # refused by the payload's bounds, and logged
        payload = {"probability": probability, "model": opts.churn_model}
        out.append(_signal(SignalType.churn_prediction, account.id, when, payload, key))
    return [s for s in out if s is not None]


def _parse_cursor(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise ConfigError(f"the saved Salesforce cursor is not a time: {text!r}") from exc


# -- Zendesk -------------------------------------------------------------------------------
PRIORITIES = ("low", "normal", "high", "urgent")
# external_id prefixes of the tickets csautomation creates (their idempotency keys)
OURS = ("playbook:", "escalation:")


class ZendeskTicketsOptions(_Options):
    connector: str = "zendesk"
    escalation_tags: list[str] = Field(default_factory=lambda: ["escalated"])
    first_days: int = Field(default=30, ge=1, le=3650)  # how far back the first export starts
    ours: list[str] = Field(default_factory=lambda: list(OURS))  # external_id prefixes: skipped
    # per run, the rest on the next: Zendesk allows 10 export requests a minute
    max_pages: int = Field(default=10, ge=1, le=1000)


def _zendesk_tickets(opts: ZendeskTicketsOptions, ctx: PullContext, tally: _Tally) -> str:
    name = opts.cursor_name()
    built, _config = _connector(ctx, opts.connector, ZendeskConfig)
    desk: ZendeskTicketing = built
    cursor = load_cursor(ctx.store.engine, KIND_ZD, name)
    orgs: dict[int, str | None] = {}  # organization id -> external_id, for this run
    try:
        for _ in range(opts.max_pages):
            if cursor is None:
                page = desk.export_tickets(start=ctx.now - timedelta(days=opts.first_days))
            else:
                page = desk.export_tickets(cursor=cursor)
            tally.fetched += len(page.tickets)
            unknown = {t.organization_id for t in page.tickets if t.organization_id}
            unknown -= orgs.keys()
            if unknown:
                found = desk.organization_external_ids(unknown)
                orgs |= {i: found.get(i) for i in unknown}
            signals = [s for t in page.tickets for s in _ticket_signals(t, orgs, opts)]
            tally.stored += ctx.store.add_signals(signals)
            if page.after_cursor:
                cursor = page.after_cursor
                save_cursor(ctx.store.engine, KIND_ZD, name, cursor, ctx.now)
            if page.end_of_stream or not page.tickets or not page.after_cursor:
                break
    finally:
        desk.close()
    return cursor or ""


def _ticket_signals(
    ticket: ExportedTicket, orgs: Mapping[int, str | None], opts: ZendeskTicketsOptions
) -> list[Signal]:
    if ticket.status == "deleted" or (ticket.external_id or "").startswith(tuple(opts.ours)):
        return []
    account = orgs.get(ticket.organization_id) if ticket.organization_id else None
    if not account:
        log.debug("Zendesk ticket %s has no organization with an external_id", ticket.id)
        return []
    when = datetime.fromisoformat(ticket.updated_at).astimezone(UTC)
    # one ticket is one support_ticket (and at most one support_escalation), however often
    # it is updated: the facts count tickets, not edits
    key = f"zd:ticket:{ticket.id}"
    priority = ticket.priority if ticket.priority in PRIORITIES else "normal"
    out = [
        _signal(
            SignalType.support_ticket,
            account,
            when,
            {"priority": priority, "subject": ticket.subject},
            key,
        )
    ]
    tags = [t for t in opts.escalation_tags if t in ticket.tags]
    if priority == "urgent" or tags:
        reason = f"tagged {', '.join(tags)}" if tags else "urgent priority"
        out.append(_signal(SignalType.support_escalation, account, when, {"reason": reason}, key))
    return [s for s in out if s is not None]


# -- file drop -----------------------------------------------------------------------------
DROP_SUFFIXES = (".jsonl", ".csv")


class UsageFileDropOptions(_Options):
    """Files are read once they have not changed for `settle` seconds. Writers that can
    should write `.name.tmp` and rename it into place: names starting with '.' are never
    read. Files move to done/, or to rejected/ with `<file>.report.txt` when rows were
    rejected (the valid rows are stored; drop the fixed file again)."""

    folder: Path
    settle: float = Field(default=5, ge=0, le=86_400)


def _usage_file_drop(opts: UsageFileDropOptions, ctx: PullContext, tally: _Tally) -> str:
    name = opts.cursor_name()
    if not opts.folder.is_dir():
        raise ConfigError(f"usage_file_drop: {opts.folder} is not a folder")
    cursor = load_cursor(ctx.store.engine, KIND_FILES, name) or ""
    for path in sorted(opts.folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in DROP_SUFFIXES:
            continue
        before = path.stat()
        if not path.is_file() or ctx.now.timestamp() - before.st_mtime < opts.settle:
            continue  # still being written, perhaps: the next run looks again
        try:
            report: ImportReport | str = import_file(ctx.store, path)
        except (UnicodeDecodeError, csv.Error) as exc:
            report = f"{path.name}: cannot be read: {exc}"
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            continue  # written to while we read it: read again next run (keys dedupe)
        if isinstance(report, ImportReport):
            tally.fetched += report.rows
            tally.stored += report.stored
        failed = isinstance(report, str) or bool(report.rejected)
        moved = _move(path, opts.folder / ("rejected" if failed else "done"), ctx.now)
        if failed:
            text = report if isinstance(report, str) else _report_text(report)
            moved.with_name(moved.name + ".report.txt").write_text(text, encoding="utf-8")
        cursor = f"{path.name} at {ctx.now.isoformat(timespec='seconds')}"
        save_cursor(ctx.store.engine, KIND_FILES, name, cursor, ctx.now)
    return cursor


def _move(path: Path, folder: Path, now: datetime) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    n = 0
    while target.exists():  # the same name dropped again: keep both
        n += 1
        target = folder / f"{path.stem}.{now:%Y%m%dT%H%M%SZ}{f'-{n}' if n > 1 else ''}{path.suffix}"
    os.replace(path, target)
    return target


def _report_text(report: ImportReport) -> str:
    lines = [
        f"{Path(report.file).name}: {report.rows} rows, {report.accepted} accepted "
        f"({report.stored} new, {report.duplicates} already stored), "
        f"{report.rejected_rows} rejected",
        "The accepted rows are stored. Fix the rejected rows and drop the file again: rows "
        "already stored are recognised and not stored twice.",
        "",
        *(str(r) for r in report.rejected),
    ]
    return "\n".join(lines) + "\n"


# -- running -------------------------------------------------------------------------------
KIND_SF, KIND_ZD, KIND_FILES = "salesforce_accounts", "zendesk_tickets", "usage_file_drop"
PULL_KINDS: dict[str, type[BaseModel]] = {
    KIND_SF: SalesforceAccountsOptions,
    KIND_ZD: ZendeskTicketsOptions,
    KIND_FILES: UsageFileDropOptions,
}


@dataclass
class _Tally:
    fetched: int = 0
    stored: int = 0
    accounts: int = 0


def run_pull(kind: str, options: Mapping[str, Any], ctx: PullContext) -> PullResult:
    """Run one pull to its end (or its page limit). Raises ConfigError or ConnectorError."""
    if kind not in PULL_KINDS:
        raise ConfigError(f"unknown pull kind '{kind}' (known: {', '.join(PULL_KINDS)})")
    try:
        opts = PULL_KINDS[kind].model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(f"pull {kind}: {_short(exc)}") from exc
    assert isinstance(opts, _Options)
    create_pull_tables(ctx.store.engine)
    tally = _Tally()
    try:
        if isinstance(opts, SalesforceAccountsOptions):
            cursor = _salesforce_accounts(opts, ctx, tally)
        elif isinstance(opts, ZendeskTicketsOptions):
            cursor = _zendesk_tickets(opts, ctx, tally)
        else:
            assert isinstance(opts, UsageFileDropOptions)
            cursor = _usage_file_drop(opts, ctx, tally)
    except ConnectorError as exc:
        log.warning(
            "pull %s %s failed after fetching %d, storing %d signals and %d accounts: %s",
            kind, opts.cursor_name(), tally.fetched, tally.stored, tally.accounts, exc,
        )  # fmt: skip
        raise
    log.info(
        "pull %s %s: fetched %d, stored %d new signals, %d accounts; cursor %s",
        kind, opts.cursor_name(), tally.fetched, tally.stored, tally.accounts, cursor or "-",
    )  # fmt: skip
    return PullResult(kind, tally.fetched, tally.stored, tally.accounts, cursor)


def _connector(ctx: PullContext, name: str, config_type: type[C]) -> tuple[Any, C]:
    """(the vendor connector, its config), guarded (breaker and rate limit) as in the
    worker, with credentials from the environment."""
    if not ctx.connectors_path.is_dir():
        raise ConfigError(f"{ctx.connectors_path} is not a folder of connectors")
    config = load_connectors([ctx.connectors_path]).get(name)
    if config is None or not config.enabled:
        raise ConfigError(f"no enabled connector '{name}' in {ctx.connectors_path}")
    if not isinstance(config, config_type):
        [wanted] = get_args(config_type.model_fields["type"].annotation)
        raise ConfigError(f"connector '{name}' is of type {config.type}, not {wanted}")
    return build_connectors({name: config}, ctx.store).by_name[name], config


def _signal(
    kind: SignalType, account: str, when: datetime, payload: dict[str, Any], key: str
) -> Signal | None:
    try:
        return Signal(
            type=kind,
            account_id=account,
            occurred_at=when,
            payload=payload,
            idempotency_key=f"{key}:{kind.value}",
        )
    except ValidationError as exc:
        log.warning("%s for %s (%s) skipped: %s", kind.value, account, key, _short(exc))
        return None


def _short(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
