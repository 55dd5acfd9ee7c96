"""The csauto command as CS ops use it: exit codes, file:line errors, readable output."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.config import load_file
from csautomation.facts.model import Signal
from factories import account

ROOT = Path(__file__).parents[1]
RULES = str(ROOT / "rules")
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def data(tmp_path: Path) -> tuple[str, str]:
    end = date(2026, 11, 1)
    accounts = [
        account(
            name="Acme Corp",
            arr=250000,
            seats=40,
            renewal_date=end + timedelta(days=45),
            customer_since=date(2022, 3, 1),
        ),
        account(
            id="GLOBEX",
            name="Globex",
            tier="smb",
            arr=12000,
            seats=10,
            owner="csm-02",
            renewal_date=end + timedelta(days=300),
            customer_since=date(2021, 3, 1),
        ),
    ]
    signals = []
    for back in range(120, -1, -1):
        day = datetime.combine(end - timedelta(days=back), time(10), tzinfo=UTC)
        acme_logins = 100 if back > 30 else 20
        signals.append(
            Signal(
                type="usage_daily",
                account_id="ACME",
                occurred_at=day,
                payload={"logins": acme_logins, "active_users": acme_logins // 4},
            )
        )
        signals.append(
            Signal(
                type="usage_daily",
                account_id="GLOBEX",
                occurred_at=day,
                payload={"logins": 30, "active_users": 9},
            )
        )
    acc_path, sig_path = tmp_path / "accounts.jsonl", tmp_path / "signals.jsonl"
    acc_path.write_text("".join(a.model_dump_json() + "\n" for a in accounts))
    sig_path.write_text("".join(s.model_dump_json() + "\n" for s in signals))
    return str(acc_path), str(sig_path)


def test_validate_shipped_rules() -> None:
    code, output = run("rules", "validate", RULES)
    assert code == 0 and "11 rules" in output


def test_validate_reports_file_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    name: X\n    owner: o\n    priorty: high\n")
    code, output = run("rules", "validate", str(bad))
    assert code == 1
    assert f"{bad}:5:5" in output and "did you mean 'priority'" in output
    assert "Traceback" not in output


def test_rule_tests_pass_on_shipped_rules() -> None:
    code, output = run("rules", "test", RULES)
    assert code == 0, output
    assert " 0 failed" in output and "has no test cases" not in output


def test_rule_test_failure_is_reported_with_location(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "r.yaml").write_text((ROOT / "rules" / "health.yaml").read_text())
    (tmp_path / "tests" / "t.yaml").write_text(
        "tests:\n  - rule: red-health\n    name: wrong expectation\n"
        "    facts: {health.band: green}\n    expect: fires\n"
    )
    code, output = run("rules", "test", str(tmp_path))
    assert code == 1
    assert "t.yaml:2" in output and "expected it to fire" in output and "health.band" in output


def test_schema_accepts_shipped_rules_and_rejects_bad_ones() -> None:
    code, output = run("rules", "schema")
    assert code == 0
    schema = json.loads(output)
    for path in (ROOT / "rules").glob("*.yaml"):
        # our loader, like YAML 1.2 editors, reads `on:` as a key, not as True
        jsonschema.validate(load_file(path).data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rules": [{"id": "x", "priority": "urgent"}]}, schema)


def test_evaluate_table_and_json(data: tuple[str, str]) -> None:
    accounts, signals = data
    code, output = run(
        "rules", "evaluate", "--rules", RULES, "--accounts", accounts, "--signals", signals
    )
    assert code == 0, output
    assert "usage-decline" in output and "ACME" in output
    code, output = run(
        "rules",
        "evaluate",
        "--rules",
        RULES,
        "--accounts",
        accounts,
        "--signals",
        signals,
        "--format",
        "json",
    )
    matches = json.loads(output)
    fired = {(m["account_id"], m["rule_id"]) for m in matches}
    assert ("ACME", "usage-decline") in fired
    assert not any(acc == "GLOBEX" and rule == "usage-decline" for acc, rule in fired)
    first = next(m for m in matches if m["rule_id"] == "usage-decline")
    assert first["explain"]["facts"]["usage.logins_change_30d_pct"] <= -30
    assert len(first["rule_version"]) == 12


def test_explain_prints_facts_and_comparisons(data: tuple[str, str]) -> None:
    accounts, signals = data
    code, output = run(
        "rules",
        "explain",
        "usage-decline",
        "ACME",
        "--rules",
        RULES,
        "--accounts",
        accounts,
        "--signals",
        signals,
    )
    assert code == 0, output
    assert "MATCHES" in output and "usage.logins_change_30d_pct <= -30" in output
    code, output = run(
        "rules",
        "explain",
        "usage-decline",
        "GLOBEX",
        "--rules",
        RULES,
        "--accounts",
        accounts,
        "--signals",
        signals,
    )
    assert "does not match" in output and "✘" in output
    code, output = run(
        "rules",
        "explain",
        "usage-declin",
        "ACME",
        "--rules",
        RULES,
        "--accounts",
        accounts,
        "--signals",
        signals,
    )
    assert code == 1 and "did you mean 'usage-decline'" in output


def test_backtest_counts_firings_per_week(data: tuple[str, str]) -> None:
    accounts, signals = data
    code, output = run(
        "rules",
        "backtest",
        "--since",
        "60d",
        "--rules",
        RULES,
        "--accounts",
        accounts,
        "--history",
        signals,
        "--format",
        "json",
    )
    assert code == 0, output
    result = json.loads(output)
    # logins dropped 30 days ago: usage-decline fires once for ACME (30-day cooldown)
    assert sum(result["fires"]["usage-decline"]) in (1, 2)
    assert result["accounts"]["usage-decline"] == ["ACME"]
    code, output = run(
        "rules",
        "backtest",
        "--since",
        "60d",
        "--rules",
        RULES,
        "--accounts",
        accounts,
        "--history",
        signals,
    )
    assert code == 0 and "Overlap" in output


def test_bad_data_file_names_the_line(tmp_path: Path, data: tuple[str, str]) -> None:
    accounts, signals = data
    broken = tmp_path / "broken.jsonl"
    lines = Path(signals).read_text().splitlines()
    lines[2] = lines[2].replace('"usage_daily"', '"usage_weekly"')
    broken.write_text("\n".join(lines) + "\n")
    code, output = run(
        "rules", "evaluate", "--rules", RULES, "--accounts", accounts, "--signals", str(broken)
    )
    assert code == 1 and f"{broken}:3" in output and "type" in output


def test_signals_add_stores_once_and_explains_bad_input(db_url: str) -> None:
    db = ["--database-url", db_url]
    payload = '{"logins": 3, "active_users": 1}'
    args = ["signals", "add", "ACME", "usage_daily", "--payload", payload, "--key", "k-1"]
    code, text = run(*args, *db)
    assert code == 0 and "stored k-1" in text
    code, text = run(*args, *db)  # the same delivery again changes nothing
    assert code == 0 and "already stored k-1" in text
    code, text = run("signals", "add", "ACME", "usage_daily", "--payload", "{logins: 3", *db)
    assert code == 1 and "--payload cannot be read: not JSON" in text
    deep = "[" * 2000 + "]" * 2000
    code, text = run("signals", "add", "ACME", "usage_daily", "--payload", deep, *db)
    assert code == 1 and "nested deeper than" in text and "Traceback" not in text
    code, text = run(
        "signals",
        "add",
        "ACME",
        "usage_daily",
        "--payload",
        '{"logins": "5", "active_users": 1}',
        *db,
    )
    assert code == 0  # a plain decimal in text is the number (README: What is accepted)
    code, text = run("signals", "add", "ACME", "usage_dialy", "--payload", payload, *db)
    assert code == 1 and text.startswith("type:") and "Traceback" not in text
    code, text = run("signals", "add", "ACME", "usage_daily", "--payload", '{"logins": -1}', *db)
    assert code == 1 and "logins" in text


def test_tasks_complete_of_an_unknown_task_is_a_clear_error(db_url: str) -> None:
    code, text = run(
        "tasks",
        "complete",
        "42",
        "--database-url",
        db_url,
        "--temporal-address",
        "127.0.0.1:1",
    )
    assert code == 1
    assert "cannot reach Temporal at 127.0.0.1:1 (connection refused)" in text


def test_tasks_complete_by_someone_people_yaml_does_not_know_is_refused(db_url: str) -> None:
    code, text = run("tasks", "complete", "42", "--by", "mgr-1", "--database-url", db_url)
    assert code == 1  # before Temporal is asked anything
    assert "--by mgr-1: no such person in people.yaml; did you mean 'mgr-01'?" in text


# Every command csauto had before the commands moved into one cli/ package (issue 17),
# accounts and schema (issue 18), and browse (issue 20).
COMMANDS = {
    "accounts",
    "audit",
    "browse",
    "connectors",
    "db",
    "demo",
    "dev",
    "dlq",
    "escalations",
    "history",
    "ingest",
    "people",
    "pipeline",
    "playbooks",
    "quarantine",
    "replay",
    "rules",
    "runs",
    "sample",
    "scheduler",
    "schema",
    "serve",
    "signals",
    "sources",
    "tasks",
    "worker",
}


def command_paths() -> list[list[str]]:
    """Every command and group below `csauto`, as the arguments that reach it."""
    import typer

    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_is_listed_and_answers_help() -> None:
    paths = command_paths()
    assert {p[0] for p in paths if len(p) == 1} == COMMANDS
    assert len(paths) > 60  # the groups' subcommands too
    for path in paths:
        code, output = run(*path, "--help")
        assert code == 0, (path, output)
        assert "Usage: " in output and "Traceback" not in output, path
