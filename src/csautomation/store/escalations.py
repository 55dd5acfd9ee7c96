"""The escalations index: each workflow's latest state, for the manager's page and CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from csautomation.store import ledger
from csautomation.store.engine import aware, prepared, table, upsert
from csautomation.store.repo import Store
from csautomation.store.tables import EscalationRow, PlaybookRunRow, RuleFiringRow
from csautomation.workflows.types import EscalationState

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def record_escalation(
    store: Store, state: EscalationState, seq: int, plan: dict[str, Any] | None = None
) -> None:
    """Upsert the workflow's state; a write older than the stored one (`seq`) is ignored,
    so a retried record never rolls the page back."""
    t = table(EscalationRow)
    values: dict[str, Any] = {
        "account_id": state.account_id,
        "severity": state.severity,
        "status": state.status,
        "level": state.level,
        "team": state.team,
        "holder": state.holder,
        "rule_id": state.rule_id,
        "opened_at": state.opened_at,
        "ack_by": state.ack_by,
        "updated_at": state.timeline[-1].at if state.timeline else state.opened_at,
        "seq": seq,
        "state": state.model_dump(mode="json"),
    }
    if plan is not None:
        values["plan"] = plan
    columns = tuple(values)

    def build(conn: Connection) -> Any:
        stmt = upsert(conn, t)
        return stmt.on_conflict_do_update(
            index_elements=[t.c.workflow_id],
            set_={c: stmt.excluded[c] for c in columns},
            where=t.c.seq < stmt.excluded.seq,
        )

    with store.engine.begin() as conn:
        ledger.append(conn, _changes(state))
        name = "record_escalation" + (":plan" if plan is not None else "")
        conn.execute(prepared(conn, name, build), {"workflow_id": state.workflow_id, **values})


def _changes(state: EscalationState) -> list[ledger.Entry]:
    """The escalation's timeline, one ledger entry per event (each written once)."""
    return [
        ledger.Entry(
            key=f"escalation:{state.workflow_id}:{i}",
            kind="escalation",
            at=e.at,
            account_id=state.account_id,
            rule_id=state.rule_id,
            workflow_id=state.workflow_id,
            detail={
                "event": e.kind,
                "by": e.by,
                "level": e.level,
                "detail": e.detail,
                "severity": state.severity,
                "holder": state.holder,
            },
        )
        for i, e in enumerate(state.timeline)
    ]


@dataclass(frozen=True)
class Filters:
    severity: str | None = None
    level: int | None = None
    team: str | None = None
    teams: Sequence[str] | None = None  # a manager's teams: only these are visible
    holder: str | None = None
    status: Sequence[str] = ("open", "acknowledged", "snoozed")
    min_age_hours: float | None = None


def list_escalations(
    store: Store, filters: Filters = Filters(), now: datetime | None = None
) -> list[EscalationState]:
    """Matching escalations, most urgent first: severity, then level (higher first), then
    the nearest acknowledge deadline, then the oldest."""
    t = table(EscalationRow)
    q = select(t.c.state)
    if filters.status:
        q = q.where(t.c.status.in_(list(filters.status)))
    if filters.severity:
        q = q.where(t.c.severity == filters.severity)
    if filters.level is not None:
        q = q.where(t.c.level == filters.level)
    if filters.team:
        q = q.where(t.c.team == filters.team)
    if filters.teams is not None:
        q = q.where(t.c.team.in_(list(filters.teams)))
    if filters.holder:
        q = q.where(t.c.holder == filters.holder)
    with store.engine.connect() as conn:
        states = [EscalationState.model_validate(r[0]) for r in conn.execute(q)]
    if filters.min_age_hours is not None and now is not None:
        states = [
            s for s in states if (now - s.opened_at).total_seconds() >= filters.min_age_hours * 3600
        ]
    far = datetime.max.replace(tzinfo=states[0].opened_at.tzinfo) if states else None
    states.sort(
        key=lambda s: (
            SEVERITY_ORDER.get(s.severity, 9),
            -s.level,
            s.ack_by or far,
            s.opened_at,
        )
    )
    return states


def get_escalation(store: Store, workflow_id: str) -> EscalationState | None:
    t = table(EscalationRow)
    with store.engine.connect() as conn:
        row = conn.execute(select(t.c.state).where(t.c.workflow_id == workflow_id)).first()
    return None if row is None else EscalationState.model_validate(row[0])


def get_plan(store: Store, workflow_id: str) -> dict[str, Any]:
    t = table(EscalationRow)
    with store.engine.connect() as conn:
        row = conn.execute(select(t.c.plan).where(t.c.workflow_id == workflow_id)).first()
    return dict(row[0] or {}) if row is not None else {}


@dataclass(frozen=True)
class Firing:
    """The rule firing that raised an escalation: when, and the explain it recorded."""

    fired_at: datetime
    explain: dict[str, Any]


def firings_for(store: Store, states: Sequence[EscalationState]) -> dict[str, Firing]:
    """`explain_for` of many escalations in one query, by workflow id (none for those
    that no firing raised)."""
    runs, firings = table(PlaybookRunRow), table(RuleFiringRow)
    via = {s.workflow_id: [s.workflow_id, s.source_workflow_id] for s in states}
    wanted = {w for ids in via.values() for w in ids if w}
    found: dict[str, Firing] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = sorted(wanted)[start : start + 500]
            q = (
                select(runs.c.workflow_id, firings.c.fired_at, firings.c.explain)
                .join(runs, runs.c.firing_id == firings.c.id)
                .where(runs.c.workflow_id.in_(chunk))
            )
            for wid, at, explain in conn.execute(q):
                found[wid] = Firing(aware(at), dict(explain))
    out: dict[str, Firing] = {}
    for wid, ids in via.items():
        hit = next((found[w] for w in ids if w in found), None)
        if hit is not None:
            out[wid] = hit
    return out


def explain_for(store: Store, state: EscalationState) -> dict[str, Any] | None:
    """The explain of the rule firing that raised it: directly (a rule's escalate action),
    or through the playbook whose escalate step started it."""
    runs, firings = table(PlaybookRunRow), table(RuleFiringRow)
    with store.engine.connect() as conn:
        for wid in (state.workflow_id, state.source_workflow_id):
            if not wid:
                continue
            found = conn.execute(
                select(firings.c.explain)
                .join(runs, runs.c.firing_id == firings.c.id)
                .where(runs.c.workflow_id == wid)
            ).first()
            if found is not None:
                return dict(found[0])
    return None
