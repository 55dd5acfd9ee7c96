"""Batch import of signals from CSV or JSONL: every row validated, every problem reported
with its line number and field, every valid row stored with its idempotency key, so a file
imported twice changes nothing.

JSONL: one signal object per line (`type`, `account_id`, `occurred_at`, `payload`, and an
optional `idempotency_key`). CSV: a header row with the same columns; the payload is either
a `payload` column holding a JSON object, or one `payload.<field>` column per field (empty
cells are left out: the field is absent). A row without a key gets the signal's
deterministic one (type, account, time and payload), so the same event imported again is
recognised.

Every row is held to the intake's rules (facts/canonical.py, README "What is accepted"),
the time window included, and stored in canonical types: a CSV cell is text, and a
`payload.<field>` cell of a number field is read by the number rule (`payload.logins` = 5
stores the integer 5; "5.5" there is refused, "many" too), of a date field as YYYY-MM-DD.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from csautomation.facts.model import Signal
from csautomation.ingest.validate import check, read_json
from csautomation.store.repo import Store

FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class Rejected:
    line: int
    field: str  # dotted path, e.g. payload.logins; empty for the whole row
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field + ': ' if self.field else ''}{self.message}"


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    accepted: int = 0  # valid rows
    stored: int = 0  # of those, new to the store
    rejected: list[Rejected] = field(default_factory=list)
    # accepted signals whose account is not known yet, by account: held (the pipeline keeps
    # them in the quarantine) until the account arrives, then released
    unknown: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.accepted - self.stored

    @property
    def rejected_rows(self) -> int:
        return len({r.line for r in self.rejected})


def detect_format(path: Path, given: str | None = None) -> str:
    fmt = (given or path.suffix.lstrip(".")).lower()
    if fmt == "ndjson":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise ValueError(
            f"{path}: cannot tell the format from '{path.suffix}'; use --format csv or jsonl"
        )
    return fmt


def rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """(line number, the row as a dict, or why it could not be read)."""
    with path.open(encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                data, why = read_json(text)
                if why:
                    yield number, Rejected(number, "", why)
                    continue
                if not isinstance(data, dict):
                    yield number, Rejected(number, "", "expected a JSON object")
                    continue
                yield number, data
            return
        reader = csv.DictReader(handle)
        for record in reader:
            number = reader.line_num
            if None in record:  # more cells than the header has columns
                yield number, Rejected(number, "", "more cells than the header has columns")
                continue
            yield number, _from_csv(number, record)


def _from_csv(number: int, record: dict[str, str]) -> dict[str, Any] | Rejected:
    out: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for column, cell in record.items():
        value = (cell or "").strip()
        if column.startswith("payload."):
            if value:
                payload[column.removeprefix("payload.")] = value
        elif column == "payload":
            if value:
                parsed, why = read_json(value)
                if why:
                    return Rejected(number, "payload", f"not a JSON object: {why}")
                if not isinstance(parsed, dict):
                    return Rejected(number, "payload", "not a JSON object")
                payload.update(parsed)
        elif value:
            out[column] = value
    out["payload"] = payload
    return out


def validate(
    number: int, data: dict[str, Any], now: datetime | None = None
) -> Signal | list[Rejected]:
    checked = check(data, now=now)
    if isinstance(checked, Signal):
        return checked
    return [Rejected(number, e.field, e.message) for e in checked]


def import_file(
    store: Store,
    path: Path,
    fmt: str | None = None,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Validate every row and store the valid ones in batches (one transaction each).
    `now`: the clock the time window is read against (default: the system's)."""
    report = ImportReport(str(path))
    pending: list[Signal] = []

    def flush() -> None:
        if pending:
            report.stored += store.add_signals(pending)
            known = store.known_accounts({s.account_id for s in pending})
            for s in pending:
                if s.account_id not in known:
                    report.unknown[s.account_id] = report.unknown.get(s.account_id, 0) + 1
            pending.clear()

    for number, row in rows(path, detect_format(path, fmt)):
        report.rows += 1
        if isinstance(row, Rejected):
            report.rejected.append(row)
        else:
            checked = validate(number, row, now)
            if isinstance(checked, Signal):
                report.accepted += 1
                pending.append(checked)
                if len(pending) >= batch:
                    flush()
            else:
                report.rejected.extend(checked)
        if progress is not None:
            progress(number)
    flush()
    return report
