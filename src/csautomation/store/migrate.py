"""Schema migrations, driven from code: Alembic's `Config` is built here with the package's
`migrations/` folder as its script location, so an installed wheel migrates without an
alembic.ini. What `Store.create_all()` does with each kind of database, and how to add a
revision, is told in `csautomation.store.migrations`.

Every change of schema runs on one connection, in one transaction (a failed migration
leaves nothing behind, on SQLite too, whose DDL is transactional), holding a lock that other
processes starting at the same time wait for: a PostgreSQL advisory lock, SQLite's write
lock (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from csautomation.errors import CsAutomationError, NoStoreError
from csautomation.store.engine import make_engine, sqlite_path

__all__ = [
    "BASELINE",
    "MIGRATIONS",
    "Revision",
    "SchemaError",
    "alembic_config",
    "check_known",
    "check_readable",
    "configure_options",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "history",
    "masked",
    "new_revision",
    "target_metadata",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
VERSION_TABLE = "alembic_version"
# APScheduler's job store: APScheduler creates and owns it (store/scheduler_tables.py)
UNMANAGED = frozenset({"apscheduler_jobs"})
# pg_advisory_xact_lock's key: "csauto" in ASCII
_LOCK_KEY = 0x63736175746F


class SchemaError(CsAutomationError):
    """The database's schema cannot be used or changed: a revision this code does not know
    (the database was migrated by a newer release), an unknown target revision, or a
    migration that failed. Messages show the database's URL with its password masked."""


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def masked(url: object) -> str:
    """The URL with its password replaced by ***, safe to print and log."""
    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: show none of it
        return "(an unreadable database URL)"


def target_metadata() -> MetaData:
    """The metadata of every table the code uses, whichever modules the process imported."""
    import csautomation.store.facts_snapshots
    import csautomation.store.identities
    import csautomation.store.pull_tables
    import csautomation.store.scheduler_tables
    import csautomation.store.signins
    import csautomation.store.source_tallies
    import csautomation.store.tables
    import csautomation.store.usage_tallies  # noqa: F401

    return SQLModel.metadata


def _include_name(name: str | None, type_: str, _parents: Any) -> bool:
    return not (type_ == "table" and name in UNMANAGED)


def _render_item(type_: str, obj: Any, _autogen: AutogenContext) -> str | bool:
    # SQLModel's AutoString is a VARCHAR: rendered as sa.String, revisions need no sqlmodel
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def configure_options() -> dict[str, Any]:
    """The options of `context.configure` for env.py and for comparing a database."""
    return {
        "target_metadata": target_metadata(),
        "include_name": _include_name,
        "render_item": _render_item,
        "compare_type": True,
        # SQLite alters tables by copying them: autogenerate writes batch operations, which
        # run on both databases
        "render_as_batch": True,
    }


def alembic_config(url: str = "", connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code. With `connection`, env.py migrates on it
    (and leaves the commit to the caller); else it connects to `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(rev)s")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The code's newest revision."""
    heads = _script().get_heads()
    if len(heads) != 1:
        listed = ", ".join(heads)
        raise SchemaError(f"the migrations have {len(heads)} heads ({listed}): merge them")
    return heads[0]


def history() -> list[Revision]:
    """The code's revisions, newest first."""
    heads = set(_script().get_heads())
    return [
        Revision(
            r.revision,
            r.down_revision
            if isinstance(r.down_revision, str | None)
            else ",".join(r.down_revision),
            (r.doc or "").strip(),
            r.revision in heads,
        )
        for r in _script().walk_revisions()
    ]


def _current(conn: Connection) -> tuple[str, ...] | None:
    """The database's revisions; None without a version table."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    # read directly: a MigrationContext would log two lines at every process start
    found = conn.execute(text(f"select version_num from {VERSION_TABLE}")).scalars()
    return tuple(sorted(found))


def current(engine: Engine) -> tuple[str, ...] | None:
    """The database's revisions: () when it has a version table but no revision (it was
    downgraded to base), None when it has none (empty, or made before migrations)."""
    with _connected(engine) as conn:
        return _current(conn)


def check_known(engine: Engine, revisions: tuple[str, ...]) -> None:
    """`SchemaError` when the database is at a revision this code does not know."""
    for rev in revisions:
        try:
            _script().get_revision(rev)
        except CommandError:
            raise SchemaError(
                f"the database {masked(engine.url)} is at revision {rev}, which this "
                f"csautomation does not know (its newest is {head()}): a newer release "
                "migrated it. Run that release, or downgrade the database with it "
                f"(`csauto db downgrade {head()}`) before running this one."
            ) from None


@contextmanager
def _connected(engine: Engine) -> Iterator[Connection]:
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise SchemaError(f"database {masked(engine.url)}: {_reason(exc, engine)}") from exc


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed on success."""
    with _connected(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("select pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()


def _reason(exc: BaseException, engine: Engine) -> str:
    """The first line of a driver's message, without the URL's password."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    reason = lines[0] if lines else type(orig).__name__
    password = engine.url.password
    return reason.replace(str(password), "***") if password else reason


def _run(engine: Engine, action: str, fn: Any, *args: Any) -> None:
    with _locked(engine) as conn:
        revisions = _current(conn)
        if action != "downgrade":
            check_known(engine, revisions or ())
        try:
            fn(alembic_config(connection=conn), *args)
        except CommandError as exc:
            raise SchemaError(f"{action}: {exc}") from None
        except SQLAlchemyError as exc:
            raise SchemaError(  # one transaction: nothing of it was kept, on either database
                f"{action} of {masked(engine.url)} failed and was rolled back: "
                f"{_reason(exc, engine)}"
            ) from exc


def upgrade(engine: Engine, to: str = "head") -> None:
    """Migrate up to revision `to`. A database without a version table (empty, or made
    before migrations) starts from the baseline, which creates only the tables and indexes
    it lacks."""
    _run(engine, "upgrade", command.upgrade, to)


def downgrade(engine: Engine, to: str) -> None:
    """Migrate down to revision `to` ("base": no table of ours left)."""
    _run(engine, "downgrade", command.downgrade, to)


def check_readable(engine: Engine) -> None:
    """For a command that only reads: the database holds the code's schema as it is, or an
    error says why not, and nothing is changed (no table made, no migration run).

    - no database (a PostgreSQL database that does not exist), or none of our tables in
      it: `NoStoreError`;
    - at the code's head: nothing;
    - made before migrations, or at an older revision: `SchemaError` naming
      `csauto db upgrade` (a command that only reads does not migrate);
    - at a revision the code does not know: `SchemaError`, as for every command.
    """
    try:
        with engine.connect() as conn:
            found = _current(conn)
            ours = set(inspect(conn).get_table_names()) & set(target_metadata().tables)
    except SQLAlchemyError as exc:
        reason = _reason(exc, engine)
        if _MISSING_DATABASE.search(reason):
            raise NoStoreError(masked(engine.url)) from exc
        raise SchemaError(f"database {masked(engine.url)}: {reason}") from exc
    if found is None and not ours:  # a SQLite file is named as a path, as it was given
        raise NoStoreError(sqlite_path(str(engine.url)) or masked(engine.url))
    check_known(engine, found or ())
    newest = head()
    if found != (newest,):
        at = f"revision {', '.join(found)}" if found else "no revision (made before migrations)"
        raise SchemaError(
            f"the database {masked(engine.url)} is at {at}, older than this csautomation's "
            f"{newest}: migrate it with `csauto db upgrade` (or any command that writes); "
            "a command that only reads does not change it"
        )


# PostgreSQL's "FATAL: database "x" does not exist" (psycopg gives it no SQLSTATE)
_MISSING_DATABASE = re.compile(r'database ".*" does not exist')


# SQLite answers "database is locked" at once, without waiting out the busy timeout, where
# waiting could deadlock (a read transaction asking to write, a switch to WAL): four
# processes starting together on a new file met it once in a full test run (not in 30 runs
# of that test alone). Another process is migrating then: read the schema again shortly.
SQLITE_LOCKED_RETRY_SECONDS = 30.0


def ensure_schema(engine: Engine) -> None:
    """What `Store.create_all()` does: make the database's schema the code's head.

    - at head: nothing (read without taking the lock);
    - no version table and none of our tables: create the tables from the metadata and
      stamp head (fast: the tests' fresh databases);
    - behind, or our tables without a version table (made before migrations): upgrade;
    - at a revision the code does not know (ahead): `SchemaError`, and nothing changes.
    """
    deadline = time.monotonic() + SQLITE_LOCKED_RETRY_SECONDS
    pause = 0.05
    while True:
        try:
            return _ensure_schema(engine)
        except SchemaError as exc:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(exc)
            if not locked or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _ensure_schema(engine: Engine) -> None:
    newest = head()
    with _connected(engine) as conn:
        found = _current(conn)
    if found is not None:
        check_known(engine, found)
        if found == (newest,):
            return
    with _locked(engine) as conn:
        found = _current(conn)
        if found is None and not set(inspect(conn).get_table_names()) & set(
            target_metadata().tables
        ):
            target_metadata().create_all(conn)
            MigrationContext.configure(conn).stamp(_script(), "head")
            return
        if found == (newest,):  # another process got there first
            return
    upgrade(engine)


_SLUG = re.compile(r"[^a-z0-9]+")


def new_revision(message: str, rev_id: str | None = None) -> Path:
    """For developers: write the next revision into migrations/versions/, autogenerated by
    comparing the models with a scratch SQLite database migrated to head. Review it."""
    import tempfile

    if rev_id is None:
        numbers = [int(r.revision[:4]) for r in history() if r.revision[:4].isdigit()]
        number = max(numbers, default=0)
        slug = _SLUG.sub("_", message.lower()).strip("_")
        rev_id = f"{number + 1:04d}_{slug}"[:32]  # alembic_version holds 32 characters
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/scratch.db")
        try:
            upgrade(engine)
            with _locked(engine) as conn:
                script = command.revision(
                    alembic_config(connection=conn), message, autogenerate=True, rev_id=rev_id
                )
        finally:
            engine.dispose()
    _script.cache_clear()
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.exists():  # the project's style (autogenerate writes its own)
        for args in (["format"], ["check", "--fix", "--quiet"]):
            subprocess.run([str(ruff), *args, str(path)], check=False, capture_output=True)
    return path
