"""The review logic both the JSON API and the pages call: list, read and act on
escalations within the caller's scope. Reads come from the escalations index in the store
(the workflow records itself there after each change); actions go to the workflow.

Every refusal is a `ReviewError` whose status the web layer returns as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from csautomation.api.actions import EscalationActions
from csautomation.api.auth import Scope, scope_of
from csautomation.api.errors import (
    EscalationClosedError,
    EscalationNotFoundError,
    InputError,
    NotAllowedError,
)
from csautomation.escalation.model import EscalationPlan, PlannedLevel
from csautomation.escalation.people import People, Person
from csautomation.facts.health import COMPONENTS
from csautomation.facts.model import Account
from csautomation.store.escalations import (
    SEVERITY_ORDER,
    Filters,
    explain_for,
    get_escalation,
    get_plan,
    list_escalations,
)
from csautomation.store.facts import FactsReader, failure_reason
from csautomation.store.repo import Store
from csautomation.workflows.types import EscalationAction, EscalationState

Severity = Literal["critical", "high", "medium", "low"]
Status = Literal["open", "acknowledged", "snoozed", "resolved"]
Kind = Literal["acknowledge", "resolve", "reassign", "snooze"]
SortKey = Literal["urgency", "severity", "left", "age", "account", "arr", "renewal"]
Order = Literal["asc", "desc"]
ACTIVE: tuple[Status, ...] = ("open", "acknowledged", "snoozed")
STATUSES: tuple[Status, ...] = (*ACTIVE, "resolved")
NOTE_MAX = 4000
SNOOZE_MAX = timedelta(days=30)  # the latest a snooze may end, from now
SEVERITIES: tuple[str, ...] = tuple(SEVERITY_ORDER)


log = logging.getLogger(__name__)


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _statuses(value: Any) -> Any:
    """`open,snoozed`, repeated parameters, or `all`; blank means the active ones."""
    if value is None:
        return ACTIVE
    parts = [value] if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or not all(isinstance(p, str) for p in parts):
        return value  # validation names the problem
    names = [n.strip() for p in parts for n in p.split(",") if n.strip()]
    if not names:
        return ACTIVE
    return STATUSES if "all" in names else tuple(names)


Blank = BeforeValidator(_blank_is_none)  # an empty form field is no filter
Level = Annotated[int, Field(ge=1, le=99)]
Hours = Annotated[float, Field(ge=0, le=24 * 366)]


class ListQuery(BaseModel):
    """The filters of the list, as the API's query string and the page's form give them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    severity: Annotated[Severity | None, Blank] = None
    level: Annotated[Level | None, Blank] = None
    team: Annotated[str | None, Blank] = None
    holder: Annotated[str | None, Blank] = None
    status: Annotated[tuple[Status, ...], BeforeValidator(_statuses)] = ACTIVE
    min_age_hours: Annotated[Hours | None, Blank] = None
    sort: Annotated[SortKey, BeforeValidator(lambda v: _blank_is_none(v) or "urgency")] = "urgency"
    order: Annotated[Order | None, Blank] = None  # none: the sort's natural direction
    page: Annotated[Annotated[int, Field(ge=1, le=100_000)] | None, Blank] = None


class ActionBody(BaseModel):
    """acknowledge: an optional note."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str = Field(default="", max_length=NOTE_MAX)


class ResolveBody(ActionBody):
    note: str = Field(max_length=NOTE_MAX)

    @field_validator("note")
    @classmethod
    def _required(cls, value: str) -> str:
        if not value:
            raise PydanticCustomError("note_required", "a note is required to resolve")
        return value


class ReassignBody(ActionBody):
    to: str = Field(min_length=1, max_length=128, description="the new holder's person id")


class SnoozeBody(ActionBody):
    until: AwareDatetime


BODIES: dict[Kind, type[ActionBody]] = {
    "acknowledge": ActionBody,
    "resolve": ResolveBody,
    "reassign": ReassignBody,
    "snooze": SnoozeBody,
}


def first_problem(exc: ValidationError) -> InputError:
    """The first of pydantic's errors, as `field: message`."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return InputError(field, str(err["msg"]))


@dataclass(frozen=True)
class NextReach:
    """Who the plan reaches next, and when, if no one acknowledges first."""

    level: int
    names: list[str]
    roles: list[str]
    at: datetime


@dataclass(frozen=True)
class Detail:
    state: EscalationState
    account: Account | None
    plan: dict[str, Any]  # as recorded, for the API
    levels: list[PlannedLevel]  # the same, typed, for the page (empty if unreadable)
    next_reach: NextReach | None
    health: dict[str, Any] | None
    explain: dict[str, Any] | None
    can_act: bool

    def to_json(self) -> dict[str, Any]:
        nxt = self.next_reach
        return {
            "state": self.state.model_dump(mode="json"),
            "account": None if self.account is None else self.account.model_dump(mode="json"),
            "plan": self.plan,
            "next": None
            if nxt is None
            else {"level": nxt.level, "names": nxt.names, "roles": nxt.roles, "at": nxt.at},
            "health": self.health,
            "explain": self.explain,
            "can_act": self.can_act,
        }


class Review:
    def __init__(
        self,
        store: Store,
        people: People,
        actions: EscalationActions,
        facts: FactsReader,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.people = people
        self.actions = actions
        self.facts = facts
        self.now = now

    # -- reads ----------------------------------------------------------------------------
    def escalations(self, person: Person, query: ListQuery) -> list[EscalationState]:
        """The caller's visible escalations matching the query, most urgent first."""
        scope = scope_of(person)
        holder = query.holder
        if scope.holder is not None:
            if holder not in (None, scope.holder):
                return []
            holder = scope.holder
        filters = Filters(
            severity=query.severity,
            level=query.level,
            team=query.team,
            teams=scope.teams,
            holder=holder,
            status=query.status,
            min_age_hours=query.min_age_hours,
        )
        return list_escalations(self.store, filters, self.now())

    def escalation(self, person: Person, workflow_id: str) -> EscalationState:
        """404 when unknown or outside the caller's scope: the answer is the same, so it
        does not tell whether another team's escalation exists."""
        state = get_escalation(self.store, workflow_id)
        if state is None or not scope_of(person).sees(state):
            raise EscalationNotFoundError(f"no escalation {workflow_id}")
        return state

    def actionable(self, person: Person, workflow_id: str) -> EscalationState:
        """The stored escalation, checked before anything is signalled: 404 (unknown, or
        outside the caller's scope), 403 (a read-only role), 409 when it is resolved."""
        state = self.escalation(person, workflow_id)
        if not scope_of(person).may_act(state):
            raise NotAllowedError(f"a {person.role} cannot act on escalations (read-only)")
        if state.status == "resolved":
            raise EscalationClosedError(f"escalation {workflow_id} is already resolved")
        return state

    def detail(self, person: Person, workflow_id: str) -> Detail:
        state = self.escalation(person, workflow_id)
        account = self.store.account(state.account_id)
        plan = get_plan(self.store, workflow_id)
        levels = _levels(plan)
        return Detail(
            state=state,
            account=account,
            plan=plan,
            levels=levels,
            next_reach=_next_reach(state, levels, self.now()),
            health=None if account is None else self.health(account),
            explain=explain_for(self.store, state),
            can_act=scope_of(person).may_act(state) and state.status != "resolved",
        )

    def health(self, account: Account) -> dict[str, Any]:
        """Today's health score, band, components and trends, from the account's signals
        (missing values left out); with an `error` saying why when the account's facts
        cannot be computed (a stored signal they cannot be derived from): the page and the
        API still answer, and the escalation can still be handled."""
        record = self.facts.record_or_error(account, self.now().date())
        if isinstance(record, Exception):
            log.warning(
                "facts cannot be computed for account %s: %s",
                account.id,
                failure_reason(record),
                extra={"account_id": account.id},
            )
            return {
                "score": None,
                "band": None,
                "components": {},
                "trends": {},
                "error": f"facts cannot be computed: {failure_reason(record)}",
            }
        return {
            "error": None,
            "score": record.get("health.score"),
            "band": record.get("health.band"),
            "components": {c: record[f"health.{c}"] for c in COMPONENTS if f"health.{c}" in record},
            "trends": {
                f"{w}d": record[f"health.trend_{w}d"]
                for w in (7, 30, 90)
                if f"health.trend_{w}d" in record
            },
        }

    def team_people(self, scope: Scope) -> list[Person]:
        """The people a caller may filter by or reassign to."""
        if scope.teams is None:
            return list(self.people.people)
        return [p for p in self.people.people if set(p.all_teams) & set(scope.teams)]

    # -- actions --------------------------------------------------------------------------
    def parse(self, kind: Kind, fields: dict[str, Any]) -> ActionBody:
        """A page form's fields as the action's body; InputError names the bad field."""
        try:
            return BODIES[kind].model_validate(fields)
        except ValidationError as exc:
            raise first_problem(exc) from None

    def action(self, person: Person, body: ActionBody) -> EscalationAction:
        """The action to signal, `by` the signed-in person, its arguments checked: 403 for
        a reassignment to anyone outside the caller's teams (to an unknown person, for an
        admin: 422), 422 for a snooze that does not end in the next `SNOOZE_MAX`."""
        fields: dict[str, Any] = {"by": person.id, "note": body.note}
        if isinstance(body, ReassignBody):
            fields["to"] = self._reassignable(person, body.to).id
        if isinstance(body, SnoozeBody):
            now = self.now()
            if body.until <= now:
                raise InputError("until", "must be in the future")
            if body.until > now + SNOOZE_MAX:
                latest = (now + SNOOZE_MAX).strftime("%Y-%m-%d %H:%M UTC")
                raise InputError(
                    "until", f"must be at most {SNOOZE_MAX.days} days ahead (by {latest})"
                )
            fields["until"] = body.until
        return EscalationAction(**fields)

    def _reassignable(self, person: Person, to: str) -> Person:
        """The new holder, when they are in the caller's teams. An unknown id and another
        team's person get the same answer, so it tells nothing about other teams."""
        scope = scope_of(person)
        target = self.people.get(to)
        if scope.teams is None and scope.holder is None:  # an admin: anyone
            if target is None:
                raise InputError("to", f"unknown person '{to}'")
            return target
        if target is None or target not in self.team_people(scope):
            teams = ", ".join(scope.teams or ()) or "none"
            raise NotAllowedError(f"to: '{to}' is not a person in your teams ({teams})")
        return target

    async def act(
        self, person: Person, state: EscalationState, kind: Kind, body: ActionBody
    ) -> EscalationState:
        """Signal the action to the escalation checked by `actionable`, and return the
        workflow's state after it."""
        action = self.action(person, body)
        signal = {
            "acknowledge": self.actions.acknowledge,
            "resolve": self.actions.resolve,
            "reassign": self.actions.reassign,
            "snooze": self.actions.snooze,
        }[kind]
        await signal(state.workflow_id, action)
        return await self.actions.state(state.workflow_id)


def _levels(plan: dict[str, Any]) -> list[PlannedLevel]:
    if not plan:
        return []
    try:
        return list(EscalationPlan.model_validate(plan).levels)
    except ValidationError:  # an older plan shape: the API still returns it as recorded
        return []


def _next_reach(
    state: EscalationState, levels: list[PlannedLevel], now: datetime
) -> NextReach | None:
    if state.status != "open":
        return None
    upcoming = next((lv for lv in levels if lv.starts_at > now), None)
    if upcoming is None:
        return None
    return NextReach(
        level=upcoming.level,
        names=[r.name for r in upcoming.recipients],
        roles=list(upcoming.roles),
        at=upcoming.starts_at,
    )
