"""Preview a rule change: `csauto rules backtest --compare REF` and `csauto rules diff REF`
against a real git repository (and a folder), over a small history whose firings are known.

Three accounts with daily usage for the two weeks 2026-10-19 (a Monday) to 2026-11-01:
ALPHA (ARR 50k), BETA (150k) and GAMMA (250k). A rule woken by usage_daily whose condition
holds every day fires on day 0 and day 7 (cooldown 7d): once a week per account.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.model import Signal
from csautomation.rules import spec
from csautomation.rules.diff import condition_text
from factories import account

END = date(2026, 11, 1)
WINDOW = ["--since", "14d", "--as-of", END.isoformat()]


def rule(rule_id: str, condition: str, priority: str = "medium") -> str:
    return textwrap.dedent(f"""\
        - id: {rule_id}
          name: {rule_id}
          owner: cs-ops@example.com
          priority: {priority}
          trigger: {{on: [usage_daily]}}
          conditions: "{condition}"
          cooldown: 7d
          actions:
            - escalate: {{severity: high, reason: look}}
        """)


def rules_file(*rules: str) -> str:
    return "rules:\n" + "".join(textwrap.indent(r, "  ") for r in rules)


BEFORE = rules_file(
    rule("big-accounts", "account.arr > 200000"),
    rule("steady", "account.arr > 0"),
    rule("old-rule", "account.arr < 100000"),
)
AFTER = rules_file(
    rule("big-accounts", "account.arr > 100000"),
    rule("steady", "account.arr > 0"),
    rule("new-rule", "account.tier == smb", priority="low"),
)


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(
        ["git", "-c", "user.name=CS Ops", "-c", "user.email=ops@example.com", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose rules changed in its last commit (BEFORE, then AFTER)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, {"rules/risk.yaml": BEFORE}, "rules")
    commit(repo, {"rules/risk.yaml": AFTER}, "big accounts from 100k")
    return repo


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    accounts = [
        account(id="ALPHA", name="Alpha Ltd", tier="smb", arr=50_000),
        account(id="BETA", name="Beta [Inc]", arr=150_000),
        account(id="GAMMA", name="Gamma Group", arr=250_000),
    ]
    signals = [
        Signal(
            type="usage_daily",
            account_id=a.id,
            occurred_at=datetime.combine(END - timedelta(days=back), time(9), tzinfo=UTC),
            payload={"logins": 10, "active_users": 2},
        )
        for a in accounts
        for back in range(13, -1, -1)
    ]
    acc, sig = tmp_path / "accounts.jsonl", tmp_path / "signals.jsonl"
    acc.write_text("".join(a.model_dump_json() + "\n" for a in accounts))
    sig.write_text("".join(s.model_dump_json() + "\n" for s in signals))
    return ["--accounts", str(acc), "--signals", str(sig), *WINDOW]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def compare_json(ref: str, rules: Path, data: list[str]) -> dict[str, object]:
    code, output = run(
        "rules", "backtest", "--compare", ref, "--rules", str(rules), *data, "--format", "json"
    )
    assert code == 0, output
    result: dict[str, object] = json.loads(output)
    return result


def test_compare_with_the_previous_commit_counts_before_and_after(
    repo: Path, data: list[str]
) -> None:
    result = compare_json("HEAD~1", repo / "rules", data)
    assert result["weeks"] == ["2026-10-19", "2026-10-26"]
    rules = {r["id"]: r for r in result["rules"]}  # type: ignore[attr-defined]
    big = rules["big-accounts"]
    assert big["change"] == "changed" and big["fields"] == ["conditions"]
    assert (big["before"], big["after"]) == ([1, 1], [2, 2])  # GAMMA, then BETA and GAMMA
    assert (big["total_before"], big["total_after"], big["delta"]) == (2, 4, 2)
    assert big["entering"] == [{"id": "BETA", "name": "Beta [Inc]"}] and big["leaving"] == []
    steady = rules["steady"]
    assert steady["change"] == "unchanged" and steady["before"] == steady["after"] == [3, 3]
    added, removed = rules["new-rule"], rules["old-rule"]
    assert (added["change"], added["before"], added["after"]) == ("added", None, [1, 1])
    assert [a["id"] for a in added["entering"]] == ["ALPHA"]
    assert (removed["change"], removed["before"], removed["after"]) == ("removed", [1, 1], None)
    assert [a["id"] for a in removed["leaving"]] == ["ALPHA"]
    assert result["accounts_fired_on"] == {
        "before": 3,
        "after": 3,
        "entering": [],
        "leaving": [],
    }


def test_compare_prints_the_table_in_the_repository(
    repo: Path, data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)  # the default rules/ folder, as CS ops run it
    code, output = run("rules", "backtest", "--compare", "HEAD~1", *data)
    assert code == 0, output
    rows = {line.split()[0]: line.split()[1:] for line in output.splitlines() if "│" in line}
    assert rows["big-accounts"] == [
        "│",
        "changed",
        "│",
        "2",
        "│",
        "4",
        "│",
        "+2",
        "│",
        "1",
        "│",
        "0",
    ]
    assert rows["new-rule"][:6] == ["│", "added", "│", "-", "│", "2"]
    assert rows["old-rule"][:6] == ["│", "removed", "│", "2", "│", "-"]
    assert rows["steady"][:2] == ["│", "unchanged"]
    assert "big-accounts: conditions changed" in output
    assert "1→2" in output  # a week of big-accounts, before→after
    assert "BETA (Beta [Inc])" in output and "ALPHA (Alpha Ltd)" in output
    assert "before = HEAD~1" in output


def test_compare_names_accounts_up_to_the_limit(repo: Path, data: list[str]) -> None:
    code, output = run(
        "rules",
        "backtest",
        "--compare",
        "HEAD~1",
        "--rules",
        str(repo / "rules"),
        "--show-accounts",
        "0",
        *data,
    )
    assert code == 0 and "Beta [Inc]" not in output and "Alpha Ltd" not in output


def test_compare_with_a_folder(repo: Path, data: list[str], tmp_path: Path) -> None:
    old = tmp_path / "old-rules"
    old.mkdir()
    (old / "risk.yaml").write_text(BEFORE)
    from_folder = compare_json(str(old), repo / "rules", data)
    from_git = compare_json("HEAD~1", repo / "rules", data)
    assert from_folder["rules"] == from_git["rules"] and from_folder["before"] == str(old)


def test_the_same_rules_fire_the_same(repo: Path, data: list[str]) -> None:
    code, output = run(
        "rules", "backtest", "--compare", "HEAD", "--rules", str(repo / "rules"), *data
    )
    assert code == 0 and "no rule fires differently" in output


def test_an_unknown_ref_is_a_clear_error(repo: Path, data: list[str]) -> None:
    code, output = run(
        "rules", "backtest", "--compare", "HEAD~5", "--rules", str(repo / "rules"), *data
    )
    assert code == 1 and "no commit or folder 'HEAD~5'" in output
    code, output = run("rules", "diff", "no-such-branch", str(repo / "rules"))
    assert code == 1 and "no commit or folder 'no-such-branch'" in output


def test_rules_that_did_not_exist_at_the_ref(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, {"README.md": "no rules yet\n"}, "start")
    commit(repo, {"rules/risk.yaml": AFTER}, "rules")
    code, output = run("rules", "diff", "HEAD~1", str(repo / "rules"))
    assert code == 1 and "rules does not exist at HEAD~1" in output


def test_outside_a_git_repository(tmp_path: Path) -> None:
    rules = tmp_path / "plain" / "rules"
    rules.mkdir(parents=True)
    (rules / "risk.yaml").write_text(AFTER)
    code, output = run("rules", "diff", "HEAD~1", str(rules))
    assert code == 1 and "is not in a git repository" in output


def test_old_rules_that_do_not_load_are_located_in_that_version(
    tmp_path: Path, data: list[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(
        repo, {"rules/risk.yaml": BEFORE.replace("priority: medium", "priority: urgent", 1)}, "typo"
    )
    commit(repo, {"rules/risk.yaml": AFTER}, "fixed")
    code, output = run(
        "rules", "backtest", "--compare", "HEAD~1", "--rules", str(repo / "rules"), *data
    )
    assert code == 1
    assert "the rules at HEAD~1 do not load; these problems are in HEAD~1's version" in output
    assert "HEAD~1:rules/risk.yaml:5:5: rules[0].priority" in output and "found 'urgent'" in output


def test_diff_says_what_changed_in_words(repo: Path) -> None:
    code, output = run("rules", "diff", "HEAD~1", str(repo / "rules"))
    assert code == 0, output
    lines = output.splitlines()
    assert "changed big-accounts" in lines
    assert "  conditions: was `account.arr > 200000`, now `account.arr > 100000`" in lines
    assert "added new-rule" in lines and "removed old-rule" in lines
    assert "steady" not in output
    assert lines[-1] == "1 added, 1 removed, 1 changed, 1 unchanged"
    code, output = run("rules", "diff", "HEAD", str(repo / "rules"))
    assert code == 0 and "no rule changed (3 rules)" in output


def test_diff_names_each_changed_field(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "r.yaml").write_text(BEFORE)
    changed = (
        BEFORE.replace("cooldown: 7d", "cooldown: 10d", 1)
        .replace("priority: medium", "priority: high", 1)
        .replace(
            "trigger: {on: [usage_daily]}", "trigger: {on: [usage_daily], schedule: '0 6 * * *'}", 1
        )
    )
    (new / "r.yaml").write_text(changed)
    code, output = run("rules", "diff", str(old), str(new))
    assert code == 0, output
    assert "  priority: was `medium`, now `high`" in output
    assert "  cooldown: was `7d`, now `10d`" in output
    assert "  trigger: was `on usage_daily`, now `on usage_daily; schedule '0 6 * * *'`" in output


def test_conditions_in_words() -> None:
    rule = spec.Rule.model_validate(
        {
            "id": "r",
            "name": "r",
            "owner": "o",
            "priority": "low",
            "trigger": {"on": ["usage_daily"]},
            "actions": [{"escalate": {"severity": "low"}}],
            "conditions": {
                "all": [
                    "health.score < 40.5",
                    {
                        "any": [
                            "account.tier in [smb, enterprise]",
                            "account.arr between 1 and 2500000",
                        ]
                    },
                    {"not": {"window": {"fact": "health.score", "fell_by": 15, "within": "2w"}}},
                    {
                        "signals": {
                            "of": ["meeting", "nps_response"],
                            "at_least": 2,
                            "within": "14d",
                        }
                    },
                ]
            },
        }
    )
    assert condition_text(rule.conditions) == (
        "health.score < 40.5 and (account.tier in [smb, enterprise] or account.arr between 1 "
        "and 2500000) and not (health.score fell by 15 within 14d) and at least 2 of the types "
        "[meeting, nps_response] within 14d"
    )


def test_backtest_without_compare_is_unchanged(repo: Path, data: list[str]) -> None:
    code, output = run(
        "rules", "backtest", "--rules", str(repo / "rules"), *data, "--format", "json"
    )
    assert code == 0
    result = json.loads(output)
    assert result["fires"] == {"big-accounts": [2, 2], "steady": [3, 3], "new-rule": [1, 1]}


def test_git_is_required_for_a_ref_only(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old-rules"
    shutil.copytree(repo / "rules", old)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no git on the PATH
    code, output = run("rules", "diff", str(old), str(repo / "rules"))
    assert code == 0 and "no rule changed" in output
    code, output = run("rules", "diff", "HEAD~1", str(repo / "rules"))
    assert code == 1 and "git is not installed" in output
