"""The plan: who is told when, for every shipped severity; exact deadlines across a
weekend, holidays and a change of the clocks; repeats, from_level, and roles nobody fills."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import factories
from csautomation.errors import EscalationError
from csautomation.escalation.calendar import working_time_between
from csautomation.escalation.matrix import EscalationMatrix, load_escalation_config
from csautomation.escalation.model import EscalationPlan
from csautomation.escalation.people import People
from csautomation.escalation.policy import plan
from csautomation.facts.model import Account

ROOT = Path(__file__).parents[2]
MATRIX, PEOPLE = load_escalation_config(ROOT / "escalation_matrix.yaml", ROOT / "people.yaml")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def account(**given: Any) -> Account:
    """An SMB account in EMEA, owned by csm-02 (manager mgr-01)."""
    fields: dict[str, Any] = {
        "id": "ACC-1",
        "name": "Acme Corp",
        "tier": "smb",
        "arr": 45_000,
        "region": "emea",
        "owner": "csm-02",
        "renewal_date": date(2027, 3, 1),
        "customer_since": date(2022, 3, 1),
    }
    return factories.account(**(fields | given))


ENTERPRISE = account(id="ACC-ENT", tier="enterprise", arr=420_000, owner="csm-05", manager="mgr-02")
SMALL = account(id="ACC-SMB", tier="smb", arr=12_000, owner="csm-10", manager="mgr-03")


def line_of(text: str) -> int:
    lines = (ROOT / "escalation_matrix.yaml").read_text(encoding="utf-8").splitlines()
    return lines.index(text) + 1


def catch_all_line(severity: str) -> int:
    lines = (ROOT / "escalation_matrix.yaml").read_text(encoding="utf-8").splitlines()
    after = lines.index(f"  {severity}:")
    return lines.index("    - match: {}", after) + 1


def timeline(p: EscalationPlan) -> list[tuple[int, int, list[str], datetime, datetime]]:
    return [
        (r.level, r.repeat, [x.person_id for x in r.recipients], r.starts_at, r.ack_by)
        for r in p.levels
    ]


# -- every shipped severity ---------------------------------------------------------------
@pytest.mark.parametrize("severity", list(MATRIX.severities))
@pytest.mark.parametrize("who", [ENTERPRISE, SMALL], ids=["enterprise", "small"])
def test_every_shipped_severity_gives_a_consistent_timeline(severity: str, who: Account) -> None:
    start = utc(2026, 11, 3, 10, 15)
    p = plan(MATRIX, PEOPLE, who, severity, start)
    entry = MATRIX.entry_for(severity, who)
    assert entry is not None
    calendar = MATRIX.calendar_of(entry)
    assert p.severity == severity and p.account_id == who.id
    assert p.matched.startswith(f"{severity}, ") and "(escalation_matrix.yaml:" in p.matched
    assert p.team == PEOPLE.get(who.owner).team  # type: ignore[union-attr]
    assert p.calendar == entry.calendar
    assert p.notes == []
    assert len(p.levels) == sum(1 + level.repeat for level in entry.levels)
    assert p.levels[0].starts_at == start
    for before, after in zip(p.levels, p.levels[1:], strict=False):
        assert after.starts_at == before.ack_by
        assert (after.level, after.repeat) in {
            (before.level, before.repeat + 1),
            (before.level + 1, 0),
        }
    for rnd in p.levels:
        level = entry.levels[rnd.level - 1]
        assert rnd.recipients and rnd.channels == level.channels and rnd.roles == level.reach
        assert working_time_between(rnd.starts_at, rnd.ack_by, calendar) == level.ack_within
        assert rnd.ack_by.tzinfo is UTC
    # the first level is the CSM who owns the account
    assert [r.person_id for r in p.levels[0].recipients] == [who.owner]
    assert p.levels[0].recipients[0].role == "csm"


def test_critical_for_an_enterprise_account_runs_around_the_clock() -> None:
    # Christmas night: nothing is closed for critical enterprise escalations
    p = plan(MATRIX, PEOPLE, ENTERPRISE, "critical", utc(2026, 12, 25, 3, 0))
    assert p.matched == (
        "critical, enterprise accounts: tier enterprise "
        f"(escalation_matrix.yaml:{line_of('    - name: enterprise accounts')})"
    )
    assert p.calendar is None and p.timezone is None and p.team == "growth"
    assert timeline(p) == [
        (1, 0, ["csm-05"], utc(2026, 12, 25, 3, 0), utc(2026, 12, 25, 3, 30)),
        (1, 1, ["csm-05"], utc(2026, 12, 25, 3, 30), utc(2026, 12, 25, 4, 0)),
        (2, 0, ["mgr-02"], utc(2026, 12, 25, 4, 0), utc(2026, 12, 25, 4, 30)),
        (3, 0, ["dir-02", "ops-01"], utc(2026, 12, 25, 4, 30), utc(2026, 12, 25, 5, 30)),
        (4, 0, ["vp-01"], utc(2026, 12, 25, 5, 30), utc(2026, 12, 25, 7, 30)),
    ]
    roles = [(r.name, r.role) for r in p.levels[3].recipients]
    assert roles == [("Laura Jensen", "director"), ("CS Ops on call", "ops")]
    assert p.levels[0].recipients[0].email == "hannah.kim@example.com"


def test_strategic_accounts_are_critical_around_the_clock_too() -> None:
    strategic = account(tier="mid_market", tags=("strategic",))
    p = plan(MATRIX, PEOPLE, strategic, "critical", utc(2026, 12, 26, 22, 0))
    assert p.matched.startswith("critical, strategic accounts: tag strategic")
    assert p.calendar is None
    assert p.levels[-1].ack_by == utc(2026, 12, 27, 2, 30)  # 30m + 30m + 30m + 1h + 2h


def test_high_for_a_small_account_across_christmas_and_new_year() -> None:
    # Thursday 24 December 2026, 15:00 in London (GMT): the worked example in the file
    p = plan(MATRIX, PEOPLE, SMALL, "high", utc(2026, 12, 24, 15, 0))
    assert p.matched == f"high, any account (escalation_matrix.yaml:{catch_all_line('high')})"
    assert p.calendar == "emea-business" and p.timezone == "Europe/London"
    assert timeline(p) == [
        # 2h30 on Thursday; Christmas, the weekend and Boxing Day (Mon 28) closed; 1h30
        (1, 0, ["csm-10"], utc(2026, 12, 24, 15, 0), utc(2026, 12, 29, 10, 30)),
        (1, 1, ["csm-10"], utc(2026, 12, 29, 10, 30), utc(2026, 12, 29, 14, 30)),
        # 3h on Tuesday, 5h on Wednesday
        (2, 0, ["mgr-03"], utc(2026, 12, 29, 14, 30), utc(2026, 12, 30, 14, 0)),
        # 3h30 on Wednesday, 8h30 on Thursday 31, New Year's Day and the weekend closed, 4h
        (3, 0, ["dir-02"], utc(2026, 12, 30, 14, 0), utc(2027, 1, 4, 13, 0)),
    ]


def test_high_for_an_amer_account_when_the_clocks_change() -> None:
    # Friday 6 March 2026 15:00 in New York (20:00 UTC); summer time starts on Sunday 8,
    # so Monday's 09:00 is 13:00 UTC
    amer = account(region="amer", tier="mid_market", arr=80_000)
    p = plan(MATRIX, PEOPLE, amer, "high", utc(2026, 3, 6, 20, 0))
    assert p.matched.startswith("high, AMER accounts: region amer")
    assert p.timezone == "America/New_York"
    assert [(r.starts_at, r.ack_by) for r in p.levels[:2]] == [
        (utc(2026, 3, 6, 20, 0), utc(2026, 3, 9, 15, 0)),  # 2h Friday, 2h Monday (11:00 EDT)
        (utc(2026, 3, 9, 15, 0), utc(2026, 3, 9, 19, 0)),
    ]


def test_medium_for_small_accounts_has_no_repeat() -> None:
    p = plan(MATRIX, PEOPLE, SMALL, "medium", utc(2026, 11, 2, 9, 0))  # Monday 09:00 GMT
    assert p.matched.startswith("medium, small accounts: ARR < 30000")
    assert [(r.level, r.repeat) for r in p.levels] == [(1, 0), (2, 0)]
    # 16 working hours from Monday 09:00: 8h30 Monday, 7h30 Tuesday
    assert p.levels[0].ack_by == utc(2026, 11, 3, 16, 30)


# -- from_level, unknown severities ----------------------------------------------------------
def test_from_level_starts_the_plan_at_that_level() -> None:
    start = utc(2026, 12, 25, 3, 0)
    p = plan(MATRIX, PEOPLE, ENTERPRISE, "critical", start, from_level=2)
    assert timeline(p) == [
        (2, 0, ["mgr-02"], start, utc(2026, 12, 25, 3, 30)),
        (3, 0, ["dir-02", "ops-01"], utc(2026, 12, 25, 3, 30), utc(2026, 12, 25, 4, 30)),
        (4, 0, ["vp-01"], utc(2026, 12, 25, 4, 30), utc(2026, 12, 25, 6, 30)),
    ]
    last = plan(MATRIX, PEOPLE, ENTERPRISE, "critical", start, from_level=9)
    assert [r.level for r in last.levels] == [4]
    assert last.notes == ["level 9 asked for, but the matrix has 4: starting at level 4"]
    assert plan(MATRIX, PEOPLE, ENTERPRISE, "critical", start, from_level=0) == plan(
        MATRIX, PEOPLE, ENTERPRISE, "critical", start
    )


def test_an_unknown_severity_is_an_escalation_error() -> None:
    with pytest.raises(
        EscalationError, match="unknown severity 'urgent'; the matrix has: critical"
    ):
        plan(MATRIX, PEOPLE, SMALL, "urgent", utc(2026, 1, 1))


def test_a_severity_without_a_catch_all_built_in_code_is_an_escalation_error() -> None:
    matrix = _matrix([{"match": {"tier": ["enterprise"]}, "levels": [_level(["owner"])]}])
    with pytest.raises(EscalationError, match="no entry of severity 'high' covers account ACC-1"):
        plan(matrix, PEOPLE, account(), "high", utc(2026, 1, 1))


def test_the_plan_survives_a_json_round_trip() -> None:
    p = plan(MATRIX, PEOPLE, SMALL, "high", utc(2026, 12, 24, 15, 0))
    assert EscalationPlan.model_validate_json(p.model_dump_json()) == p


# -- roles nobody fills ----------------------------------------------------------------
def _level(reach: list[str], ack: str = "1h", repeat: int = 0) -> dict[str, Any]:
    return {"reach": reach, "channels": ["local"], "ack_within": ack, "repeat": repeat}


def _matrix(entries: list[dict[str, Any]]) -> EscalationMatrix:
    return EscalationMatrix.model_validate({"severities": {"high": entries}})


LADDER = _matrix(
    [
        {
            "match": {},
            "levels": [
                _level(["owner"], repeat=2),
                _level(["manager"]),
                _level(["director", "vp"]),
                _level(["person:ghost", "person:ops-9"]),
            ],
        }
    ]
)


def _people(**teams: dict[str, str]) -> People:
    return People.model_validate(
        {
            "teams": {"east": teams.get("east", {})},
            "people": [
                {"id": "csm-1", "name": "Dana", "role": "csm", "team": "east"},
                {"id": "csm-2", "name": "Eli", "role": "csm", "team": "east", "manager": "mgr-1"},
                {"id": "mgr-1", "name": "Mo", "role": "manager", "team": "east"},
                {"id": "boss", "name": "Bo", "role": "director", "team": "east"},
                {"id": "ops-9", "name": "Ops", "role": "ops"},
            ],
        }
    )


def test_repeats_are_flattened_in_order() -> None:
    p = plan(
        LADDER,
        _people(east={"director": "boss", "vp": "boss"}),
        account(owner="csm-2"),
        "high",
        utc(2026, 1, 1),
    )
    assert [(r.level, r.repeat) for r in p.levels] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (3, 0),
        (4, 0),
    ]
    assert [r.ack_by for r in p.levels] == [utc(2026, 1, 1, h) for h in range(1, 7)]
    # the same person as director and vp is told once
    assert [r.person_id for r in p.levels[4].recipients] == ["boss"]
    assert p.matched == "high, any account"  # built in code: no file to point at


def test_unresolvable_roles_are_skipped_and_noted() -> None:
    # csm-1 has no manager, and neither has the account's CRM manager (mgr-x) an entry;
    # team east has no director and no vp; person:ghost does not exist
    who = account(owner="csm-1", manager="mgr-x")
    p = plan(LADDER, _people(), who, "high", utc(2026, 1, 1))
    assert p.team == "east"
    by_level = {r.level: [x.person_id for x in r.recipients] for r in p.levels}
    assert by_level == {1: ["csm-1"], 2: ["csm-1"], 3: ["csm-1"], 4: ["ops-9"]}
    assert p.notes == [
        "manager: csm-1 has no manager in people.yaml",
        "level 2: nobody to reach as manager; the account's owner Dana is told instead",
        "director: team 'east' has no director",
        "vp: team 'east' has no vp",
        "level 3: nobody to reach as director, vp; the account's owner Dana is told instead",
        "person:ghost: 'ghost' is not in people.yaml",
    ]


def test_the_crm_manager_stands_in_for_a_missing_manager() -> None:
    p = plan(LADDER, _people(), account(owner="csm-1", manager="mgr-1"), "high", utc(2026, 1, 1))
    assert [x.person_id for x in p.levels[3].recipients] == ["mgr-1"]
    assert (
        "manager: csm-1 has no manager in people.yaml; the account's manager in the CRM "
        "(mgr-1) is used"
    ) in p.notes


def test_an_owner_missing_from_people_is_still_told() -> None:
    who = account(owner="csm-new", manager="mgr-1")
    p = plan(LADDER, _people(east={"director": "boss"}), who, "high", utc(2026, 1, 1))
    first = p.levels[0].recipients
    assert [(r.person_id, r.name, r.role) for r in first] == [("csm-new", "csm-new", "csm")]
    assert p.team == "east"  # from the CRM manager's team
    assert [x.person_id for x in p.levels[3].recipients] == ["mgr-1"]
    assert [x.person_id for x in p.levels[4].recipients] == ["boss"]
    assert "owner: the account's owner 'csm-new' is not in people.yaml" in p.notes


def test_an_account_nobody_knows() -> None:
    who = account(owner="csm-new", manager="mgr-new")
    p = plan(LADDER, _people(), who, "high", utc(2026, 1, 1))
    assert p.team == ""
    assert {x.person_id for r in p.levels[:5] for x in r.recipients} == {"csm-new"}
    assert "director: the account's team is unknown (its owner is not in people.yaml)" in p.notes


def test_deadlines_use_the_entrys_calendar() -> None:
    matrix = EscalationMatrix.model_validate(
        {
            "calendars": {"weekdays": {"timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}}},
            "severities": {
                "high": [{"match": {}, "calendar": "weekdays", "levels": [_level(["owner"], "4h")]}]
            },
        }
    )
    p = plan(matrix, _people(), account(owner="csm-1"), "high", utc(2026, 1, 6, 12, 0))  # a Tuesday
    assert p.levels[0].ack_by == utc(2026, 1, 12, 13, 0)  # next Monday
    assert p.levels[0].ack_by - p.levels[0].starts_at > timedelta(days=6)
