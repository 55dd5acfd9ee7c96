"""Declarative mappings shared by the HubSpot companies and SQL pulls: a vendor's flat
record (HubSpot properties, a warehouse row) onto our Account fields or a signal, the
`contract_update` a changed renewal date, ARR or seat count makes, and holding a record
that cannot become either in the quarantine with its reason.

A held record is kept under the source `held_source(kind, name)` (`hubspot_companies:hubspot`),
which `csauto sources status` counts as that pull's rows held. A record read again (a cursor
compared with >=, a crash between a page and its cursor) is not held twice: its
fingerprint is the source, the key and the record itself."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select

from csautomation.facts.model import Account, Signal, SignalType
from csautomation.store.engine import table
from csautomation.store.quarantine import Held, quarantine
from csautomation.store.repo import Store
from csautomation.store.tables import QuarantineRow

AccountField = Literal[
    "id", "name", "tier", "segment", "region", "arr", "seats", "owner", "manager",
    "renewal_date", "customer_since", "tenant",
]  # fmt: skip
CONTRACT = ("renewal_date", "arr", "seats")


def held_source(kind: str, name: str) -> str:
    """The quarantine's `source` for what a pull holds: `<kind>:<cursor name>`."""
    return f"{kind}:{name}"[:64]


def plain(value: Any) -> Any:
    """A value as JSON holds it (dates as ISO text, decimals as numbers)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def account_values(
    record: Mapping[str, Any], mapping: Mapping[str, str], people: Mapping[str, str]
) -> dict[str, Any]:
    """Our field -> the record's value under the mapped name; empty values left out, owner
    and manager through `people` (vendor id -> person id; an unknown id kept as it is)."""
    out: dict[str, Any] = {}
    for ours, theirs in mapping.items():
        value = plain(record.get(theirs))
        if value is None or value == "":
            continue
        if ours in ("renewal_date", "customer_since") and isinstance(value, str):
            value = value[:10]  # a date, or the day of a datetime
        elif ours in ("owner", "manager", "id"):
            value = str(value)
            value = people.get(value, value) if ours != "id" else value
        elif ours == "tier":
            value = re.sub(r"[\s-]+", "_", str(value).strip().lower())  # Mid-Market
        out[ours] = value
    return out


@dataclass
class Batch:
    """One page's accounts, signals and held records, stored in that order."""

    accounts: dict[str, Account] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


def account_record(
    store: Store,
    batch: Batch,
    values: Mapping[str, Any],
    defaults: Mapping[Any, Any],
    crm: tuple[str, str] | None,
    when: datetime,
    key: str,
) -> str:
    """Merge `values` over the stored account (else `defaults`) into `batch`, with a
    `contract_update` when a contract field changed. Returns why it cannot, else ""."""
    if "id" not in values:
        return "id: the record holds no account id"
    before = batch.accounts.get(values["id"]) or store.account(values["id"])
    base = before.model_dump() if before else {str(k): v for k, v in defaults.items()}
    crm_ids = dict(base.get("crm_ids") or {})
    if crm is not None:
        crm_ids[crm[0]] = crm[1]
    try:
        account = Account.model_validate(base | dict(values) | {"crm_ids": crm_ids})
    except ValidationError as exc:
        return problems(exc)
    if account != before:
        batch.accounts[account.id] = account
    contract = {
        f: getattr(account, f)
        for f in CONTRACT
        if f in values and (before is None or getattr(before, f) != getattr(account, f))
    }
    if contract:
        payload = {f: plain(v) for f, v in contract.items()}
        fields = {
            "type": SignalType.contract_update,
            "account_id": account.id,
            "occurred_at": when,
            "payload": payload,
            "idempotency_key": f"{key}:{SignalType.contract_update.value}",
        }
        batch.signals.append(Signal.model_validate(fields))
    return ""


def problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


def held_item(source: str, record: Mapping[str, Any], key: str, reason: str) -> Held:
    """A record kept with its reason: each `field: message` of the reason one error."""
    errors = []
    for part in reason.split("; "):
        name, sep, message = part.partition(": ")
        errors.append(
            {"field": name, "message": message} if sep else {"field": "record", "message": part}
        )
    raw = json.dumps({k: plain(v) for k, v in record.items()}, sort_keys=True, default=str)
    return Held(source, raw, errors, signal_key=key)


def hold_new(store: Store, items: Sequence[Held]) -> int:
    """Quarantine the items not held already (a record read again is not a new
    delivery); returns how many were new."""
    if not items:
        return 0
    t = table(QuarantineRow)
    keys = [i.key() for i in items]
    with store.engine.connect() as conn:
        known = set(
            conn.execute(select(t.c.fingerprint).where(t.c.fingerprint.in_(keys))).scalars()
        )
    fresh = list({i.key(): i for i in items if i.key() not in known}.values())
    quarantine(store, fresh)
    return len(fresh)
