"""What the review app's tests share: escalations of two teams in a real SQLite store, a
people directory with sign-ins, a fake `EscalationActions` that acts as the workflow does
(records its calls, changes the state, records it in the store), and sign-in helpers.

    teams    east: Mia (manager), Cara (csm)      west: Noah (manager), Carl (csm)
             Dora directs both; Ada is the admin; Otto (ops) and Carl cannot sign in
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from csautomation.api.auth import token_digest
from csautomation.api.errors import EscalationClosedError, EscalationNotFoundError
from csautomation.escalation.model import EscalationPlan, PlannedLevel, Recipient
from csautomation.escalation.people import People, Person, SignIn, Team
from csautomation.store.escalations import get_escalation, record_escalation
from csautomation.store.repo import Store
from csautomation.store.tables import PlaybookRunRow
from csautomation.workflows.types import EscalationAction, EscalationEvent, EscalationState
from factories import review_account

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "test-session-secret-" + "x" * 32

# workflow ids
EAST_CRITICAL = "escalation:usage-drop:acme:1"
EAST_MEDIUM = "escalation:nps-low:beta:1"
EAST_ACKED = "escalation:tickets:delta:1"
EAST_RESOLVED = "escalation:usage-drop:acme:0"
WEST_HIGH = "escalation:usage-drop:gamma:1"


def password(person_id: str) -> str:
    return f"{person_id}-correct-horse"


def token(person_id: str) -> str:
    return f"token-of-{person_id}-0123456789abcdef"


def bearer(person_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(person_id)}"}


def _person(pid: str, name: str, role: str, team: str = "", **kw: Any) -> Person:
    return Person(
        id=pid,
        name=name,
        role=role,  # type: ignore[arg-type]
        team=team,
        email=f"{pid}@example.com",
        sign_in=SignIn(
            password_hash=FAST.hash(password(pid)), api_token_sha256=[token_digest(token(pid))]
        ),
        **kw,
    )


def build_people() -> People:
    return People(
        teams={"east": Team(name="East", director="dora"), "west": Team(name="West")},
        people=[
            _person("ada", "Ada Admin", "admin"),
            _person("mia", "Mia Manager", "manager", "east"),
            _person("noah", "Noah Manager", "manager", "west"),
            _person("dora", "Dora Director", "director", "east", teams=["west"]),
            _person("cara", "Cara CSM", "csm", "east", manager="mia"),
            _person("otto", "Otto Ops", "ops", "east"),
            Person(id="carl", name="Carl CSM", role="csm", team="west", manager="noah"),
        ],
    )


def _state(
    wid: str,
    account: str,
    team: str,
    severity: str,
    level: int,
    holder: str,
    opened: timedelta,
    ack_in: timedelta | None,
    status: str = "open",
) -> EscalationState:
    opened_at = NOW - opened
    events = [
        EscalationEvent(at=opened_at, kind="opened", detail=f"{severity}: usage fell"),
        EscalationEvent(at=opened_at, kind="notified", level=level, detail=f"{holder} via local"),
    ]
    return EscalationState(
        workflow_id=wid,
        account_id=account,
        severity=severity,
        reason="logins fell by 70% in 30 days",
        rule_id=wid.split(":")[1],
        team=team,
        status=status,
        level=level,
        holder=holder,
        opened_at=opened_at,
        ack_by=None if ack_in is None else NOW + ack_in,
        timeline=events,
    )


def _plan(state: EscalationState) -> dict[str, Any]:
    cara = Recipient(person_id="cara", name="Cara CSM", role="csm", team="east")
    mia = Recipient(person_id="mia", name="Mia Manager", role="manager", team="east")
    dora = Recipient(person_id="dora", name="Dora Director", role="director", team="east")
    start = state.opened_at
    levels = [
        PlannedLevel(
            level=n,
            roles=[who.role],
            recipients=[who],
            channels=["local"],
            starts_at=at,
            ack_by=until,
        )
        for n, who, at, until in (
            (1, cara, start, start + timedelta(hours=2)),
            (2, mia, start + timedelta(hours=2), NOW + timedelta(hours=1)),
            (3, dora, NOW + timedelta(hours=1), NOW + timedelta(hours=3)),
        )
    ]
    return EscalationPlan(
        severity=state.severity,
        account_id=state.account_id,
        team=state.team,
        matched="severity critical",
        levels=levels,
    ).model_dump(mode="json")


EXPLAIN = {
    "rule_id": "usage-drop",
    "rule_version": "abc123",
    "matched": True,
    "facts": {"usage.logins_change_30d_pct": -70.0, "account.tier": "enterprise"},
    "conditions": {
        "all": [
            {
                "check": {
                    "fact": "usage.logins_change_30d_pct",
                    "op": "lt",
                    "expected": -50,
                    "actual": -70.0,
                    "result": True,
                }
            },
            {
                "check": {
                    "fact": "account.tier",
                    "op": "eq",
                    "expected": "enterprise",
                    "actual": "enterprise",
                    "result": True,
                }
            },
        ],
        "result": True,
    },
}


def populate(s: Store) -> None:
    """East: a critical at level 2 (Mia), a medium (Cara), an acknowledged high and a
    resolved one; west: a high whose deadline has passed (Carl)."""
    s.upsert_accounts(
        [
            review_account("acme", "Acme Corp"),
            review_account("beta", "Beta <b>Bold</b> Ltd"),  # markup in a name must be escaped
            review_account("gamma", "Gamma GmbH"),
            review_account("delta", "Delta Inc"),
        ]
    )
    h = timedelta(hours=1)
    states = [
        _state(EAST_CRITICAL, "acme", "east", "critical", 2, "mia", 5 * h, h),
        _state(EAST_MEDIUM, "beta", "east", "medium", 1, "cara", h / 2, h / 3),
        _state(EAST_ACKED, "delta", "east", "high", 1, "mia", 26 * h, None, "acknowledged"),
        _state(EAST_RESOLVED, "acme", "east", "high", 1, "mia", 48 * h, None, "resolved"),
        _state(WEST_HIGH, "gamma", "west", "high", 1, "carl", 2 * h, -h / 6),
    ]
    for st in states:
        record_escalation(s, st, seq=1, plan=_plan(st) if st.workflow_id == EAST_CRITICAL else None)
    s.record_firing("usage-drop", "abc123", "acme", 1, "critical", NOW - 5 * h, EXPLAIN)
    with s.session() as session:
        session.add(
            PlaybookRunRow(
                workflow_id=EAST_CRITICAL, kind="escalation", firing_id=1, account_id="acme"
            )
        )
        session.commit()


EVENTS = {
    "acknowledge": "acknowledged",
    "resolve": "resolved",
    "reassign": "reassigned",
    "snooze": "snoozed",
}


@dataclass
class FakeActions:
    """Acts as the escalation workflow would: records the call, changes the state, records
    it in the store. Ids in `gone` answer as a missing workflow, in `closed` as a closed one."""

    store: Store
    now: Callable[[], datetime] = lambda: NOW
    calls: list[tuple[str, str, EscalationAction]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    seq: int = 100

    async def acknowledge(self, workflow_id: str, action: EscalationAction) -> None:
        self._apply("acknowledge", workflow_id, action)

    async def resolve(self, workflow_id: str, action: EscalationAction) -> None:
        self._apply("resolve", workflow_id, action)

    async def reassign(self, workflow_id: str, action: EscalationAction) -> None:
        self._apply("reassign", workflow_id, action)

    async def snooze(self, workflow_id: str, action: EscalationAction) -> None:
        self._apply("snooze", workflow_id, action)

    async def state(self, workflow_id: str) -> EscalationState:
        found = get_escalation(self.store, workflow_id)
        if found is None or workflow_id in self.gone:
            raise EscalationNotFoundError(f"no escalation workflow {workflow_id}")
        return found

    def _apply(self, kind: str, workflow_id: str, action: EscalationAction) -> None:
        self.calls.append((kind, workflow_id, action))
        if workflow_id in self.gone:
            raise EscalationNotFoundError(f"no escalation workflow {workflow_id}")
        if workflow_id in self.closed:
            raise EscalationClosedError(f"escalation {workflow_id} has closed (completed)")
        st = get_escalation(self.store, workflow_id)
        assert st is not None
        now = self.now()
        if kind == "acknowledge":
            st.status, st.acknowledged_at, st.ack_by, st.holder = (
                "acknowledged",
                now,
                None,
                action.by,
            )
        elif kind == "resolve":
            st.status, st.resolved_at, st.resolution, st.ack_by = "resolved", now, action.note, None
        elif kind == "reassign":
            st.holder, st.holder_name = action.to, ""
        elif kind == "snooze":
            st.status, st.snoozed_until, st.ack_by = "snoozed", action.until, None
        st.timeline.append(
            EscalationEvent(
                at=now, kind=EVENTS[kind], by=action.by, level=st.level, detail=action.note
            )
        )
        self.seq += 1
        record_escalation(self.store, st, self.seq)


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def sign_in(client: TestClient, person_id: str) -> str:
    """Signs in through the login form; returns the session's CSRF token."""
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"login": person_id, "password": password(person_id), "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/").text)
