"""What the rule pages read: a rule's firings over a period, its latest firings with their
explains, the playbook runs it started and the escalations raised for it.

Firings are counted at `fired_at`, the business time (the signals' time the rule was
evaluated at), as cooldowns count them. Scoping to a person's accounts is the caller's:
these return account ids with every row.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from csautomation.store.engine import aware, table
from csautomation.store.repo import Store
from csautomation.store.tables import EscalationRow, PlaybookRunRow, RuleFiringRow

FIRINGS = table(RuleFiringRow)
RUNS = table(PlaybookRunRow)
ESCALATIONS = table(EscalationRow)


@dataclass(frozen=True)
class Firing:
    id: int
    rule_id: str
    rule_version: str
    account_id: str
    fired_at: datetime
    explain: dict[str, Any]


@dataclass(frozen=True)
class Run:
    workflow_id: str
    account_id: str
    playbook_id: str
    status: str  # running, completed, cancelled
    outcome: str  # as the run recorded it ("" while running)


@dataclass(frozen=True)
class RaisedEscalation:
    workflow_id: str
    account_id: str
    status: str
    source_workflow_id: str  # the playbook run that raised it; "" when the rule did


def firing_times(
    store: Store, since: datetime, rule_id: str | None = None
) -> list[tuple[str, str, datetime]]:
    """(rule id, account id, fired at) of every firing at or after `since`."""
    q = select(FIRINGS.c.rule_id, FIRINGS.c.account_id, FIRINGS.c.fired_at).where(
        FIRINGS.c.fired_at >= since
    )
    if rule_id is not None:
        q = q.where(FIRINGS.c.rule_id == rule_id)
    with store.engine.connect() as conn:
        return [(r, a, aware(at)) for r, a, at in conn.execute(q)]


def rule_ids_fired(store: Store) -> set[str]:
    """Every rule id that has a firing stored."""
    with store.engine.connect() as conn:
        return set(conn.execute(select(FIRINGS.c.rule_id).distinct()).scalars())


def latest_firings(
    store: Store, rule_id: str, accounts: Collection[str] | None, limit: int = 20
) -> list[Firing]:
    """The rule's newest firings, of `accounts` only when given (None: of every account)."""
    q = (
        select(
            FIRINGS.c.id,
            FIRINGS.c.rule_version,
            FIRINGS.c.account_id,
            FIRINGS.c.fired_at,
            FIRINGS.c.explain,
        )
        .where(FIRINGS.c.rule_id == rule_id)
        .order_by(FIRINGS.c.fired_at.desc(), FIRINGS.c.id.desc())
    )
    out: list[Firing] = []
    with store.engine.connect() as conn:
        # read in pages and filter here: a person's accounts may be thousands of ids
        for fid, version, account_id, at, explain in conn.execute(q).yield_per(500):
            if accounts is not None and account_id not in accounts:
                continue
            out.append(
                Firing(
                    id=int(fid),
                    rule_id=rule_id,
                    rule_version=str(version),
                    account_id=str(account_id),
                    fired_at=aware(at),
                    explain=explain if isinstance(explain, dict) else {},
                )
            )
            if len(out) >= limit:
                break
    return out


def runs_of_rule(store: Store, rule_id: str) -> list[Run]:
    """The playbook runs the rule's firings started (escalation runs are `escalations_of`)."""
    q = select(
        RUNS.c.workflow_id,
        RUNS.c.account_id,
        RUNS.c.playbook_id,
        RUNS.c.status,
        RUNS.c.outcome,
    ).where(RUNS.c.rule_id == rule_id, RUNS.c.kind == "playbook")
    with store.engine.connect() as conn:
        return [Run(*(str(v or "") for v in row)) for row in conn.execute(q)]


def escalations_of(store: Store, rule_id: str) -> list[RaisedEscalation]:
    """The escalations raised for the rule: by the rule itself or by a playbook it started."""
    q = select(
        ESCALATIONS.c.workflow_id,
        ESCALATIONS.c.account_id,
        ESCALATIONS.c.status,
        ESCALATIONS.c.state,
    ).where(ESCALATIONS.c.rule_id == rule_id)
    with store.engine.connect() as conn:
        return [
            RaisedEscalation(
                workflow_id=str(wid),
                account_id=str(account_id),
                status=str(status),
                source_workflow_id=str((state or {}).get("source_workflow_id") or ""),
            )
            for wid, account_id, status, state in conn.execute(q)
        ]
