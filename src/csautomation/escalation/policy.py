"""The escalation policy: from the matrix, the people directory and an account, the plan of
who is told when. Pure: no clock, no store, no network.

Rounds are flattened from the matched entry's levels (level 1, its repeats, level 2, ...).
The first round starts at `start`; each later one starts when the one before it expires
(its `ack_by`), and `ack_by` counts `ack_within` of working time in the entry's calendar.

A role nobody fills (a CSM without a manager, a team without a director) does not stop
the escalation: the plan says so in `notes` and that level goes to the account's owner.
"""

from __future__ import annotations

from datetime import datetime

from csautomation.errors import EscalationError
from csautomation.escalation.calendar import add_working_time
from csautomation.escalation.matrix import EscalationMatrix
from csautomation.escalation.model import EscalationPlan, PlannedLevel, Recipient
from csautomation.escalation.people import People, Person
from csautomation.facts.model import Account

_ROLE_NAMES = {"owner": "csm", "manager": "manager", "director": "director", "vp": "vp"}


def plan(
    matrix: EscalationMatrix,
    people: People,
    account: Account,
    severity: str,
    start: datetime,
    from_level: int = 1,
) -> EscalationPlan:
    """The plan for `account` at `severity`, from `start`, beginning at `from_level`."""
    if severity not in matrix.severities:
        known = ", ".join(matrix.severities) or "none"
        raise EscalationError(f"unknown severity '{severity}'; the matrix has: {known}")
    entry = matrix.entry_for(severity, account)
    if entry is None:
        raise EscalationError(
            f"no entry of severity '{severity}' covers account {account.id}; "
            "end the severity with a catch-all entry (match: {})"
        )
    if entry.calendar is not None and entry.calendar not in matrix.calendars:
        raise EscalationError(f"severity '{severity}': unknown calendar '{entry.calendar}'")
    calendar = matrix.calendar_of(entry)
    resolver = _Resolver(people, account)
    notes: list[str] = []
    if from_level > len(entry.levels):
        notes.append(
            f"level {from_level} asked for, but the matrix has {len(entry.levels)}: "
            f"starting at level {len(entry.levels)}"
        )
    first = min(max(from_level, 1), len(entry.levels))

    rounds: list[PlannedLevel] = []
    at = start
    for number, level in enumerate(entry.levels[first - 1 :], start=first):
        recipients: list[Recipient] = []
        for role in level.reach:
            for who in resolver.resolve(role, notes):
                if all(r.person_id != who.person_id for r in recipients):
                    recipients.append(who)
        if not recipients:
            recipients = [resolver.owner_fallback()]
            notes.append(
                f"level {number}: nobody to reach as {', '.join(level.reach)}; "
                f"the account's owner {recipients[0].name} is told instead"
            )
        for repeat in range(level.repeat + 1):
            ack_by = add_working_time(at, level.ack_within, calendar)
            rounds.append(
                PlannedLevel(
                    level=number,
                    repeat=repeat,
                    roles=list(level.reach),
                    recipients=recipients,
                    channels=list(level.channels),
                    starts_at=at,
                    ack_by=ack_by,
                )
            )
            at = ack_by
    return EscalationPlan(
        severity=severity,
        account_id=account.id,
        team=resolver.team,
        matched=entry.describe(severity, matrix.file),
        calendar=entry.calendar,
        timezone=calendar.timezone if calendar is not None else None,
        levels=rounds,
        notes=_unique(notes),
    )


def account_team(people: People, account: Account) -> str:
    """The team an account belongs to: its owner's, else its CRM manager's ("" unknown)."""
    owner = people.get(account.owner)
    if owner is not None and owner.team:
        return owner.team
    # the CRM's manager of the account knows which team it belongs to
    crm_manager = people.get(account.manager)
    return crm_manager.team if crm_manager is not None else ""


class _Resolver:
    """Roles to people for one account, through the directory."""

    def __init__(self, people: People, account: Account) -> None:
        self.people = people
        self.account = account
        self.owner = people.get(account.owner)
        self.team = account_team(people, account)

    def resolve(self, role: str, notes: list[str]) -> list[Recipient]:
        if role.startswith("person:"):
            pid = role.removeprefix("person:")
            person = self.people.get(pid)
            if person is None:
                notes.append(f"{role}: '{pid}' is not in people.yaml")
                return []
            return [_recipient(person, person.role)]
        name = _ROLE_NAMES[role]
        if role == "owner":
            if self.owner is None:
                notes.append(f"owner: {self.unknown_owner()}")
                return []
            return [_recipient(self.owner, name)]
        if role == "manager":
            return self._manager(notes)
        # director, vp: of the owner's team
        if not self.team:
            notes.append(f"{role}: the account's team is unknown (its owner is not in people.yaml)")
            return []
        team = self.people.teams.get(self.team)
        head = None if team is None else (team.director if role == "director" else team.vp)
        person = self.people.get(head) if head else None
        if person is None:
            notes.append(f"{role}: team '{self.team}' has no {role}")
            return []
        return [_recipient(person, name)]

    def _manager(self, notes: list[str]) -> list[Recipient]:
        if self.owner is not None and self.owner.manager:
            person = self.people.get(self.owner.manager)
            if person is not None:
                return [_recipient(person, "manager")]
        crm = self.people.get(self.account.manager)
        if crm is not None:
            why = (
                f"{self.owner.id} has no manager in people.yaml"
                if self.owner is not None
                else self.unknown_owner()
            )
            notes.append(f"manager: {why}; the account's manager in the CRM ({crm.id}) is used")
            return [_recipient(crm, "manager")]
        if self.owner is None:
            notes.append(f"manager: {self.unknown_owner()}, and no manager is known")
        else:
            notes.append(f"manager: {self.owner.id} has no manager in people.yaml")
        return []

    def unknown_owner(self) -> str:
        if not self.account.owner:
            return "the account has no owner yet"
        return f"the account's owner '{self.account.owner}' is not in people.yaml"

    def owner_fallback(self) -> Recipient:
        if self.owner is not None:
            return _recipient(self.owner, "csm")
        # not in the directory: the id is still the CRM's, so a task can be assigned
        owner = self.account.owner or ""
        return Recipient(person_id=owner, name=owner or "unassigned (no owner yet)", role="csm")


def _recipient(person: Person, role: str) -> Recipient:
    return Recipient(
        person_id=person.id,
        name=person.name,
        role=role,
        team=person.team,
        email=person.email,
        slack=person.slack,
        crm_ids=dict(person.crm_ids),
    )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
