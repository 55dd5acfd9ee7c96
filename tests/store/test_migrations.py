"""Schema migrations on the session's database (SQLite, and PostgreSQL with --db postgres):
the migrations build exactly the models' schema, go down and up again, adopt a database made
before them without losing a row, are driven by `csauto db`, and a database migrated by a
newer release stops the process."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import SQLModel
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.model import Signal
from csautomation.scheduling.scheduler import stored_jobs
from csautomation.store import migrate
from csautomation.store.engine import make_engine
from csautomation.store.repo import Store, local_tasks
from factories import account

ROOT = Path(__file__).parents[2]
runner = CliRunner()


def differences(engine: Engine) -> list[Any]:
    """What autogenerate would write: the models against the database."""
    options = migrate.configure_options()
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_name": options["include_name"], "compare_type": True},
        )
        return list(compare_metadata(context, options["target_metadata"]))


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def baseline_tables() -> list[str]:
    module = migrate._script().get_revision(migrate.BASELINE).module
    return list(module.TABLES)


@pytest.fixture
def engine(empty_db_url: str) -> Any:
    e = Store(empty_db_url).engine
    yield e
    e.dispose()


def test_upgrade_from_empty_builds_exactly_the_models(engine: Engine) -> None:
    """A model changed without a revision fails here: `csauto db revision -m ...` writes it
    (see csautomation.store.migrations)."""
    migrate.upgrade(engine)
    assert migrate.current(engine) == (migrate.head(),)
    assert differences(engine) == []


def test_create_all_on_an_empty_database_creates_and_stamps_head(engine: Engine) -> None:
    store = Store(engine.url.render_as_string(hide_password=False))
    store.create_all()
    assert migrate.current(engine) == (migrate.head(),)
    assert differences(engine) == []
    store.create_all()  # at head: nothing to do
    store.engine.dispose()


def test_down_to_base_and_up_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    built = tables(engine)
    assert set(baseline_tables()) <= built
    stored_jobs(engine)  # APScheduler makes its job store, as a scheduler does
    assert "apscheduler_jobs" in tables(engine)

    migrate.downgrade(engine, "base")
    assert migrate.current(engine) == ()
    assert tables(engine) == {"alembic_version"}

    migrate.upgrade(engine)
    assert migrate.current(engine) == (migrate.head(),)
    assert tables(engine) == built

    migrate.downgrade(engine, "base")  # and each revision up, down and up again, in order
    for revision in reversed(migrate.history()):
        migrate.upgrade(engine, revision.revision)
        migrate.downgrade(engine, revision.down_revision or "base")
        migrate.upgrade(engine, revision.revision)
    assert migrate.current(engine) == (migrate.head(),)
    assert tables(engine) == built


def test_a_database_made_before_migrations_keeps_its_rows(engine: Engine) -> None:
    """As csautomation made it before Alembic: `SQLModel.metadata.create_all` of the tables
    it knew, the scheduler's and the pulls' tables not yet made (they were made lazily), an
    index added later missing, and rows in it."""
    eager = [t for t in baseline_tables() if not t.startswith(("scheduler_", "pull_"))]
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[t] for t in eager])
    with engine.begin() as conn:
        conn.execute(text("drop index ix_signals_pending"))
    old = Store(engine.url.render_as_string(hide_password=False))
    old.upsert_accounts(account(id=i, name=f"{i.title()} Corp", seats=20) for i in ("ACME", "BETA"))
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    for day in range(1, 4):
        old.add_signal(
            Signal(
                type="usage_daily",
                account_id="ACME",
                occurred_at=at.replace(day=day),
                payload={"logins": 10 * day, "active_users": day},
            )
        )
    assert old.record_firing("usage-drop", "v1", "ACME", 7, "high", at, {"why": "fell"})

    old.create_all()

    assert migrate.current(engine) == (migrate.head(),)
    assert set(baseline_tables()) <= tables(engine)
    with engine.connect() as conn:
        indexes = {i["name"] for i in inspect(conn).get_indexes("signals")}
    assert "ix_signals_pending" in indexes
    assert old.known_accounts(["ACME", "BETA", "GAMMA"]) == {"ACME", "BETA"}
    assert [s.payload["logins"] for s in old.signals_for("ACME")] == [10, 20, 30]
    assert old.last_fired("usage-drop", "ACME") == at
    assert old.signals_version("ACME") == (3, 3)
    assert local_tasks(old) == []
    old.engine.dispose()


def _migrations_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The code's migrations, copied: a test may add revisions to the copy."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS", copy)
    migrate._script.cache_clear()
    return copy


BROKEN = """\"\"\"broken: a table, a column, then a statement that fails\"\"\"

import sqlalchemy as sa
from alembic import op

revision = "9000_broken"
down_revision = {head!r}


def upgrade() -> None:
    op.create_table("first_thing", sa.Column("id", sa.Integer, primary_key=True))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("extra", sa.String(), nullable=True))
    op.execute("select * from no_such_table")


def downgrade() -> None:
    pass
"""


def test_a_failed_migration_leaves_nothing_behind(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(engine)
    head = migrate.head()
    before = differences(engine)
    copy = _migrations_copy(tmp_path, monkeypatch)
    try:
        (copy / "versions" / "9000_broken.py").write_text(BROKEN.format(head=head))
        with pytest.raises(migrate.SchemaError, match="failed and was rolled back"):
            migrate.upgrade(engine)
        assert migrate.current(engine) == (head,)
        assert "first_thing" not in tables(engine)
        assert differences(engine) == before
    finally:
        migrate._script.cache_clear()


def test_processes_starting_together_migrate_once(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    errors: list[BaseException] = []

    def start() -> None:
        store = Store(url)
        try:
            store.create_all()
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)
        finally:
            store.engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert migrate.current(engine) == (migrate.head(),)


def _ahead(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999_from_the_future'"))


def test_a_database_ahead_of_the_code_is_refused_and_left_alone(engine: Engine) -> None:
    _ahead(engine)
    store = Store(engine.url.render_as_string(hide_password=False))
    with pytest.raises(migrate.SchemaError, match="9999_from_the_future") as caught:
        store.create_all()
    assert "newer release" in str(caught.value)
    with pytest.raises(migrate.SchemaError, match="9999_from_the_future"):
        migrate.upgrade(engine)
    assert migrate.current(engine) == ("9999_from_the_future",)
    store.engine.dispose()


def test_a_process_refuses_to_start_on_a_database_ahead_of_the_code(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ahead(engine)
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("completion_sync: {enabled: false}\n")
    monkeypatch.chdir(ROOT)
    url = engine.url.render_as_string(hide_password=False)
    result = runner.invoke(
        app, ["scheduler", "run", "--schedules", str(schedules), "--database-url", url]
    )
    assert result.exit_code == 1, result.output
    assert "9999_from_the_future" in result.output and "newer release" in result.output
    assert "Traceback" not in result.output


def _with_password(url: str) -> str:
    """The URL with a password (PostgreSQL's trust authentication ignores it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password="s3cret-pw").render_as_string(hide_password=False)


def db(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["db", *args], terminal_width=200)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "s3cret-pw" not in result.output
    return result.exit_code, result.output


def test_the_db_commands_end_to_end(empty_db_url: str) -> None:
    url = _with_password(empty_db_url)
    given = ["--database-url", url]
    head = migrate.head()

    code, output = db("current", *given)
    if url.startswith("sqlite"):  # looking creates no file (issue 20): there is none yet
        assert code == 1 and "no store at" in output
        assert not Path(url.removeprefix("sqlite:///")).exists()
    else:
        assert code == 0 and "no revision" in output
    code, output = db("upgrade", "--to", migrate.BASELINE, *given)
    assert code == 0 and f"-> {migrate.BASELINE}" in output
    code, output = db("upgrade", *given)
    assert code == 0 and output.rstrip().endswith(head)
    code, output = db("current", *given)
    assert code == 0 and f"{head} (head: up to date)" in output
    if "s3cret-pw" in url:
        assert ":***@" in output

    code, output = db("history")
    assert code == 0 and f"{head} (head)" in output and migrate.BASELINE in output

    code, output = db("downgrade", "base", *given)
    assert code == 0 and output.rstrip().endswith("base (no table of ours)")
    code, output = db("current", *given)
    assert code == 0 and "behind the code's head" in output

    code, output = db("upgrade", "--to", "nope", *given)
    assert code == 1 and "Can't locate revision identified by 'nope'" in output

    engine = make_engine(url)
    _ahead(engine)
    engine.dispose()
    code, output = db("current", *given)
    assert code == 1 and "9999_from_the_future" in output
    code, output = db("upgrade", *given)
    assert code == 1 and "newer release" in output


def test_db_errors_are_one_line_with_the_password_masked() -> None:
    code, output = db(
        "current", "--database-url", "postgresql+psycopg://csauto:s3cret-pw@127.0.0.1:1/x"
    )
    assert code == 1
    assert output.startswith("error database postgresql+psycopg://csauto:***@127.0.0.1:1/x: ")
    code, output = db("upgrade", "--database-url", "not a url")
    assert code == 1 and "not a database URL" in output


def test_a_new_revision_is_written_after_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`csauto db revision`, on a copy of the migrations: numbered after the newest, its
    down_revision the head."""
    copy = _migrations_copy(tmp_path, monkeypatch)
    try:
        head = migrate.head()
        number = int(head[:4]) + 1
        code, output = db("revision", "-m", "Add a thing!")
        assert code == 0, output
        written = copy / "versions" / f"{number:04d}_add_a_thing.py"
        assert written.is_file(), output
        source = written.read_text()
        assert f'down_revision = "{head}"' in source
        assert migrate.head() == f"{number:04d}_add_a_thing"
    finally:
        migrate._script.cache_clear()
