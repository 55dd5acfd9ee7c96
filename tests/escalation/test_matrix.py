"""escalation_matrix.yaml: the shipped file validates with people.yaml, and every mistake
is reported with its file, line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from csautomation.config import load_file
from csautomation.errors import ConfigFileError
from csautomation.escalation.matrix import (
    EscalationMatrix,
    load_escalation_config,
    load_matrix,
    matrix_json_schema,
)
from csautomation.escalation.people import load_people

ROOT = Path(__file__).parents[2]
MATRIX = ROOT / "escalation_matrix.yaml"
PEOPLE = ROOT / "people.yaml"


def test_the_shipped_matrix_validates_with_the_shipped_people() -> None:
    matrix, people = load_escalation_config(MATRIX, PEOPLE)
    assert list(matrix.severities) == ["critical", "high", "medium", "low"]
    for entries in matrix.severities.values():
        assert entries[-1].match.catch_all
        assert not any(e.match.catch_all for e in entries[:-1])
    critical = matrix.severities["critical"]
    assert critical[0].match.tier == ["enterprise"] and critical[0].calendar is None
    assert critical[1].match.tags == ["strategic"] and critical[1].calendar is None
    assert all(e.calendar for s in ("high", "medium", "low") for e in matrix.severities[s])
    assert any(level.repeat for e in critical for level in e.levels)
    assert matrix.file == "escalation_matrix.yaml"
    assert critical[0]._line == _line_of("    - name: enterprise accounts")
    assert people.get("ops-01") is not None


def test_every_severity_a_playbook_may_escalate_at_is_in_the_matrix() -> None:
    from typing import get_args

    from csautomation.playbooks.spec import EscalateStep

    allowed = get_args(EscalateStep.model_fields["severity"].annotation)
    assert set(allowed) <= set(load_matrix(MATRIX).severities)


def test_the_shipped_people_cover_the_sample_data() -> None:
    from csautomation.sample.generate import generate

    people = load_people(PEOPLE)
    accounts, _ = generate(n_accounts=300, days=1)
    owners = {a.owner for a in accounts} | {a.manager for a in accounts}
    assert {f"csm-{i:02d}" for i in range(1, 9)} <= owners
    assert all(people.get(pid) is not None for pid in owners), owners
    for account in accounts:
        owner = people.get(account.owner)
        assert owner is not None and owner.manager == account.manager
        team = people.teams[owner.team]
        assert team.director and team.vp
    managers = [p for p in people.people if p.role == "manager"]
    assert managers and all(p.sign_in and p.sign_in.password_hash for p in managers)


def test_the_demo_passwords_match_their_hashes() -> None:
    from argon2 import PasswordHasher

    people = load_people(PEOPLE)
    for pid in ("mgr-01", "mgr-02", "mgr-03", "csm-01", "admin"):
        person = people.get(pid)
        assert person is not None and person.sign_in is not None
        assert PasswordHasher().verify(person.sign_in.password_hash, f"demo-{pid}")
    assert "demo only" in PEOPLE.read_text(encoding="utf-8").lower()


def test_the_schema_accepts_the_shipped_matrix() -> None:
    schema = matrix_json_schema()
    data = json.loads(json.dumps(load_file(MATRIX).data, default=str))  # dates as text
    jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"severities": {"high": [{"match": {}, "levels": "x"}]}}, schema)


def _line_of(text: str) -> int:
    lines = MATRIX.read_text(encoding="utf-8").splitlines()
    return lines.index(text) + 1


GOOD_LEVEL = """\
  levels:
    - reach: [owner]
      channels: [local]
      ack_within: 1h
"""


def _doc(body: str) -> str:
    return textwrap.dedent(
        """\
        calendars:
          office:
            timezone: Europe/London
            hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"]}
        severities:
          high:
        """
    ) + textwrap.indent(body, "    ")


CATCH_ALL = """\
- match: {}
  levels:
    - reach: [owner]
      channels: [local]
      ack_within: 4h
"""


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        (  # 7: a calendar that is not defined
            "- match: {}\n  calendar: ofice\n" + GOOD_LEVEL,
            8,
            "severities.high[0].calendar",
            "unknown calendar 'ofice'; did you mean 'office'?",
        ),
        (
            "- match: {}\n  levels:\n    - reach: [owner, managr]\n      channels: [local]\n"
            "      ack_within: 1h\n",
            9,
            "severities.high[0].levels[0].reach[1]",
            "did you mean 'manager'?",
        ),
        ("- match: {}\n  levels: []\n", 8, "severities.high[0].levels", "at least 1 item"),
        (
            "- match: {}\n  levels:\n    - reach: []\n      channels: [local]\n"
            "      ack_within: 1h\n",
            9,
            "severities.high[0].levels[0].reach",
            "at least 1 item",
        ),
        (
            "- match: {tier: [enterprise]}\n" + GOOD_LEVEL,
            6,
            "severities.high",
            "severity 'high' is incomplete",
        ),
        (
            CATCH_ALL + "- match: {tier: [smb]}\n" + GOOD_LEVEL,
            12,
            "severities.high[1].match",
            "can never match",
        ),
        (
            "- match: {}\n  levels:\n    - reach: [owner]\n      channels: [Slack Channel]\n"
            "      ack_within: 1h\n",
            10,
            "severities.high[0].levels[0].channels[0]",
            "a channel 'Slack Channel' must be lower-case",
        ),
        (
            "- match: {}\n  levels:\n    - reach: [owner]\n      channels: []\n"
            "      ack_within: 1h\n",
            10,
            "severities.high[0].levels[0].channels",
            "at least 1 item",
        ),
        (
            "- match: {}\n  levels:\n    - reach: [owner]\n      channels: [local]\n"
            "      ack_within: 30 minutes\n",
            11,
            "severities.high[0].levels[0].ack_within",
            "expected a duration",
        ),
        (
            "- match: {}\n  calendar: office\n  levels:\n    - reach: [owner]\n"
            "      channels: [local]\n      ack_within: 2d\n",
            12,
            "severities.high[0].levels[0].ack_within",
            "write working hours",
        ),
        (
            "- match: {}\n  levels:\n    - reach: [owner]\n      channels: [local]\n"
            "      ack_witin: 1h\n",
            11,
            "severities.high[0].levels[0].ack_witin",
            "did you mean 'ack_within'?",
        ),
        (
            "- match: {}\n  levels:\n    - reach: [owner]\n      channels: [local]\n"
            "      ack_within: 1h\n      repeat: -1\n",
            12,
            "severities.high[0].levels[0].repeat",
            "greater than or equal to 0",
        ),
        (
            "- match: {tier: [enterprize]}\n" + GOOD_LEVEL + CATCH_ALL,
            7,
            "severities.high[0].match.tier[0]",
            "did you mean 'enterprise'?",
        ),
        (
            "- match: {arr_min: 50000, arr_max: 10000}\n" + GOOD_LEVEL + CATCH_ALL,
            7,
            "severities.high[0].match",
            "arr_min (50000) must be below arr_max (10000)",
        ),
        (
            "- match: {teir: [smb]}\n" + GOOD_LEVEL + CATCH_ALL,
            7,
            "severities.high[0].match.teir",
            "did you mean 'tier'?",
        ),
        ("- levels: []\n", 7, "severities.high[0].match", "missing required field 'match'"),
    ],
)
def test_broken_matrices_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str, message: str
) -> None:
    path = tmp_path / "escalation_matrix.yaml"
    path.write_text(_doc(body), encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_matrix(path)
    problems = info.value.problems
    found = [p for p in problems if message in p.message]
    assert found, "\n".join(map(str, problems))
    problem = found[0]
    assert problem.file == str(path)
    assert (problem.line, problem.field) == (line, field), str(problem)
    assert str(problem).startswith(f"{path}:{line}:")


@pytest.mark.parametrize(
    ("calendar", "line", "field", "message"),
    [
        (
            "timezone: Europe/Londn\nhours: {mon: ['09:00-17:00']}",
            3,
            "calendars.office.timezone",
            "did you mean 'Europe/London'?",
        ),
        (
            "timezone: UTC\nhours: {mon: ['17:30-09:00']}",
            4,
            "calendars.office.hours.mon[0]",
            "cannot cross midnight",
        ),
        ("timezone: UTC\nhours: {}", 2, "calendars.office", "at least one day"),
        (
            "timezone: UTC\nhours: {mon: ['09:00-17:00']}\nholidays: [2026-13-01]",
            5,
            "calendars.office.holidays[0]",
            "date",
        ),
    ],
)
def test_broken_calendars_name_file_line_and_field(
    tmp_path: Path, calendar: str, line: int, field: str, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "calendars:\n  office:\n"
        + textwrap.indent(calendar, "    ")
        + "\nseverities:\n  high:\n"
        + textwrap.indent(CATCH_ALL, "    "),
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as info:
        load_matrix(path)
    problem = next((p for p in info.value.problems if message in p.message), None)
    assert problem is not None, info.value
    assert (problem.line, problem.field) == (line, field), str(problem)


def test_people_references_are_checked_when_people_are_given(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "severities:\n  high:\n    - match: {}\n      levels:\n"
        "        - reach: [owner, person:mgr-1, person:nobody]\n"
        "          channels: [local]\n          ack_within: 1h\n",
        encoding="utf-8",
    )
    load_matrix(path)  # without people, any id will do
    with pytest.raises(ConfigFileError) as info:
        load_matrix(path, load_people(PEOPLE))
    messages = [(p.line, p.field, p.message) for p in info.value.problems]
    assert messages == [
        (
            5,
            "severities.high[0].levels[0].reach[1]",
            "unknown person 'mgr-1'; did you mean 'mgr-01'?",
        ),
        (
            5,
            "severities.high[0].levels[0].reach[2]",
            "unknown person 'nobody'; expected one of: vp-01, dir-01, dir-02, ops-01, mgr-01, "
            "csm-01, csm-02, csm-03, ...",
        ),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("severities:\n  high:\n    - match: {}\n   levels: x\n", "YAML syntax error"),
        ("- just a list\n", "expected a mapping with 'severities:'"),
        ("calendars: {}\n", "missing required field 'severities'"),
        ("severities: {}\n", "at least 1 item"),
        ("severities:\n  High Priority:\n" + textwrap.indent(CATCH_ALL, "    "), "a name"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError, match=message) as info:
        load_matrix(path)
    assert all(p.file == str(path) for p in info.value.problems)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no such file"):
        load_matrix(tmp_path / "nowhere.yaml")


def test_both_files_problems_are_reported_together(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("severities:\n  high: []\n", encoding="utf-8")
    people = tmp_path / "people.yaml"
    people.write_text("people:\n  - {id: a, name: A, role: boss}\n", encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_escalation_config(matrix, people)
    assert {Path(p.file).name for p in info.value.problems} == {"m.yaml", "people.yaml"}


def test_a_matrix_built_in_code_needs_no_file() -> None:
    matrix = EscalationMatrix.model_validate(
        {
            "severities": {
                "high": [
                    {
                        "match": {},
                        "levels": [{"reach": ["owner"], "channels": ["local"], "ack_within": "1h"}],
                    }
                ]
            }
        }
    )
    entry = matrix.severities["high"][0]
    assert matrix.file == "" and entry.describe("high") == "high, any account"
    assert entry.levels[0].ack_within.total_seconds() == 3600
