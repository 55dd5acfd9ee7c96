"""Taking signals in over HTTP: validate each item, store the good ones durably (group
commit), keep the bad ones in the quarantine with every field error, and re-process a
quarantined item once it is fixed.

Evaluation is off the request path through the signals table itself, which is the
evaluation outbox (`evaluated_at` empty until the pipeline has evaluated the row, in the
same transaction as the firings it produced). We chose that over a Temporal workflow per
batch: the acknowledgement then costs one local transaction, not a round trip to the
Temporal server and a history write per batch; the pipeline already groups pending
signals per account (one fact derivation however many arrived); and a crash anywhere
leaves rows that the next pass, in this process or another, simply evaluates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from csautomation import metrics
from csautomation.facts.model import Signal
from csautomation.ingest.sources import Caller
from csautomation.ingest.validate import FieldError, check, read_json
from csautomation.ingest.writer import SignalWriter
from csautomation.store.quarantine import (
    Held,
    get_held,
    note_errors,
    quarantine,
    release_signal,
    replace_signal,
    settle,
)
from csautomation.store.repo import Store
from csautomation.store.source_tallies import SourceTallies

MAX_BATCH = 1000


@dataclass(frozen=True)
class ItemError:
    index: int | None  # the item's position in a batch; None for the request as a whole
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass
class Outcome:
    """What happened to each item of one request."""

    stored: list[tuple[int, str]] = field(default_factory=list)  # (index, key) new
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (index, key) known
    errors: list[ItemError] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)  # quarantine row ids

    def to_json(self) -> dict[str, Any]:
        signals = [{"index": i, "idempotency_key": k, "status": "stored"} for i, k in self.stored]
        signals += [
            {"index": i, "idempotency_key": k, "status": "duplicate"} for i, k in self.duplicates
        ]
        body: dict[str, Any] = {
            "accepted": len(self.stored) + len(self.duplicates),
            "stored": len(self.stored),
            "duplicates": len(self.duplicates),
            "signals": sorted(signals, key=lambda s: s["index"]),
        }
        if self.errors:
            body["detail"] = "; ".join(
                (f"[{e.index}] " if e.index is not None else "")
                + (f"{e.field}: " if e.field else "")
                + e.message
                for e in self.errors[:20]
            )
            body["errors"] = [e.to_dict() for e in self.errors]
            body["quarantine_ids"] = self.quarantined
        return body


class AccountCache:
    """Which account ids exist, remembered once seen (accounts are not deleted)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.known: set[str] = set()

    async def unknown(self, ids: set[str]) -> set[str]:
        missing = ids - self.known
        if missing:
            self.known |= await asyncio.to_thread(self.store.known_accounts, missing)
        return ids - self.known


def items_of(data: Any) -> list[Any] | None:
    """The items of a request body: one signal object, `{"signals": [...]}`, or a list."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if set(data) == {"signals"} and isinstance(data["signals"], list):
            return list(data["signals"])
        return [data]
    return None


def _raw(item: Any) -> str:
    try:
        return json.dumps(item, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(item)


class Intake:
    def __init__(self, store: Store, writer: SignalWriter) -> None:
        self.store = store
        self.writer = writer
        self.accounts = AccountCache(store)
        self.tallies = SourceTallies(store.engine)  # for `csauto sources status`

    async def take(
        self, caller: Caller, items: Sequence[Any], header_key: str = "", clean: bool = False
    ) -> Outcome:
        """Check every item, store the good ones (committed before this returns), and
        quarantine the bad ones with their errors. `clean`: the items come from a JSON text
        that passed `validate.clean_json`."""
        out = Outcome()
        good: list[tuple[int, Signal]] = []
        bad: dict[int, list[FieldError]] = {}
        why: list[str] = []  # each bad item's reason, for the metrics
        for index, item in enumerate(items):
            if header_key and len(items) == 1 and isinstance(item, dict):
                item = {"idempotency_key": header_key, **item}
            checked = check(item, clean)
            if isinstance(checked, list):
                bad[index] = checked
                why.append("invalid")
            elif not caller.allows(checked.type):
                bad[index] = [
                    FieldError("type", f"source '{caller.name}' may not send {checked.type}")
                ]
                why.append("type_not_allowed")
            else:
                good.append((index, checked))
        missing = await self.accounts.unknown({s.account_id for _, s in good})
        if missing:
            for index, s in good:
                if s.account_id in missing:
                    bad[index] = [FieldError("account_id", f"unknown account '{s.account_id}'")]
                    why.append("unknown_account")
            good = [(i, s) for i, s in good if i not in bad]
        fresh = await self.writer.write([s for _, s in good])
        metrics.count_accepted(caller.name, (s.type.value for _, s in good))
        metrics.count_rejected(caller.name, why)
        for (index, s), new in zip(good, fresh, strict=True):
            (out.stored if new else out.duplicates).append((index, s.idempotency_key))
        self.tallies.note(caller.name, len(out.stored))
        if bad:
            held = [
                Held(caller.name, _raw(items[i]), [e.to_dict() for e in errors])
                for i, errors in sorted(bad.items())
            ]
            out.quarantined = await asyncio.to_thread(quarantine, self.store, held)
            out.errors = [
                ItemError(i, e.field, e.message)
                for i, errors in sorted(bad.items())
                for e in errors
            ]
        return out

    async def hold_unreadable(self, caller: Caller, raw: str, why: str) -> Outcome:
        """A body that is not JSON (or not signals) from a proven source: kept as it came."""
        out = Outcome(errors=[ItemError(None, "body", why)])
        metrics.count_rejected(caller.name, ["unreadable"])
        out.quarantined = await asyncio.to_thread(
            quarantine, self.store, [Held(caller.name, raw, [{"field": "body", "message": why}])]
        )
        return out


@dataclass(frozen=True)
class Reprocessed:
    row_id: int
    ok: bool
    key: str = ""  # the signal it became (or was released)
    errors: tuple[FieldError, ...] = ()
    already: str = ""  # the row's status when it was not open


def reprocess(store: Store, row_id: int, by: str, corrected: Any = None) -> Reprocessed | None:
    """Re-process one quarantined item: the corrected signal when given, else the item as
    it was kept. None when there is no such row. A stored signal held back for an unknown
    account goes back to evaluation once the account exists."""
    row = get_held(store, row_id)
    if row is None:
        return None
    if row.status != "open":
        return Reprocessed(row_id, False, row.result_key, already=row.status)
    if row.signal_key and corrected is None:
        account = _held_account(row.raw)
        if account and not store.known_accounts({account}):
            errors = (FieldError("account_id", f"unknown account '{account}'"),)
            return Reprocessed(row_id, False, errors=errors)
        if not release_signal(store, row.signal_key):
            return Reprocessed(row_id, False, errors=(FieldError("", "the signal is gone"),))
        settle(store, row_id, "reprocessed", by, row.signal_key)
        return Reprocessed(row_id, True, row.signal_key)
    if corrected is None:
        corrected, why = read_json(row.raw)
        if why:
            errors = (FieldError("body", f"still unreadable ({why}); send a corrected signal"),)
            return Reprocessed(row_id, False, errors=errors)
    if row.signal_key and isinstance(corrected, dict) and "idempotency_key" not in corrected:
        corrected = {**corrected, "idempotency_key": row.signal_key}
    checked = check(corrected)
    if isinstance(checked, Signal) and not store.known_accounts({checked.account_id}):
        checked = [FieldError("account_id", f"unknown account '{checked.account_id}'")]
    if isinstance(checked, list):
        note_errors(store, row_id, [e.to_dict() for e in checked])
        return Reprocessed(row_id, False, errors=tuple(checked))
    if row.signal_key:  # a stored signal held back: the correction takes its place
        return _replace_held(store, row_id, by, row.signal_key, checked)
    store.store_signals([checked])  # a duplicate key is fine: it is stored either way
    settle(store, row_id, "reprocessed", by, checked.idempotency_key)
    return Reprocessed(row_id, True, checked.idempotency_key)


def _replace_held(store: Store, row_id: int, by: str, key: str, signal: Signal) -> Reprocessed:
    if signal.idempotency_key != key:
        why = f"a correction takes the place of stored signal {key}: give that key or none"
        return Reprocessed(row_id, False, errors=(FieldError("idempotency_key", why),))
    if not replace_signal(store, key, signal):
        return Reprocessed(row_id, False, errors=(FieldError("", "the signal is gone"),))
    settle(store, row_id, "reprocessed", by, key)
    return Reprocessed(row_id, True, key)


def discard(store: Store, row_id: int, by: str) -> str | None:
    """Give up on an open item. Returns None when there is no such row, else the status
    it had: "open" (discarded now) or what it already was, and then nothing is done (a
    reprocessed item keeps its link to the signal it became, a discarded one its who)."""
    row = get_held(store, row_id)
    if row is None:
        return None
    if row.status == "open":
        settle(store, row_id, "discarded", by)
    return row.status


def _held_account(raw: str) -> str:
    data, _ = read_json(raw)
    value = data.get("account_id", "") if isinstance(data, dict) else ""
    return value if isinstance(value, str) else ""
