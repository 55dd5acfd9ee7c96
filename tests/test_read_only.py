"""Issue 20: looking never changes anything. Every command that only reads, run where there
is no store (the usual slip: the default data folder, while the demo's store is in
.csauto/demo/), stops with "no store at ...; did you mean --data-dir .csauto/demo?" and
exit code 1, and leaves no file behind; on a database without our tables, or at an older
revision, it creates no table and runs no migration. The test fails when a command is
neither walked here nor listed with why not, so a new command has to say which it is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.store import migrate
from csautomation.store.engine import make_engine
from csautomation.store.repo import Store
from factories import account, new_store
from test_hostile_store import leaf_commands

ROOT = Path(__file__).parents[1]
HISTORY = ROOT / "tests" / "workflows" / "histories" / "usage-recovery.json"
runner = CliRunner()

# command -> its arguments: each only reads the store (browse: the Temporal data)
READ_ONLY: dict[str, list[str]] = {
    "accounts list": [],
    "accounts show": ["ACME"],
    "audit": ["--since", "30d"],
    "audit report": ["--account", "ACME", "--html", "acme.html"],
    "audit verify": [],
    "browse": [],
    "connectors status": [],
    "db current": [],
    "dlq list": [],
    "dlq show": ["1"],
    "escalations list": [],
    "escalations show": ["escalation:ACME"],
    "quarantine list": [],
    "quarantine show": ["1"],
    "rules replay": ["1"],
    "runs list": [],
    "scheduler jobs": [],
    "sources status": [],
    "tasks list": [],
    "tasks show": ["1"],
}

OTHERS = {
    # they write, so they make the store (or migrate it) as they always did
    "accounts import": "imports accounts",
    "ingest": "stores signals",
    "signals add": "stores a signal",
    "dlq discard": "closes a dead letter",
    "dlq retry": "re-drives an action and records it",
    "quarantine retry": "stores the corrected signal",
    "quarantine discard": "closes an item",
    "tasks complete": "marks a task done",
    "people revoke": "ends a person's sessions (their generation in the store)",
    "scheduler sweep": "records the firings of a sweep",
    "scheduler run": "runs the scheduler, which records its runs",
    "connectors sync": "syncs task completions into the store",
    "db upgrade": "migrates, on purpose",
    "db downgrade": "migrates, on purpose",
    "demo": "builds its own data folder",
    "dev": "runs everything, writing",
    "serve": "takes signals in",
    "worker": "runs activities, which write",
    "pipeline": "evaluates and dispatches, writing",
    "escalations ack": "signals a workflow through Temporal (no store)",
    "escalations reassign": "signals a workflow through Temporal (no store)",
    "escalations resolve": "signals a workflow through Temporal (no store)",
    "escalations snooze": "signals a workflow through Temporal (no store)",
    # they read no store, or one only where there is one
    "escalations simulate": "reads an account from the store only where there is one",
    "replay": "reads Temporal or a file; its ledger notes only where a store is (below)",
    "history export": "reads Temporal",
    "connectors validate": "reads connector files",
    "connectors check": "calls the vendors",
    "db history": "the code's migrations",
    "db revision": "writes a migration into the source tree",
    "escalations schema": "a JSON Schema",
    "escalations validate": "reads the matrix and people files",
    "people hash-password": "prompts for a password",
    "playbooks schema": "a JSON Schema",
    "playbooks validate": "reads playbook files",
    "rules backtest": "reads data files",
    "rules diff": "reads rule files",
    "rules evaluate": "reads data files",
    "rules explain": "reads data files",
    "rules facts": "the fact catalogue",
    "rules schema": "a JSON Schema",
    "rules test": "reads rule files",
    "rules validate": "reads rule files",
    "sample generate": "writes the sample data set",
    "schema accounts": "a JSON Schema",
    "schema signals": "a JSON Schema",
}

# the shipped configuration wherever the command runs; no database or data folder given
ENV: dict[str, str | None] = {
    "CSAUTO_DATABASE_URL": None,
    "CSAUTO_DATA_DIR": None,
    "CSAUTO_RULES_PATH": str(ROOT / "rules"),
    "CSAUTO_PLAYBOOKS_PATH": str(ROOT / "workflows"),
    "CSAUTO_CONNECTORS_PATH": str(ROOT / "connectors"),
    "CSAUTO_ESCALATION_MATRIX_PATH": str(ROOT / "escalation_matrix.yaml"),
    "CSAUTO_PEOPLE_PATH": str(ROOT / "people.yaml"),
    "CSAUTO_SCHEDULES_PATH": str(ROOT / "schedules.yaml"),
    "COLUMNS": "300",
}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_every_command_is_walked_here_or_listed_with_why_not() -> None:
    commands = set(leaf_commands())
    assert commands == READ_ONLY.keys() | OTHERS.keys(), (
        commands - READ_ONLY.keys() - OTHERS.keys(),
        (READ_ONLY.keys() | OTHERS.keys()) - commands,
    )
    assert not READ_ONLY.keys() & OTHERS.keys()


@pytest.fixture
def demo_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder whose .csauto/ holds no store, and a demo's data folder .csauto/demo/ with
    a store and Temporal data; the commands run in it."""
    demo = tmp_path / ".csauto" / "demo"
    new_store(f"sqlite:///{demo}/csauto.db", [account()]).engine.dispose()
    with sqlite3.connect(demo / "temporal.db") as conn:
        conn.execute("create table t (x)")
    (tmp_path / ".csauto" / "sample").mkdir()  # a folder without a store is not offered
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.sqlite_only  # SQLite files in a folder; the PostgreSQL cases are below
@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_command_that_only_reads_makes_no_store(demo_elsewhere: Path, command: str) -> None:
    before = files(demo_elsewhere)
    result = runner.invoke(app, [*command.split(), *READ_ONLY[command]], env=ENV)
    assert result.exit_code == 1, result.output
    what = "Temporal data" if command == "browse" else "store"
    name = "temporal.db" if command == "browse" else "csauto.db"
    said = f"error no {what} at .csauto/{name}; did you mean --data-dir .csauto/demo?"
    assert said in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert files(demo_elsewhere) == before  # no database, no folder, no journal


@pytest.mark.sqlite_only
def test_the_data_folder_named_is_read_and_left_as_it_was(demo_elsewhere: Path) -> None:
    demo = demo_elsewhere / ".csauto" / "demo"
    before = (demo / "csauto.db").read_bytes()
    for command in ("accounts list", "audit", "db current", "scheduler jobs", "runs list"):
        args = [*command.split(), "--data-dir", ".csauto/demo"]
        result = runner.invoke(app, args, env=ENV)
        assert result.exit_code == 0, (command, result.output)
    assert "ACME" in runner.invoke(app, ["accounts", "list", "--data-dir", str(demo)]).output
    assert (demo / "csauto.db").read_bytes() == before
    assert not (demo_elsewhere / ".csauto" / "csauto.db").exists()


@pytest.mark.sqlite_only
def test_an_empty_store_in_the_default_folder_says_where_the_data_is(
    demo_elsewhere: Path,
) -> None:
    """A store an earlier release made by looking in the wrong folder: read, with a word."""
    new_store(f"sqlite:///{demo_elsewhere}/.csauto/csauto.db").engine.dispose()
    result = runner.invoke(app, ["accounts", "list"], env=ENV)
    assert result.exit_code == 0, result.output
    said = "the store at .csauto/csauto.db is empty; did you mean --data-dir .csauto/demo?"
    assert said in " ".join(result.output.split())
    assert "0 account(s)" in result.output


def test_a_database_without_our_tables_gets_none(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an existing database with no table of ours; on SQLite a missing file.
    A database that does not exist at all is named the same way."""
    monkeypatch.chdir(tmp_path)  # no .csauto/ here: the message says how to name a store
    for command in ("audit", "accounts list", "runs list", "scheduler jobs"):
        result = runner.invoke(app, [*command.split(), "--database-url", empty_db_url], env=ENV)
        assert result.exit_code == 1, result.output
        assert "no store at" in result.output and "nothing was created" in result.output
    engine = make_engine(empty_db_url)
    try:
        if empty_db_url.startswith("postgresql"):
            assert inspect(engine).get_table_names() == []
            missing = empty_db_url.rsplit("/", 1)[0] + "/csauto_no_such_database"
            result = runner.invoke(app, ["audit", "--database-url", missing], env=ENV)
            assert result.exit_code == 1 and "no store at" in result.output, result.output
            assert "csauto_no_such_database" in result.output
        else:
            assert not Path(empty_db_url.removeprefix("sqlite:///")).exists()
    finally:
        engine.dispose()


def test_a_store_opened_to_look_refuses_to_write(store: Store, db_url: str) -> None:
    store.upsert_accounts([account()])
    looking = Store.existing(db_url)
    try:
        assert [a.id for a in looking.list_accounts()] == ["ACME"]
        with pytest.raises(DBAPIError, match="read-only|readonly"):
            looking.upsert_accounts([account(id="BETA")])
    finally:
        looking.engine.dispose()
    assert [a.id for a in store.list_accounts()] == ["ACME"]


def test_a_store_at_an_older_revision_is_not_migrated_by_looking(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, migrate.BASELINE)
        result = runner.invoke(app, ["audit", "--database-url", empty_db_url])
        assert result.exit_code == 1, result.output
        assert "csauto db upgrade" in result.output and migrate.BASELINE in result.output
        assert migrate.current(engine) == (migrate.BASELINE,)
    finally:
        engine.dispose()


@pytest.mark.sqlite_only
def test_an_offline_replay_takes_no_ledger_notes_from_a_store_that_is_not_there(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "csauto.db"
    result = runner.invoke(
        app, ["replay", "--file", str(HISTORY), "--database-url", f"sqlite:///{missing}"]
    )
    # the verdict is replay's business (tests/audit): here, only that looking made nothing
    assert result.exit_code in (0, 1) and "replay: " in result.output, result.output
    assert "ledger:" not in result.output and "Traceback" not in result.output
    assert not missing.parent.exists()
