"""The audit report's parts below the firings: each run's steps with what they did, the
tasks with who completed them, the escalations with their transitions, and the ledger.
People are named as people.yaml names them; every value is text, "not recorded" where the
store holds none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from csautomation.audit.conditions import said
from csautomation.audit.escalation_story import round_words
from csautomation.audit.story import duration, moment
from csautomation.playbooks.spec import Playbook, Step
from csautomation.store import ledger
from csautomation.store.engine import aware
from csautomation.store.escalations import Filters, get_escalation, list_escalations
from csautomation.store.ledger import EFFECTS, Entry
from csautomation.store.repo import Store, local_tasks
from csautomation.store.tables import LocalTaskRow

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Names:
    """Person ids as people read them: "Priya Raman (csm-01)"."""

    names: dict[str, str]

    def of(self, person: str | None) -> str:
        if not person:
            return NOT_RECORDED
        name = self.names.get(person)
        return f"{name} ({person})" if name and name != person else person


@dataclass(frozen=True)
class Event:
    at: str
    what: str
    by: str = ""  # whoever acted, named; "" for the system
    detail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepView:
    id: str
    kind: str
    what: str  # what the step does, from the playbook at the run's version
    events: list[Event]


@dataclass(frozen=True)
class TaskView:
    id: str
    subject: str
    assignee: str
    status: str
    due: str
    created: str
    completed_by: str
    completed_at: str
    workflow_id: str
    step_id: str


@dataclass(frozen=True)
class EscalationView:
    workflow_id: str
    severity: str
    status: str
    level: str
    holder: str
    reason: str
    opened_at: str
    resolved_at: str
    raised_by: str
    events: list[Event]


@dataclass(frozen=True)
class LedgerRow:
    at: str
    kind: str
    workflow_id: str
    step_id: str
    what: str


def _when(value: datetime | None) -> str:
    return moment(aware(value)) if value is not None else NOT_RECORDED


# ---- a run's steps -------------------------------------------------------------------------


def step_words(step: Step) -> str:
    """What a step does, in words and without its templates."""
    if step.create_task is not None:
        t = step.create_task
        return (
            f"create a {t.priority.value}-priority task for the account's {t.assignee}, due in "
            f"{duration(t.due_in.total_seconds())}"
        )
    if step.wait is not None:
        return f"wait {duration(step.wait.total_seconds())}"
    if step.wait_for is not None:
        w = step.wait_for
        awaited = (
            f"the task of step {w.task_completed} to be completed"
            if w.task_completed is not None
            else f"{said(w.condition)} (checked every {duration(w.check_every.total_seconds())})"
        )
        return (
            f"wait for {awaited}, up to {duration(w.timeout.total_seconds())}, then {w.on_timeout}"
        )
    if step.branch is not None:
        b = step.branch
        return f"if {said(b.if_)} then {b.then}, else {b.else_}"
    if step.escalate is not None:
        return f"escalate ({step.escalate.severity})"
    if step.notify is not None:
        return f"notify through {step.notify.channel}"
    if step.update_account is not None:
        u = step.update_account
        value = "a text" if isinstance(u.value, str) else json.dumps(u.value)
        return f"set the CRM field {u.field} to {value}"
    assert step.complete is not None
    return f"end the run with outcome {step.complete.outcome}"


def run_steps(
    source: dict[str, Any] | None,
    found: list[Entry],
    workflow_id: str,
    account_id: str,
    store: Store,
    who: Names,
    history: list[Event],
) -> list[StepView]:
    """The run's steps as its playbook version lists them, each with what the ledger and
    the local CRM recorded of it, and for waits and branches what the run's history tells
    (`history`: its timeline); without the playbook, the steps the ledger names."""
    try:
        steps = Playbook.model_validate(source).steps if source is not None else None
    except ValidationError:
        steps = None
    tasks = {t.step_id: t for t in local_tasks(store, workflow_id) if t.kind == "task"}
    if steps is None:  # an escalation's notices, or a playbook the store did not keep
        ids = list(dict.fromkeys(e.step_id for e in found if e.step_id))
        return [
            StepView(i, "", _notice_words(i, who), _step_events(i, found, tasks, who, None, store))
            for i in ids
        ]
    out = []
    for step in steps:
        esc = f"escalation:{account_id}:{workflow_id}:{step.id}" if step.escalate else None
        events = _step_events(step.id, found, tasks, who, esc, store)
        if step.kind in ("wait", "wait_for", "branch"):  # nothing of theirs in the ledger
            said_of = f"step {step.id}: "
            events += [
                Event(e.at, e.what.removeprefix(said_of), e.by, e.detail)
                for e in history
                if e.what.startswith(said_of)
            ]
        out.append(StepView(step.id, step.kind, step_words(step), events))
    return out


def _notice_words(step_id: str, who: Names) -> str:
    """An escalation notice's step id (L2.0:slack:mgr-01) in words; "" for another."""
    parts = step_id.split(":")
    if len(parts) != 3:
        return ""
    return f"tell {who.of(parts[2])} through {parts[1]}: {round_words(step_id)}"


def _step_events(
    step_id: str,
    found: list[Entry],
    tasks: dict[str, LocalTaskRow],
    who: Names,
    escalation_id: str | None,
    store: Store,
) -> list[Event]:
    events = []
    for e in found:
        if e.step_id != step_id:
            continue
        if e.kind in EFFECTS:
            made = "created" if e.detail.get("created") else "found already there"
            detail = []
            task = tasks.get(step_id)
            if e.kind == "create_task" and task is not None:
                detail = [f"for {who.of(task.assignee)}: {task.subject}"]
            events.append(
                Event(moment(e.at), f"{e.connector} record {e.record_id} {made}", "", detail)
            )
        elif e.kind == "task_completed":
            by = str(e.detail.get("by") or "")
            events.append(Event(moment(e.at), "task completed", who.of(by) if by else ""))
        elif e.kind in ("dead_lettered", "redriven", "discarded"):
            events.append(Event(moment(e.at), f"{e.kind.replace('_', ' ')}: {e.detail}"))
    state = get_escalation(store, escalation_id) if escalation_id else None
    if state is not None:
        events.append(
            Event(
                moment(state.opened_at),
                f"escalation opened ({state.severity}); now {state.status}, level {state.level}",
                "",
                [state.workflow_id],
            )
        )
    return events


# ---- tasks, escalations, the ledger --------------------------------------------------------


def tasks(
    store: Store, account_id: str, since: datetime, found: list[Entry], who: Names
) -> list[TaskView]:
    done = {e.record_id: e for e in found if e.kind == "task_completed" and e.connector == "local"}
    out = []
    for t in local_tasks(store):
        if t.account_id != account_id or t.kind != "task" or aware(t.created_at) < since:
            continue
        completion = done.get(str(t.id))
        by = str(completion.detail.get("by") or "") if completion is not None else ""
        out.append(
            TaskView(
                id=str(t.id),
                subject=t.subject,
                assignee=who.of(t.assignee),
                status=t.status,
                due=_when(t.due_at),
                created=_when(t.created_at),
                completed_by=who.of(by) if t.status == "done" else "",
                completed_at=moment(completion.at) if completion is not None else "",
                workflow_id=t.workflow_id,
                step_id=t.step_id,
            )
        )
    return out


def escalations(store: Store, account_id: str, since: datetime, who: Names) -> list[EscalationView]:
    out = []
    for s in list_escalations(store, Filters(status=())):
        last = s.timeline[-1].at if s.timeline else s.opened_at
        if s.account_id != account_id or aware(last) < since:
            continue  # another account's, or nothing happened to it in the period
        out.append(
            EscalationView(
                workflow_id=s.workflow_id,
                severity=s.severity,
                status=s.status,
                level=str(s.level),
                holder=who.of(s.holder) if s.holder else "nobody yet",
                reason=s.reason,
                opened_at=moment(s.opened_at),
                resolved_at=_when(s.resolved_at) if s.status == "resolved" else "",
                raised_by=s.source_workflow_id or (f"rule {s.rule_id}" if s.rule_id else ""),
                events=[
                    Event(
                        moment(e.at),
                        f"{e.kind} (level {e.level})" if e.level else e.kind,
                        "" if e.by == "system" else who.of(e.by),
                        [e.detail] if e.detail else [],
                    )
                    for e in s.timeline
                ],
            )
        )
    return sorted(out, key=lambda v: v.opened_at)


def ledger_rows(found: list[Entry], who: Names) -> list[LedgerRow]:
    return [LedgerRow(moment(e.at), e.kind, e.workflow_id, e.step_id, _what(e, who)) for e in found]


def _what(e: Entry, who: Names) -> str:
    d = e.detail
    if e.kind == "rule_fired":
        return f"firing {e.firing_id}: rule {e.rule_id} version {e.rule_version}"
    if e.kind == "workflow_started":
        if e.playbook_id:
            return f"playbook {e.playbook_id} version {e.playbook_version} (firing {e.firing_id})"
        return f"{d.get('kind', 'run')} (firing {e.firing_id})"
    if e.kind in EFFECTS:
        made = ledger.effect_words(e.kind, bool(d.get("created")))
        return f"{e.connector} record {e.record_id} {made}"
    if e.kind == "escalation":
        by = str(d.get("by") or "")
        actor = "" if by == "system" else f" by {who.of(by)}"
        level = f" (level {d['level']})" if d.get("level") else ""
        return f"{d.get('event')}{actor}{level}"
    if e.kind == "task_completed":
        by = str(d.get("by") or "")
        return f"task {e.record_id} completed" + (f" by {who.of(by)}" if by else "")
    if e.kind == "workflow_closed":
        return f"closed: {d.get('outcome') or d.get('status') or NOT_RECORDED}"
    if e.kind in ("dead_lettered", "redriven", "discarded"):
        return f"dead letter {d.get('dead_letter_id')}: {d.get('action')}"
    return json.dumps(d, default=str)[:120]
