"""schedules.yaml: the shipped file validates, a bad one is reported file:line:column
field by field (never a traceback), and the plan follows the rules' schedules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.errors import ConfigFileError
from csautomation.rules.loader import load_rules
from csautomation.scheduling.config import Schedules, load_schedules
from csautomation.scheduling.jobs import plan_jobs

ROOT = Path(__file__).parents[2]

BAD = """\
sweeps:
  misfire_grase: 1h
pulls:
  sf:
    kind: salesforce_accounts
    every: 15 minutes
  zd:
    kind: zendesk_tickets
    every: 5m
    cron: "*/5 * * * *"
  Bad Name:
    kind: x
    cron: "61 * * * *"
completion_sync:
  every: 0m
"""


def test_the_shipped_schedules_validate_and_plan_one_sweep_per_scheduled_rule() -> None:
    schedules = load_schedules(ROOT / "schedules.yaml", required=True)
    assert schedules.completion_sync.every == timedelta(minutes=1)
    assert {p.kind for p in schedules.pulls.values()} >= {"salesforce_accounts", "zendesk_tickets"}
    ruleset = load_rules([ROOT / "rules"])
    jobs = {j.id: j for j in plan_jobs(schedules, ruleset)}
    scheduled = {r.id: r.rule.trigger.schedule for r in ruleset.enabled if r.rule.trigger.schedule}
    assert {f"sweep:{rule_id}" for rule_id in scheduled} | {"completion-sync"} == set(jobs)
    assert jobs["sweep:usage-decline"].describe == "cron 0 6 * * *"
    assert jobs["sweep:usage-decline"].misfire_grace == timedelta(hours=1)
    assert jobs["completion-sync"].describe == "every 1m"
    assert "completion-sync" not in {j.id for j in plan_jobs(schedules, ruleset, False)}


def test_pulls_get_their_own_trigger_and_policy() -> None:
    schedules = Schedules.model_validate(
        {
            "sweeps": {"enabled": False},
            "pulls": {
                "often": {"kind": "a", "every": "30s", "misfire_grace": "1m", "coalesce": False},
                "nightly": {"kind": "b", "cron": "0 2 * * *"},
                "off": {"kind": "c", "every": "1h", "enabled": False},
            },
        }
    )
    jobs = {j.id: j for j in plan_jobs(schedules, load_rules([ROOT / "rules"]), False)}
    assert set(jobs) == {"pull:often", "pull:nightly"}
    often, nightly = jobs["pull:often"], jobs["pull:nightly"]
    assert (often.describe, often.misfire_grace, often.coalesce) == (
        "every 30s",
        timedelta(minutes=1),
        False,
    )
    assert (nightly.describe, nightly.misfire_grace, nightly.coalesce) == (
        "cron 0 2 * * *",
        timedelta(minutes=10),
        True,
    )
    assert often.args == ("often",)


def test_a_bad_file_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigFileError) as caught:
        load_schedules(path)
    got = [str(p).removeprefix(f"{path}:") for p in caught.value.problems]
    assert got == [
        "2:3: sweeps.misfire_grase: unknown field 'misfire_grase'; did you mean 'misfire_grace'?",
        "6:5: pulls.sf.every: expected a duration such as 30s, 15m, 1h or 1d, found '15 minutes'",
        "7:3: pulls.zd: a pull needs exactly one of 'every' (e.g. 15m) or 'cron'",
        "11:3: pulls.Bad Name: a pull's name uses lower-case letters, digits, '-' and '_' only "
        "(at most 64), e.g. 'salesforce-accounts'; found 'Bad Name'",
        "13:5: pulls.Bad Name.cron: invalid cron expression '61 * * * *' (minute hour "
        "day-of-month month day-of-week, in UTC): Error validating expression '61': the last "
        "value (61) is higher than the maximum value (59)",
        "15:3: completion_sync.every: expected a duration such as 30s, 15m, 1h or 1d, found '0m'",
    ]


def test_the_command_line_shows_the_problems_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("pulls:\n  sf:\n    kind: x\n    every: 15 minutes\n")
    result = CliRunner().invoke(app, ["scheduler", "run", "--schedules", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4:5: pulls.sf.every: expected a duration" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    path.write_text("pulls:\n  sf: [kind: x\n")
    result = CliRunner().invoke(app, ["scheduler", "jobs", "--schedules", str(path)])
    assert result.exit_code == 1 and f"{path}:3:1: YAML syntax error" in result.output


def test_no_file_means_the_defaults_unless_one_was_named(tmp_path: Path) -> None:
    assert load_schedules(tmp_path / "schedules.yaml") == Schedules()
    (tmp_path / "empty.yaml").write_text("# nothing scheduled here yet\n")
    assert load_schedules(tmp_path / "empty.yaml", required=True) == Schedules()
    with pytest.raises(ConfigFileError, match="no such file"):
        load_schedules(tmp_path / "schedules.yaml", required=True)
    (tmp_path / "list.yaml").write_text("- pulls\n")
    with pytest.raises(ConfigFileError, match="list.yaml:1:1: expected a mapping"):
        load_schedules(tmp_path / "list.yaml")


def test_the_automatic_redrive_is_planned_with_its_delays_and_checked(tmp_path: Path) -> None:
    schedules = load_schedules(ROOT / "schedules.yaml", required=True)
    again = schedules.redrive
    assert again.enabled and again == Schedules().redrive  # the shipped file: the defaults
    assert [again.delay(n) for n in (0, 1, 2, 6, 7, 40)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 60, 60, 60)
    ]
    ruleset = load_rules([ROOT / "rules"])
    assert "redrive" not in {j.id for j in plan_jobs(schedules, ruleset)}  # no connectors
    planned = {j.id: j for j in plan_jobs(schedules, ruleset, redrive=True)}
    assert planned["redrive"].describe == "every 1m"
    path = tmp_path / "schedules.yaml"
    path.write_text("redrive:\n  first: 10m\n  maximum: 5m\n  max_age: forever\n")
    with pytest.raises(ConfigFileError) as caught:
        load_schedules(path)
    got = [str(p).removeprefix(f"{path}:") for p in caught.value.problems]
    assert got == [
        "4:3: redrive.max_age: expected a duration such as 30s, 15m, 1h or 1d, found 'forever'"
    ]
    path.write_text("redrive:\n  first: 10m\n  maximum: 5m\n")
    with pytest.raises(ConfigFileError) as caught:
        load_schedules(path)
    assert [str(p).removeprefix(f"{path}:") for p in caught.value.problems] == [
        "1:1: redrive: 'maximum' must be at least 'first'"
    ]
