"""`csauto db`: the database's schema revision, and migrations up and down (Alembic, driven
from code: see csautomation.store.migrations). Every URL printed has its password masked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError

from csautomation import bootstrap
from csautomation.cli.common import DataDirOpt, DbOpt, out
from csautomation.errors import NoStoreError

app = typer.Typer(
    help="The database schema: its revision, and migrations up and down.", no_args_is_help=True
)


@contextmanager
def _engine(
    database_url: str | None, data_dir: Path | None = None, read_only: bool = False
) -> Iterator[Engine]:
    """The store's engine for --database-url (default CSAUTO_DATABASE_URL); problems are
    reported as one line and exit code 1. `read_only`: for looking, which creates nothing
    (a SQLite file that is not there is "no store at ...")."""
    from csautomation.store import migrate
    from csautomation.store.engine import sqlite_path
    from csautomation.store.repo import Store

    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    url = settings.database_url
    path = sqlite_path(url)
    if read_only and path is not None and not Path(path).is_file():
        raise NoStoreError(path, bootstrap.where_else(settings))
    try:
        engine = Store(url, read_only=read_only).engine
    except ArgumentError:
        raise migrate.SchemaError(
            f"not a database URL: {migrate.masked(url)} (for example "
            "postgresql+psycopg://user@host/db or sqlite:///.csauto/csauto.db)"
        ) from None
    except ImportError as exc:
        hint = " (pip install 'csautomation[postgres]')" if "postgres" in url else ""
        raise migrate.SchemaError(
            f"{migrate.masked(url)} needs the driver {exc.name}, which is not installed{hint}"
        ) from None
    try:
        yield engine
    finally:
        engine.dispose()


def _describe(revisions: tuple[str, ...] | None) -> str:
    if revisions is None:
        return "no revision (an empty database, or one made before migrations)"
    return ", ".join(revisions) if revisions else "base (no table of ours)"


def _move(direction: str, to: str, database_url: str | None) -> None:
    """Upgrade or downgrade to revision `to`, and say from where to where."""
    from csautomation.store import migrate

    with _engine(database_url) as engine:
        before = migrate.current(engine)
        getattr(migrate, direction)(engine, to)
        after = migrate.current(engine)
        out.print(
            f"{migrate.masked(engine.url)}: {_describe(before)} -> {_describe(after)}",
            markup=False,
            soft_wrap=True,
        )


@app.command("upgrade")
def upgrade(
    to: Annotated[str, typer.Option("--to", help="a revision; default: head")] = "head",
    database_url: DbOpt = None,
) -> None:
    """Migrate the database up to the newest revision (or --to REV)."""
    _move("upgrade", to, database_url)


@app.command("downgrade")
def downgrade(
    to: Annotated[str, typer.Argument(help='a revision, or "base" to drop every table')],
    database_url: DbOpt = None,
) -> None:
    """Migrate the database down to revision TO (its rows in dropped tables are lost)."""
    _move("downgrade", to, database_url)


@app.command("current")
def current(database_url: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """The database's revision, and whether it is the code's newest (read only: a
    database that is not there is not created)."""
    from csautomation.store import migrate

    with _engine(database_url, data_dir, read_only=True) as engine:
        found = migrate.current(engine)
        head = migrate.head()
        if found == (head,):
            state = "(head: up to date)"
        elif found is None:
            state = f"(the code's head is {head}: `csauto db upgrade`, or any csauto process)"
        else:
            migrate.check_known(engine, found)  # ahead: an error, exit code 1
            state = f"(behind the code's head {head}: `csauto db upgrade`)"
        out.print(
            f"{migrate.masked(engine.url)}: {_describe(found)} {state}",
            markup=False,
            soft_wrap=True,
        )


@app.command("history")
def history() -> None:
    """The code's revisions, newest first."""
    from csautomation.store import migrate

    table = Table()
    for column in ("revision", "after", "what"):
        table.add_column(column)
    for r in migrate.history():
        what = r.message.splitlines()[0] if r.message else ""
        table.add_row(r.revision + (" (head)" if r.is_head else ""), r.down_revision or "", what)
    out.print(table)


@app.command("revision")
def revision(
    message: Annotated[str, typer.Option("-m", "--message", help="what the revision does")],
    rev_id: Annotated[
        str | None, typer.Option("--rev-id", help="default: the next number and the message")
    ] = None,
) -> None:
    """For developers: write the next revision, autogenerated from the models, into
    migrations/versions/ (review it before committing)."""
    from csautomation.store import migrate

    path = migrate.new_revision(message, rev_id)
    out.print(f"wrote {path}: review it (see csautomation.store.migrations)", markup=False)
