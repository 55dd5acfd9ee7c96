"""`csauto sources status`: every data source (the pulls of schedules.yaml, the push
sources of sources.yaml) with whether it is on, its last run, the rows it brought in and
those held, its lag and its last error (csautomation.scheduling.source_status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from csautomation import bootstrap
from csautomation.cli.common import DataDirOpt, DbOpt, out, plain, read_store

app = typer.Typer(help="The data sources: pulls and push sources, and how they stand.")

SourcesOpt = Annotated[
    Path | None,
    typer.Option("--sources", envvar="CSAUTO_SOURCES_PATH", help="default: sources.yaml"),
]
SchedulesOpt = Annotated[
    Path | None,
    typer.Option("--schedules", envvar="CSAUTO_SCHEDULES_PATH", help="default: schedules.yaml"),
]


@app.command("status")
def status(
    schedules: SchedulesOpt = None,
    sources: SourcesOpt = None,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Each source: enabled, last run, rows brought in, rows held (see `csauto quarantine
    list --source`), lag since its last good run, last error."""
    from csautomation.scheduling.source_status import push_specs, source_statuses

    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    config = bootstrap.load_schedules(settings, schedules)
    push = push_specs(sources or settings.sources_path)
    store = read_store(database_url, data_dir)
    now = datetime.now(UTC)
    try:
        statuses = source_statuses(store, config, push, now)
    finally:
        store.engine.dispose()
    table = Table()
    for column in (
        "source", "kind", "enabled", "last run (UTC)", "outcome", "brought in", "held",
        "lag", "last error",
    ):  # fmt: skip
        table.add_column(column)
    for s in statuses:
        error = f"{when(s.errored_at)}: {s.last_error}" if s.last_error else "-"
        table.add_row(
            s.name,
            s.kind,
            "yes" if s.enabled else "no",
            when(s.last_run),
            s.outcome,
            str(s.brought),
            str(s.held),
            ago(s.lag),
            plain(error[:200]),
        )
    if not statuses:
        out.print("no sources: no pulls in schedules.yaml and no push sources in sources.yaml")
        return
    out.print(table)


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "never"


def ago(lag: timedelta | None) -> str:
    """3m, 2h 5m, 4d 1h; "never" when the source never brought anything."""
    if lag is None:
        return "never"
    seconds = max(0, int(lag.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"
