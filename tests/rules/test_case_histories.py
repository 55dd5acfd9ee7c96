"""`csauto rules test` on cases whose history the schemas refuse, and on case names that
look like markup: a located problem or a FAIL line, as written, never a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from csautomation.cli import app

ROOT = Path(__file__).parents[2]


def rules_test(folder: Path, cases: str) -> tuple[int, str]:
    (folder / "tests").mkdir(parents=True)
    (folder / "r.yaml").write_text((ROOT / "rules" / "health.yaml").read_text())
    (folder / "tests" / "t.yaml").write_text(cases, encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "test", str(folder)])
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_payload_the_signal_schema_refuses_is_located_in_the_case_file(tmp_path: Path) -> None:
    code, output = rules_test(
        tmp_path,
        "tests:\n"
        "  - rule: red-health\n"
        "    name: fine\n"
        "    history:\n"
        "      signals:\n"
        "        - {type: usage_daily, days_ago: '10-0', payload: {logins: 50, active_users: 20}}\n"
        "        - {type: usage_daily, days_ago: 3, payload: {logins: lots, active_users: 2}}\n"
        "    expect: fires\n",
    )
    assert code == 1
    where = f"{tmp_path / 'tests' / 't.yaml'}:7:"
    assert f"{where}" in output, output
    assert "tests[0].history.signals[1].payload.logins" in output and "'lots'" in output
    assert "1 problem(s) found" in output


def test_an_account_the_schema_refuses_is_located_and_quoted_as_written(tmp_path: Path) -> None:
    code, output = rules_test(
        tmp_path,
        "tests:\n"
        "  - rule: red-health\n"
        "    name: green account\n"
        "    facts: {health.band: red}\n"
        "    expect: fires\n"
        "  - rule: red-health\n"
        "    name: bad account\n"
        "    history:\n"
        "      account: {tier: '[/red]', arr: -5}\n"
        "    expect: fires\n",
    )
    assert code == 1
    where = f"{tmp_path / 'tests' / 't.yaml'}:9:"
    assert f"{where}17: tests[1].history.account.tier:" in output, output
    assert "found '[/red]'" in output  # the value, not a markup error
    assert f"{where}33: tests[1].history.account.arr:" in output
    assert "2 problem(s) found" in output


def test_a_failing_case_named_like_markup_is_printed_as_written(tmp_path: Path) -> None:
    name = "[bold]red[/red] [link=x]{{ account.name }}\u200f"
    code, output = rules_test(
        tmp_path,
        "tests:\n"
        "  - rule: red-health\n"
        f"    name: '{name}'\n"
        "    facts: {health.band: green, account.segment: '[/red]'}\n"
        "    expect: fires\n",
    )
    assert code == 1
    assert f"t.yaml:2: red-health: {name}: expected it to fire" in output, output
    assert "health.band = 'green'" in output
    assert "0 passed, 1 failed" in output
