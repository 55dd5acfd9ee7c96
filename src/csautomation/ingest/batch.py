"""Batch import of signals from CSV or JSONL: every row validated, every problem reported
with its line number and field, every valid row stored with its idempotency key, so a file
imported twice changes nothing.

JSONL: one signal object per line (`type`, `account_id`, `occurred_at`, `payload`, and an
optional `idempotency_key`). CSV: a header row with the same columns; the payload is either
a `payload` column holding a JSON object, or one `payload.<field>` column per field (empty
cells are left out). A row without a key gets the signal's deterministic one (type,
account, time and payload), so the same event imported again is recognised.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csautomation.facts.model import Signal
from csautomation.ingest.validate import check
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
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield number, Rejected(number, "", f"not JSON: {exc.msg} (column {exc.colno})")
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
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError as exc:
                    return Rejected(number, "payload", f"not a JSON object: {exc.msg}")
                if not isinstance(parsed, dict):
                    return Rejected(number, "payload", "not a JSON object")
                payload.update(parsed)
        elif value:
            out[column] = value
    out["payload"] = payload
    return out


def validate(number: int, data: dict[str, Any]) -> Signal | list[Rejected]:
    checked = check(data)
    if isinstance(checked, Signal):
        return checked
    return [Rejected(number, e.field, e.message) for e in checked]


def import_file(
    store: Store,
    path: Path,
    fmt: str | None = None,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate every row and store the valid ones in batches (one transaction each)."""
    report = ImportReport(str(path))
    pending: list[Signal] = []

    def flush() -> None:
        if pending:
            report.stored += store.add_signals(pending)
            pending.clear()

    for number, row in rows(path, detect_format(path, fmt)):
        report.rows += 1
        if isinstance(row, Rejected):
            report.rejected.append(row)
        else:
            checked = validate(number, row)
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
