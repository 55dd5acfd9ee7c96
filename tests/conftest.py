"""The database each test gets: `db_url`.

By default `db_url` is a fresh SQLite file. With `--db postgres` (or CSAUTO_TEST_DB=postgres)
it is a clean PostgreSQL database on CSAUTO_TEST_PG (default
postgresql+psycopg://postgres@127.0.0.1:5432), and only the tests that ask for `db_url` run:
the others never touch the database and would prove nothing new. Tests about SQLite itself
are marked `sqlite_only`: the PostgreSQL run leaves them out.

Each session gets a database of its own (csauto_test_<pid>), created when first asked for and
dropped at the end, so that sessions run at the same time never meet. Between tests every
table is emptied (TRUNCATE ... RESTART IDENTITY, measured about twice as fast as dropping and
recreating the schema); the schema stays at head, so `Store.create_all()` costs one read.
A test that changes the schema (tests/store/test_migrations.py) asks for `empty_db_url`.
The database's own time zone is UTC+14, so that a timestamp read back in the server's zone
rather than UTC shows.

Without a server answering, `--db postgres` skips its tests, except on CI (CI=true), where
the run stops with an error: CI must never pass by skipping them.

`store` is an empty store over `db_url`; a module that needs data overrides it with a
fixture of the same name that seeds it (tests/factories.py builds the data).

Temporal: one time-skipping test server for the session (`env`), started when a test first
asks for it, and for each test a `client` of a namespace of its own; what a test leaves
there is ended and the shared clock proved free after it (tests/shared_temporal.py). Async
tests and fixtures all run on the session's event loop, the one the server's client lives
on.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from csautomation.store.repo import Store
from factories import fake_vendors, new_store
from fakes.vendors import Vendors
from shared_temporal import own_namespace, shared_test_server

# pytest-xdist gives its workers COLUMNS=80, and rich fixes a console's width from COLUMNS
# when the console is made (the commands' module-level ones, at import): the tests that set
# COLUMNS for a command would get 80 columns on a worker instead of their own
os.environ.pop("COLUMNS", None)

PG_SERVER = os.environ.get("CSAUTO_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
ON_CI = os.environ.get("CI", "").lower() in {"true", "1", "yes"}
SERVER_TIMEZONE = "Pacific/Kiritimati"  # UTC+14


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgres"),
        default=None,
        help="the database of `db_url` (default: CSAUTO_TEST_DB, else sqlite); with "
        "postgres, only the tests that use `db_url` run",
    )


def backend(config: pytest.Config) -> str:
    chosen = config.getoption("--db") or os.environ.get("CSAUTO_TEST_DB") or "sqlite"
    if chosen not in {"sqlite", "postgres"}:
        raise pytest.UsageError(f"CSAUTO_TEST_DB: expected sqlite or postgres, got {chosen!r}")
    return str(chosen)


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {backend(config)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if backend(config) != "postgres":
        return
    keep, drop = [], []
    for item in items:
        uses_db = "db_url" in getattr(item, "fixturenames", ())
        (keep if uses_db and item.get_closest_marker("sqlite_only") is None else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if keep and (reason := _unreachable()):
        if ON_CI:
            raise pytest.UsageError(f"{reason} (CI=true: PostgreSQL's tests must run)")
        skip = pytest.mark.skip(reason=f"{reason}; CI=true makes this an error")
        for item in keep:
            item.add_marker(skip)


def _unreachable() -> str:
    """Why the PostgreSQL server cannot be used, or "" when it answers."""
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0]
        return f"no PostgreSQL server answers at {make_url(PG_SERVER)!r}: {first}"
    finally:
        admin.dispose()
    return ""


def _admin() -> Engine:
    return create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This session's own PostgreSQL database (its URL), dropped at the end."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    name = f"csauto_test_{os.getpid()}{'_' + worker if worker else ''}"
    admin = _admin()
    with admin.connect() as conn:
        for stale in _stale_databases(conn):
            conn.execute(text(f'drop database if exists "{stale}" with (force)'))
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
        conn.execute(text(f'create database "{name}"'))
        # a server far from UTC: a timestamp read back in the server's zone shows up as the
        # wrong day, hour or order (the store's sessions set UTC for themselves)
        conn.execute(text(f"alter database \"{name}\" set timezone to '{SERVER_TIMEZONE}'"))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def _stale_databases(conn: Connection) -> list[str]:
    """The databases of earlier sessions on this machine whose process is gone (killed
    before it could drop them)."""
    if make_url(PG_SERVER).host not in {"127.0.0.1", "localhost", None}:
        return []  # another machine's sessions: their processes cannot be looked up here
    stale = []
    for (name,) in conn.execute(
        text("select datname from pg_database where datname like 'csauto\\_test\\_%'")
    ):
        pid = name.removeprefix("csauto_test_").split("_")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append(name)
    return stale


def _empty_tables(url: str) -> None:
    """Every table of the database emptied, its ids restarted; the schema is kept. A
    connection an earlier test left open in a transaction would block TRUNCATE: after a
    short wait, the session's connections are closed and TRUNCATE runs again."""
    engine = create_engine(url)
    try:
        for attempt in (1, 2):
            try:
                with engine.begin() as conn:
                    conn.execute(text("set local lock_timeout = '5s'"))
                    # the ledger's trigger refuses TRUNCATE: off for this transaction
                    conn.execute(text("set local session_replication_role = replica"))
                    names = conn.execute(
                        text(
                            "select tablename from pg_tables where schemaname = 'public' "
                            "and tablename <> 'alembic_version'"
                        )
                    ).scalars()
                    quoted = ", ".join(f'"{n}"' for n in names)
                    if quoted:
                        conn.execute(text(f"truncate {quoted} restart identity cascade"))
                return
            except OperationalError:
                if attempt == 2:
                    raise
                with engine.begin() as conn:
                    conn.execute(
                        text(
                            "select pg_terminate_backend(pid) from pg_stat_activity "
                            "where datname = current_database() and pid <> pg_backend_pid()"
                        )
                    )
    finally:
        engine.dispose()


def _drop_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("drop schema public cascade"))
            conn.execute(text("create schema public"))
    finally:
        engine.dispose()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for this test: a SQLite file, or (--db postgres) this session's
    PostgreSQL database with every table emptied."""
    if backend(request.config) != "postgres" or request.node.get_closest_marker("sqlite_only"):
        return f"sqlite:///{tmp_path}/csauto.db"
    url: str = request.getfixturevalue("pg_database")
    _empty_tables(url)
    return url


@pytest.fixture
def empty_db_url(db_url: str) -> Iterator[str]:
    """`db_url` without any table, not even Alembic's: for tests of the schema itself."""
    if not db_url.startswith("postgresql"):
        yield db_url
        return
    _drop_schema(db_url)
    yield db_url
    _drop_schema(db_url)  # whatever state the test left; the next test's create_all builds


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An empty store over `db_url`, the schema at head."""
    s = new_store(db_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def vendors() -> Iterator[Vendors]:
    """The fake vendors over HTTPS, each knowing ACME and BETA."""
    with fake_vendors(("ACME", "BETA")) as v:
        yield v


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """The session's Temporal test server, skipping time while a test waits on a result or
    sleeps (`env.sleep`). Tests take a `client`; this is for its clock."""
    async with shared_test_server() as e:
        yield e


@pytest_asyncio.fixture
async def client(env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """A client of this test's own namespace on `env`; what it leaves running is
    terminated after the test (tests/shared_temporal.py)."""
    async with own_namespace(env) as c:
        yield c
