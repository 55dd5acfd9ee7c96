"""The Salesforce Accounts pull: our Account rows from the Accounts changed since the
cursor, `contract_update` and `churn_prediction` signals from their fields."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints, ValidationError
from simple_salesforce.format import format_soql

from csautomation.connectors.config import SalesforceConfig
from csautomation.errors import ConfigError
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.ingest.accounts import release_held
from csautomation.ingest.pulls.common import (
    PullContext,
    PullOptions,
    Tally,
    new_signal,
    short_errors,
    vendor_connector,
)
from csautomation.store.pull_tables import load_cursor, save_cursor
from csautomation.store.repo import Store

if TYPE_CHECKING:
    from csautomation.connectors.salesforce import SalesforceCrm

log = logging.getLogger(__name__)
KIND_SF = "salesforce_accounts"
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


class SalesforceAccountsOptions(PullOptions):
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


def pull_salesforce_accounts(
    opts: SalesforceAccountsOptions, ctx: PullContext, tally: Tally
) -> str:
    name = opts.cursor_name()
    built, config = vendor_connector(ctx, opts.connector, SalesforceConfig)
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
            # signals held for an account this pull brings for the first time go on
            release_held(ctx.store, changed, f"pull {name}")
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
        log.warning("Salesforce Account %s skipped: %s", sf_id, short_errors(exc))
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
        out.append(new_signal(SignalType.contract_update, account.id, when, payload, key))
    churn = _field(record, opts.churn_field) if opts.churn_field else None
    if isinstance(churn, int | float | str) and churn != "":
        try:
            probability = float(churn) / (100 if opts.churn_percent else 1)
        except ValueError:
            probability = -1.0  # refused by the payload's bounds, and logged
        payload = {"probability": probability, "model": opts.churn_model}
        out.append(new_signal(SignalType.churn_prediction, account.id, when, payload, key))
    return [s for s in out if s is not None]


def _parse_cursor(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise ConfigError(f"the saved Salesforce cursor is not a time: {text!r}") from exc
