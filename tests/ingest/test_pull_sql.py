"""The warehouse pull (`sql_query`) on SQLite and on PostgreSQL (127.0.0.1:5432, database
`test`; skipped when it does not answer): bound parameters only, a read-only transaction,
bounded batches, rows mapped onto signals or accounts, malformed rows held with their
reason, a re-run that stores nothing twice, and a usage rule firing on what it brought.
A query without :cursor is refused when schedules.yaml is read, with file, line and field."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.errors import ConfigError, ConfigFileError
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account
from csautomation.ingest.pulls import PullContext, run_pull
from csautomation.ingest.pulls.sql import read_only_engine
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling.config import load_schedules
from csautomation.store.engine import table
from csautomation.store.quarantine import held
from csautomation.store.tables import RuleFiringRow, SignalRow
from factories import new_store
from playbook_support import PLAYBOOKS

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)
WAREHOUSE_PG = os.environ.get(
    "CSAUTO_TEST_WAREHOUSE", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_answers() -> str:
    engine = create_engine(WAREHOUSE_PG, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return ""
    except OperationalError as exc:
        return f"no PostgreSQL answers at {WAREHOUSE_PG}: {str(exc.orig).splitlines()[0]}"
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, str, str]]:
    """(a writable engine for the test, the URL the pull reads, the table's name)."""
    name = f"usage_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/warehouse.db"
    else:
        if why := _pg_answers():
            pytest.skip(why)
        url = WAREHOUSE_PG
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"create table {name} (account_id varchar(64), day date, logins integer, "
                "active_users integer, loaded_at varchar(40), seq integer)"
            )
        )
    try:
        yield engine, url, name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop table {name}"))
        engine.dispose()


def add_rows(engine: Engine, name: str, rows: list[tuple[Any, ...]]) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                f"insert into {name} (account_id, day, logins, active_users, loaded_at, seq) "
                "values (:a, :d, :l, :u, :t, :s)"
            ),
            [{"a": a, "d": d, "l": lg, "u": u, "t": t, "s": s} for a, d, lg, u, t, s in rows],
        )


def usage_options(name: str) -> dict[str, Any]:
    return {
        "name": "warehouse-usage",
        "url_env": "CSAUTO_WAREHOUSE_URL",
        "query": f"SELECT account_id, day, logins, active_users, seq FROM {name} "
        "WHERE seq > :cursor ORDER BY seq LIMIT :limit",
        "cursor_column": "seq",
        "start": 0,
        "into": "signals",
        "signal_type": "usage_daily",
        "columns": {
            "account_id": "account_id",
            "day": "occurred_at",
            "logins": "payload.logins",
            "active_users": "payload.active_users",
        },
        "batch_size": 4,
    }


def day(n: int) -> str:
    return (NOW - timedelta(days=n)).date().isoformat()


@pytest.fixture
def ctx(tmp_path: Path, db_url: str) -> PullContext:
    store = new_store(db_url, [Account(id="ACME", name="Acme", tier="enterprise")])
    return PullContext(store=store, connectors_path=tmp_path / "connectors", now=NOW)


def stored_keys(ctx: PullContext) -> list[str]:
    t = table(SignalRow)
    with ctx.store.engine.connect() as conn:
        return sorted(conn.execute(text(f"select idempotency_key from {t.name}")).scalars())


def test_rows_become_signals_in_bounded_batches_and_a_rerun_stores_nothing_twice(
    warehouse: tuple[Engine, str, str], ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, url, name = warehouse
    monkeypatch.setenv("CSAUTO_WAREHOUSE_URL", url)
    add_rows(engine, name, [("ACME", day(10 - i), 30 + i, 5, "", i + 1) for i in range(10)])
    result = run_pull("sql_query", usage_options(name), ctx)
    assert (result.fetched, result.stored, result.held, result.cursor) == (10, 10, 0, "int:10")
    assert f"sql:warehouse-usage:ACME:{day(1)}:usage_daily" in stored_keys(ctx)
    again = run_pull("sql_query", usage_options(name), ctx)
    assert (again.fetched, again.stored) == (0, 0)
    add_rows(engine, name, [("ACME", day(0), 3, 1, "", 11)])
    assert run_pull("sql_query", usage_options(name), ctx).stored == 1
    assert len(stored_keys(ctx)) == 11


def test_malformed_rows_are_held_with_their_reason_once(
    warehouse: tuple[Engine, str, str], ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, url, name = warehouse
    monkeypatch.setenv("CSAUTO_WAREHOUSE_URL", url)
    add_rows(
        engine,
        name,
        [
            ("ACME", day(3), 10, 2, "", 1),
            ("ACME", day(2), -4, 2, "", 2),
            (None, day(1), 5, 1, "", 3),
        ],
    )
    options = usage_options(name) | {"query": usage_options(name)["query"].replace(">", ">=")}
    result = run_pull("sql_query", options, ctx)
    assert (result.stored, result.held) == (1, 2)
    rows = held(ctx.store, "open", source="sql_query:warehouse-usage")
    fields = sorted(e["field"] for r in rows for e in r.errors)
    assert fields == ["account_id", "payload.logins"], fields
    # >= reads the last row again: it is not held twice
    assert run_pull("sql_query", options, ctx).held == 0
    assert len(held(ctx.store, "open", source="sql_query:warehouse-usage")) == 2


def test_the_pull_cannot_write_to_the_warehouse(warehouse: tuple[Engine, str, str]) -> None:
    _engine, url, name = warehouse
    reader = read_only_engine(url, 5)
    try:
        with pytest.raises(Exception, match="(?i)read-only|readonly"), reader.connect() as conn:
            if reader.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text(f"delete from {name}"))
    finally:
        reader.dispose()


def test_rows_become_accounts_with_a_contract_update(
    warehouse: tuple[Engine, str, str], ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, url, name = warehouse
    monkeypatch.setenv("CSAUTO_WAREHOUSE_URL", url)
    add_rows(engine, name, [("NEWCO", day(0), 250, 40, "2030-03-04T10:00:00", 1)])
    options = {
        "url_env": "CSAUTO_WAREHOUSE_URL",
        "query": f"SELECT account_id, active_users, logins, loaded_at FROM {name} "
        "WHERE loaded_at > :cursor ORDER BY loaded_at",
        "cursor_column": "loaded_at",
        "into": "accounts",
        "columns": {"account_id": "id", "active_users": "seats", "logins": "arr"},
        "defaults": {"name": "NewCo", "tier": "smb"},
    }
    result = run_pull("sql_query", options, ctx)
    assert (result.accounts, result.stored, result.cursor) == (1, 1, "text:2030-03-04T10:00:00")
    account = ctx.store.account("NEWCO")
    assert account is not None and (account.seats, account.arr) == (40, 250)


def test_usage_from_the_warehouse_fires_a_usage_rule(
    warehouse: tuple[Engine, str, str], ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, url, name = warehouse
    monkeypatch.setenv("CSAUTO_WAREHOUSE_URL", url)
    rows = [
        ("ACME", day(n), 60 if n > 14 else 0, 8 if n > 14 else 0, "", 60 - n)
        for n in range(59, 0, -1)
    ]
    add_rows(engine, name, rows)
    assert run_pull("sql_query", usage_options(name) | {"batch_size": 100}, ctx).stored == 59
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(ctx.store))
    try:
        Pipeline(ctx.store, runtime, PLAYBOOKS, client=None).evaluate_pending()  # type: ignore[arg-type]
    finally:
        runtime.close()
    t = table(RuleFiringRow)
    with ctx.store.engine.connect() as conn:
        fired = set(conn.execute(text(f"select rule_id from {t.name}")).scalars())
    assert "red-health" in fired, fired  # two months of usage that stopped two weeks ago


def test_a_query_without_the_cursor_parameter_is_refused_with_file_line_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(
        "pulls:\n"
        "  warehouse:\n"
        "    kind: sql_query\n"
        "    every: 1h\n"
        "    options:\n"
        "      url_env: CSAUTO_WAREHOUSE_URL\n"
        "      query: SELECT account_id FROM usage\n"
        "      cursor_column: seq\n"
        "      into: signals\n"
        "      signal_type: usage_daily\n"
        "      columns: {account_id: account_id, day: occurred_at}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as caught:
        load_schedules(path, pull_options=True)
    said = str(caught.value)
    assert f"{path}:7" in said and "pulls.warehouse.options.query" in said and ":cursor" in said
    # and where a person checks the file
    args = ["scheduler", "jobs", "--schedules", str(path), "--database-url", "sqlite://"]
    checked = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert checked.exit_code == 1 and f"{path}:7" in checked.output, checked.output
    assert "Traceback" not in checked.output


def test_a_missing_url_variable_is_a_config_error_naming_it(
    ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CSAUTO_WAREHOUSE_URL", raising=False)
    with pytest.raises(ConfigError, match="CSAUTO_WAREHOUSE_URL is not set"):
        run_pull("sql_query", usage_options("usage"), ctx)
