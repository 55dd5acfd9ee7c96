"""Accounts in: a file (`csauto accounts import`) or a batch over HTTP (`PUT /v1/accounts`),
each account validated and upserted by its id, so importing the same accounts again
changes nothing. Signals held for an account that was not known yet are released when it
arrives.

JSONL: one account object per line. CSV: a header row of account fields (`id`, `name`,
`tier`, ... as in docs/data.md); `tags` holds tags separated by `;`, and one
`crm_ids.<connector>` column per connector id. Empty cells are left out, so an optional
field (renewal date, ARR, owner, ...) may be missing or blank.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from csautomation.facts.model import Account
from csautomation.ingest.batch import Rejected, detect_format, rows
from csautomation.ingest.intake import reprocess
from csautomation.store.quarantine import held
from csautomation.store.repo import Store

__all__ = ["AccountsReport", "check_account", "import_accounts", "release_held", "upsert"]

MAX_BATCH = 1000


@dataclass
class AccountsReport:
    file: str
    rows: int = 0
    accepted: int = 0  # valid rows
    created: int = 0  # of those, new accounts
    updated: int = 0  # changed accounts
    released: int = 0  # signals held for these accounts, now released to evaluation
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.accepted - self.created - self.updated

    @property
    def rejected_rows(self) -> int:
        return len({r.line for r in self.rejected})

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "released_signals": self.released,
            "errors": [
                {"index": r.line, "field": r.field, "message": r.message} for r in self.rejected
            ],
        }


def check_account(data: Any) -> Account | list[tuple[str, str]]:
    """The account, or every (field path, message)."""
    if not isinstance(data, dict):
        return [("", "expected a JSON object (an account)")]
    try:
        return Account.model_validate(data)
    except ValidationError as exc:
        return [
            (".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors(include_url=False)
        ]


def account_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """(line number, the row as a dict, or why it could not be read)."""
    if fmt == "jsonl":
        yield from rows(path, fmt)
        return
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            number = reader.line_num
            if None in record:  # more cells than the header has columns
                yield number, Rejected(number, "", "more cells than the header has columns")
                continue
            yield number, _from_csv(record)


def _from_csv(record: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    crm_ids: dict[str, str] = {}
    for column, cell in record.items():
        value = (cell or "").strip()
        if not value:
            continue
        if column.startswith("crm_ids."):
            crm_ids[column.removeprefix("crm_ids.")] = value
        elif column == "tags":
            out["tags"] = [t.strip() for t in value.split(";") if t.strip()]
        else:
            out[column] = value
    if crm_ids:
        out["crm_ids"] = crm_ids
    return out


def upsert(store: Store, accounts: Sequence[Account]) -> tuple[int, int]:
    """Store the accounts by id: (created, updated); an account stored as it is already
    counts as neither. The last of two rows with the same id wins."""
    latest = {a.id: a for a in accounts}
    before = store.accounts(latest)
    changed = [a for a in latest.values() if before.get(a.id) != a]
    if changed:
        store.upsert_accounts(changed)
    created = sum(1 for a in changed if a.id not in before)
    return created, len(changed) - created


def release_held(store: Store, account_ids: Iterable[str], by: str) -> int:
    """Re-process the open quarantined signals that were held because their account was
    not known, for these accounts. Returns how many were released."""
    wanted = set(account_ids)
    released = 0
    for row in held(store, "open", limit=1_000_000):
        if row.id is None or not any(
            e.get("field") == "account_id" and "unknown account" in e.get("message", "")
            for e in row.errors
        ):
            continue
        try:
            account = json.loads(row.raw).get("account_id")
        except (json.JSONDecodeError, AttributeError):
            continue
        if account in wanted:
            done = reprocess(store, row.id, by)
            released += bool(done and done.ok)
    return released


def import_accounts(
    store: Store,
    path: Path,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = MAX_BATCH,
) -> AccountsReport:
    """Validate every row, upsert the valid accounts in batches, then release the signals
    held for them."""
    report = AccountsReport(str(path))
    pending: list[Account] = []
    seen: set[str] = set()

    def flush() -> None:
        created, updated = upsert(store, pending)
        report.created += created
        report.updated += updated
        pending.clear()

    for number, row in account_rows(path, detect_format(path, fmt)):
        report.rows += 1
        checked = row if isinstance(row, Rejected) else check_account(row)
        if isinstance(checked, Rejected):
            report.rejected.append(checked)
        elif isinstance(checked, Account):
            report.accepted += 1
            pending.append(checked)
            seen.add(checked.id)
            if len(pending) >= batch:
                flush()
        else:
            report.rejected.extend(Rejected(number, f, m) for f, m in checked)
        if progress is not None:
            progress(number)
    flush()
    report.released = release_held(store, seen, f"accounts import {path.name}")
    return report
