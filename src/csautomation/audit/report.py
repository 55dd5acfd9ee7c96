"""One account's audit report: why each task exists, which rule version fired on which
facts, which playbook version ran, each step, task and escalation with who acted and when,
and whether the decision ledger's chain holds. `report_html.render` writes it as one HTML
page that needs no network to read.

Everything comes from the store: the firings with their explains and the rules kept at
their versions, the runs index with the playbooks kept at theirs, the local CRM's tasks,
the escalations with their timelines and the decision ledger. A run's workflow history,
when given (exported files or the Temporal server), adds its own timeline: the waits, the
branch decisions with the facts they read, every signal.

The period is read by recorded time, as the ledger keeps it: a firing counts when it was
recorded (dispatched) or fired in the period, so a firing recorded today for an older
signal is in; both times are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from temporalio.client import WorkflowHistory

from csautomation.audit.report_parts import (
    EscalationView,
    Event,
    LedgerRow,
    Names,
    StepView,
    TaskView,
    escalations,
    ledger_rows,
    run_steps,
    tasks,
)
from csautomation.audit.story import moment
from csautomation.audit.timeline import timeline
from csautomation.rules.explain import SYMBOL
from csautomation.store.chain import verify as verify_chain
from csautomation.store.engine import aware, table
from csautomation.store.ledger import Entry, Query, entries, playbook_source, rule_source
from csautomation.store.repo import Store
from csautomation.store.tables import PlaybookRunRow, RuleFiringRow

__all__ = [
    "ChainResult",
    "FiringView",
    "Report",
    "RunView",
    "build_report",
    "chain_not_verified",
    "chain_verified",
    "run_ids",
]


@dataclass(frozen=True)
class ChainResult:
    verified: bool | None  # None: not checked
    text: str


def chain_not_verified(store: Store) -> ChainResult:  # noqa: ARG001
    """The seam for the ledger's chain check (`csauto audit verify`): until it is wired
    in, the report says the chain was not verified, and how to verify it."""
    return ChainResult(None, "chain not verified (csauto audit verify)")


def chain_verified(store: Store) -> ChainResult:
    """The ledger's chain check, as `csauto audit verify` makes it (store/chain.py)."""
    result = verify_chain(store.engine)
    guards = ", ".join(g.render() for g in result.guards)
    if result.ok:
        head = f"head #{result.head_id} {result.head_hash}" if result.head_id else "empty"
        return ChainResult(True, f"chain verified: {result.entries} entries, {guards}; {head}")
    broken = [b.render() for b in result.breaks[:3]]
    more = len(result.breaks) + result.more_breaks - len(broken)
    found = "; ".join([*broken, *([f"{more} more"] if more else []), guards])
    return ChainResult(False, f"chain NOT verified: {found} (csauto audit verify)")


ChainCheck = Callable[[Store], ChainResult]


@dataclass(frozen=True)
class RunView:
    workflow_id: str
    kind: str
    playbook: str  # "usage-recovery (Usage recovery)"
    version: str
    version_note: str  # whether the store keeps the playbook at this version
    status: str
    started_at: str
    closed_at: str
    steps: list[StepView]
    history: list[Event] = field(default_factory=list)
    history_note: str = ""


@dataclass(frozen=True)
class FiringView:
    id: int
    rule: str  # "usage-decline (Usage declining)"
    version: str
    version_note: str
    priority: str
    fired_at: str  # business time: the signal's
    recorded_at: str  # when it was dispatched
    matched: bool
    facts: list[tuple[str, str]]
    checks: list[tuple[bool, str]]
    runs: list[RunView]


@dataclass(frozen=True)
class Report:
    account_id: str
    account_name: str
    owner: str
    since: str
    generated_at: str
    chain: ChainResult
    firings: list[FiringView]
    other_runs: list[RunView]  # runs in the period started by firings before it
    escalations: list[EscalationView]
    tasks: list[TaskView]
    ledger: list[LedgerRow]
    notes: list[str] = field(default_factory=list)


def build_report(
    store: Store,
    account_id: str,
    since: datetime,
    names: Mapping[str, str] | None = None,
    histories: Mapping[str, WorkflowHistory] | None = None,
    history_notes: Mapping[str, str] | None = None,
    chain: ChainCheck = chain_not_verified,
    now: datetime | None = None,
) -> Report:
    """The account's report for the period from `since`. `names`: person id -> name
    (people.yaml); `histories`: workflow id -> its history, for the runs' own timelines;
    `history_notes`: why a run's history is not there."""
    who = Names(dict(names or {}))
    account = store.account(account_id)
    found = entries(store, Query(account_id=account_id, since=since))
    firings = _firings(store, account_id, since)
    runs = _runs(store, account_id, since, [f["id"] for f in firings])
    by_run = _by_run(store, account_id, found)
    notes = history_notes or {}
    views = [
        (r["firing_id"], _run_view(store, r, by_run, who, histories or {}, notes)) for r in runs
    ]
    firing_views = [
        _firing_view(store, f, [v for fid, v in views if fid == f["id"]]) for f in firings
    ]
    shown = {r.workflow_id for f in firing_views for r in f.runs}
    return Report(
        account_id=account_id,
        account_name=account.name if account is not None else account_id,
        owner=who.of(account.owner) if account is not None and account.owner else "not known",
        since=moment(since),
        generated_at=moment(now or datetime.now(UTC)),
        chain=chain(store),
        firings=firing_views,
        other_runs=[v for _, v in views if v.workflow_id not in shown],
        escalations=escalations(store, account_id, since, who),
        tasks=tasks(store, account_id, since, found, who),
        ledger=ledger_rows(found, who),
        notes=[] if account is not None else [f"no account {account_id} in the store"],
    )


def run_ids(store: Store, account_id: str, since: datetime) -> list[str]:
    """The workflows the report shows as runs: to fetch their histories first."""
    firings = [f["id"] for f in _firings(store, account_id, since)]
    return [str(r["workflow_id"]) for r in _runs(store, account_id, since, firings)]


def _firings(store: Store, account_id: str, since: datetime) -> list[dict[str, Any]]:
    t = table(RuleFiringRow)
    q = (
        select(t)
        .where(t.c.account_id == account_id)
        .where(or_(t.c.fired_at >= since, t.c.dispatched_at >= since))
        .order_by(t.c.fired_at, t.c.id)
    )
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def _runs(
    store: Store, account_id: str, since: datetime, firing_ids: list[int]
) -> list[dict[str, Any]]:
    t = table(PlaybookRunRow)
    q = (
        select(t)
        .where(t.c.account_id == account_id)
        .where(or_(t.c.started_at >= since, t.c.firing_id.in_(firing_ids)))
        .order_by(t.c.started_at, t.c.workflow_id)
    )
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def _by_run(store: Store, account_id: str, found: list[Entry]) -> dict[str, list[Entry]]:
    """The ledger's entries per workflow, the period's and the runs' own before it."""
    out: dict[str, list[Entry]] = {}
    seen = {e.key for e in found}
    older = [e for e in entries(store, Query(account_id=account_id)) if e.key not in seen]
    for e in [*older, *found]:
        if e.workflow_id:
            out.setdefault(e.workflow_id, []).append(e)
    return out


def _when(value: Any) -> str:
    return moment(aware(value)) if isinstance(value, datetime) else "not recorded"


def _firing_view(store: Store, row: dict[str, Any], runs: list[RunView]) -> FiringView:
    explain = dict(row.get("explain") or {})
    source = rule_source(store, row["rule_version"])
    name = (source or {}).get("name")
    facts = explain.get("facts") or {}
    return FiringView(
        id=int(row["id"]),
        rule=f"{row['rule_id']} ({name})" if name else str(row["rule_id"]),
        version=str(row["rule_version"]),
        version_note=(
            "kept in the store at this version (csauto rules replay re-evaluates it)"
            if source is not None
            else "not kept in the store (it fired before the decision ledger kept rules)"
        ),
        priority=str(row.get("priority") or ""),
        fired_at=_when(row.get("fired_at")),
        recorded_at=_when(row.get("dispatched_at")),
        matched=bool(explain.get("matched")),
        facts=[(k, "missing" if v is None else str(v)) for k, v in facts.items()],
        checks=_checks(explain.get("conditions")),
        runs=runs,
    )


def _checks(node: Any) -> list[tuple[bool, str]]:
    """An explain's comparisons, in order: whether each held, and in words."""
    if not isinstance(node, dict):
        return []
    check = node.get("check")
    if isinstance(check, dict):
        op, expected, actual = str(check.get("op")), check.get("expected"), check.get("actual")
        if op == "between" and isinstance(expected, list) and len(expected) == 2:
            wanted = f"{expected[0]!r} and {expected[1]!r}"
        else:
            wanted = "" if op == "exists" else repr(expected)
        shown = "missing" if actual is None else repr(actual)
        text = f"{check.get('fact')} {SYMBOL.get(op, op)} {wanted}".rstrip()
        return [(bool(check.get("result")), f"{text} (value: {shown})")]
    out: list[tuple[bool, str]] = []
    for key in ("all", "any", "not"):
        for child in node.get(key) or []:
            out += _checks(child)
    return out


def _run_view(
    store: Store,
    row: dict[str, Any],
    by_run: dict[str, list[Entry]],
    who: Names,
    histories: Mapping[str, WorkflowHistory],
    notes: Mapping[str, str],
) -> RunView:
    wid = str(row["workflow_id"])
    version = str(row.get("playbook_version") or "")
    source = playbook_source(store, version) if version else None
    history = histories.get(wid)
    events, note = _history(history, who) if history is not None else ([], notes.get(wid, ""))
    if source is None and history is not None:  # the run's input holds its playbook
        source = dict(timeline(history).started_input.get("playbook") or {}) or None
    name = (source or {}).get("name")
    playbook = str(row.get("playbook_id") or "")
    return RunView(
        workflow_id=wid,
        kind=str(row.get("kind") or "playbook"),
        playbook=f"{playbook} ({name})" if name else playbook,
        version=version,
        version_note=_version_note(version, store),
        status=_status(str(row.get("status") or ""), str(row.get("outcome") or "")),
        started_at=_when(row.get("started_at")),
        closed_at=_when(row.get("closed_at")),
        steps=run_steps(
            source, by_run.get(wid, []), wid, str(row.get("account_id")), store, who, events
        ),
        history=events,
        history_note=note,
    )


def _status(status: str, outcome: str) -> str:
    return f"{status}: {outcome}" if outcome and outcome != status else status or "running"


def _version_note(version: str, store: Store) -> str:
    if not version:
        return ""
    if playbook_source(store, version) is not None:
        return "kept in the store at this version"
    return "not kept in the store"


def _history(history: WorkflowHistory, who: Names) -> tuple[list[Event], str]:
    tl = timeline(history)
    events = [
        Event(moment(line.at), line.what, who.of(line.by) if line.by else "", list(line.detail))
        for line in tl.lines
    ]
    return events, f"from the workflow's history ({len(history.events)} events): {tl.status}"
