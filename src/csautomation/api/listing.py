"""The managers' list: escalations grouped by account, the groups sorted and paged, each
with the account's ARR, renewal date and health now, and each escalation with its reason
and the health its firing recorded.

Groups, not escalations, are sorted and paged, so one account's escalations stay together
on one page. Health and firings are read for the shown page only, each in one batch
whatever its size: an admin's 300 escalations cost one page's worth of facts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from csautomation.api import views
from csautomation.api.auth import scope_of
from csautomation.api.review import STATUSES, ListQuery, Order, Review, SortKey, first_problem
from csautomation.escalation.people import Person
from csautomation.facts.model import Account
from csautomation.store.escalations import SEVERITY_ORDER, Firing, firings_for
from csautomation.store.facts import failure_reason
from csautomation.workflows.types import EscalationState

log = logging.getLogger(__name__)
PAGE_SIZE = 50
# the direction a column sorts in when first chosen: what a manager looks for first
NATURAL: dict[SortKey, Order] = {
    "urgency": "asc",
    "severity": "desc",
    "left": "asc",
    "age": "desc",
    "account": "asc",
    "arr": "desc",
    "renewal": "asc",
}
SORTED_BY: dict[SortKey, str] = {
    "urgency": "most urgent first",
    "severity": "by severity",
    "left": "by time left to acknowledge",
    "age": "by age",
    "account": "by account name",
    "arr": "by ARR",
    "renewal": "by renewal date",
}
QUERY_KEYS = (
    "severity",
    "level",
    "team",
    "holder",
    "status",
    "min_age_hours",
    "sort",
    "order",
    "page",
)


@dataclass(frozen=True)
class Group:
    """One account's escalations among those listed, most urgent first."""

    account_id: str
    account: Account | None
    states: tuple[EscalationState, ...]


def grouped(states: Sequence[EscalationState], accounts: Mapping[str, Account]) -> list[Group]:
    """Groups in the order of their most urgent escalation (`states` come most urgent
    first)."""
    by_account: dict[str, list[EscalationState]] = {}
    for s in states:
        by_account.setdefault(s.account_id, []).append(s)
    return [Group(a, accounts.get(a), tuple(ss)) for a, ss in by_account.items()]


def singles(states: Sequence[EscalationState], accounts: Mapping[str, Account]) -> list[Group]:
    """Each escalation a group of its own: the API sorts escalations, not accounts."""
    return [Group(s.account_id, accounts.get(s.account_id), (s,)) for s in states]


def _sort_value(key: SortKey, now: datetime) -> Callable[[Group], Any]:
    def value(g: Group) -> Any:
        acct = g.account
        if key == "severity":
            return -min(SEVERITY_ORDER.get(s.severity, 9) for s in g.states)
        if key == "left":
            return _deadline(g)
        if key == "age":
            return now - min(s.opened_at for s in g.states)
        if key == "account":
            return (acct.name if acct else g.account_id).casefold()
        if key == "arr":
            return acct.arr if acct else None
        return acct.renewal_date if acct else None

    return value


def sort_groups(groups: Sequence[Group], key: SortKey, order: Order, now: datetime) -> list[Group]:
    """Sorted by `key`; ties keep their urgency order, and a group with no value (no
    deadline, no ARR, no renewal date) comes last in either direction."""
    if key == "urgency":
        return list(groups) if order == "asc" else list(reversed(groups))
    value = _sort_value(key, now)
    present = [g for g in groups if value(g) is not None]
    missing = [g for g in groups if value(g) is None]
    # stable in both directions: equal values keep their urgency order
    present.sort(key=value, reverse=order == "desc")
    return present + missing


def page_of(count: int, wanted: int | None) -> tuple[int, int]:
    """The page shown (a page past the last shows the last) and the number of pages."""
    pages = max(1, -(-count // PAGE_SIZE))
    return min(wanted or 1, pages), pages


def page_links(page: int, pages: int) -> list[int | None]:
    """The pages to link: the first, the last and two either side of this one; None
    where pages are left out."""
    near = {1, pages, *range(page - 2, page + 3)}
    out: list[int | None] = []
    last = 0
    for n in sorted(p for p in near if 1 <= p <= pages):
        if last and n - last > 1:
            out.append(None)
        out.append(n)
        last = n
    return out


def parse_query(params: Mapping[str, str]) -> tuple[ListQuery, dict[str, str], list[str]]:
    """The list's query from the URL: each bad parameter is left out, named in a problem,
    and the others still apply. Returns the query, the parameters kept, the problems."""
    given = {k: v for k, v in params.items() if k in QUERY_KEYS}
    problems: list[str] = []
    while True:
        try:
            return ListQuery.model_validate(given), given, problems
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & given.keys()
            problems.append(first_problem(exc).message)
            if not bad:
                return ListQuery(), {}, problems
            given = {k: v for k, v in given.items() if k not in bad}


def href(given: Mapping[str, str], **changes: str | int | None) -> str:
    """The list's URL with these parameters changed (None removes one)."""
    merged: dict[str, Any] = {**given, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, "")}
    return "/?" + urlencode(kept) if kept else "/"


@dataclass(frozen=True)
class Health:
    """A health score and band as of a date, or why there is none."""

    score: str = ""
    band: str = ""
    on: str = ""  # the date it stands for
    missing: str = ""  # why there is no score


@dataclass(frozen=True)
class Line:
    """One escalation of a group."""

    workflow_id: str
    url: str
    severity: str
    level: int
    status: str
    holder: str
    holder_name: str
    age: str
    left: str
    overdue: bool
    reason: str
    at_firing: Health
    can_act: bool
    can_acknowledge: bool


@dataclass(frozen=True)
class AccountGroup:
    account_id: str
    name: str
    arr: str
    renewal: str
    health_now: Health
    lines: list[Line]
    statuses: str  # "2 open, 1 acknowledged"
    holders: str
    oldest: str
    left: str  # the most urgent deadline of the group's open escalations
    overdue: bool


@dataclass(frozen=True)
class Listing:
    groups: list[AccountGroup]
    escalations: int  # in all groups, not only this page's
    accounts: int
    page: int
    pages: int
    sort: SortKey
    order: Order


def listing(review: Review, person: Person, query: ListQuery) -> Listing:
    now = review.now()
    states = review.escalations(person, query)
    accounts = review.store.accounts({s.account_id for s in states})
    order = query.order or NATURAL[query.sort]
    groups = sort_groups(grouped(states, accounts), query.sort, order, now)
    page, pages = page_of(len(groups), query.page)
    shown = groups[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    health = health_now(review, [g.account for g in shown if g.account is not None])
    firings = firings_for(review.store, [s for g in shown for s in g.states])
    may_act = scope_of(person).may_act
    out = []
    for g in shown:
        lines = [
            _line(review, s, firings.get(s.workflow_id), may_act(s) and s.status != "resolved", now)
            for s in g.states
        ]
        out.append(_account_group(g, lines, health.get(g.account_id), now))
    return Listing(out, len(states), len(groups), page, pages, query.sort, order)


def health_now(review: Review, accounts: Sequence[Account]) -> dict[str, Health]:
    """Today's health of each account, derived in one batch."""
    today = review.now().date()
    records = review.facts.records_or_errors([(a, today) for a in accounts])
    out = {}
    for account, record in zip(accounts, records, strict=True):
        if isinstance(record, Exception):
            # the detail page says why; a list cell only that there is no score
            log.warning("facts of %s cannot be computed: %s", account.id, failure_reason(record))
            out[account.id] = Health(on=str(today), missing="facts cannot be computed")
        else:
            out[account.id] = _health(record, today, "no signals yet")
    return out


def at_firing(firing: Firing | None) -> Health:
    """The account's health when its firing was evaluated, on that day: as the pipeline
    kept it with the firing, else as the rule read it (firings kept before the pipeline
    kept it, and rules that read none, have none)."""
    if firing is None:
        return Health(missing="no rule firing recorded")
    kept = firing.explain.get("health")
    if isinstance(kept, dict):
        read = {"health.score": kept.get("score"), "health.band": kept.get("band")}
    else:
        facts = firing.explain.get("facts")
        read = facts if isinstance(facts, dict) else {}
    return _health(read, firing.fired_at.date(), "not recorded when it fired")


def _health(record: Mapping[str, Any], on: date, missing: str) -> Health:
    score = record.get("health.score")
    if not isinstance(score, int | float) or isinstance(score, bool):
        return Health(on=str(on), missing=missing)
    band = record.get("health.band")
    return Health(f"{score:.0f}", band if isinstance(band, str) else "", str(on))


def _line(
    review: Review, s: EscalationState, firing: Firing | None, can_act: bool, now: datetime
) -> Line:
    left, overdue = views.time_left(s.ack_by if s.status == "open" else None, now)
    return Line(
        workflow_id=s.workflow_id,
        url=views.page_url(s.workflow_id),
        severity=s.severity,
        level=s.level,
        status=s.status,
        holder=s.holder,
        holder_name=views.person_name(review.people, s.holder, s.holder_name),
        age=views.duration((now - s.opened_at).total_seconds()),
        left=left,
        overdue=overdue,
        reason=views.reason(s.reason),
        at_firing=at_firing(firing),
        can_act=can_act,
        can_acknowledge=can_act and s.status != "acknowledged",
    )


def _deadline(g: Group) -> datetime | None:
    """The nearest acknowledge deadline of the group's open escalations."""
    return min((s.ack_by for s in g.states if s.status == "open" and s.ack_by), default=None)


def _account_group(
    g: Group, lines: list[Line], health: Health | None, now: datetime
) -> AccountGroup:
    acct = g.account
    counts = Counter(s.status for s in g.states)
    holders = dict.fromkeys(line.holder_name for line in lines if line.holder_name)
    left, overdue = views.time_left(_deadline(g), now)
    return AccountGroup(
        account_id=g.account_id,
        name=acct.name if acct else g.account_id,
        arr=views.money(acct.arr if acct else None),
        renewal=str(acct.renewal_date) if acct and acct.renewal_date else "—",
        health_now=health or Health(missing="account not in the store"),
        lines=lines,
        statuses=", ".join(f"{counts[st]} {st}" for st in STATUSES if counts[st]),
        holders=", ".join(holders) or "no one",
        oldest=views.duration((now - min(s.opened_at for s in g.states)).total_seconds()),
        left=left,
        overdue=overdue,
    )
