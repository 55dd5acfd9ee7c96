"""The usage file drop: files dropped in a folder, imported as by `csauto ingest`, then
moved to done/ or rejected/."""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

from pydantic import Field

from csautomation.errors import ConfigError
from csautomation.ingest.batch import ImportReport, import_file
from csautomation.ingest.pulls.common import PullContext, PullOptions, Tally
from csautomation.store.pull_tables import load_cursor, save_cursor

KIND_FILES = "usage_file_drop"
DROP_SUFFIXES = (".jsonl", ".csv")


class UsageFileDropOptions(PullOptions):
    """Files are read once they have not changed for `settle` seconds. Writers that can
    should write `.name.tmp` and rename it into place: names starting with '.' are never
    read. Files move to done/, or to rejected/ with `<file>.report.txt` when rows were
    rejected (the valid rows are stored; drop the fixed file again)."""

    folder: Path
    settle: float = Field(default=5, ge=0, le=86_400)


def pull_usage_file_drop(opts: UsageFileDropOptions, ctx: PullContext, tally: Tally) -> str:
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
            report: ImportReport | str = import_file(ctx.store, path, now=ctx.now)
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
