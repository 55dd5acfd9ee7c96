"""An escalation's history as its transitions: the plan, each level reached and whom it
told, each deadline that passed, and each person's action with who took it and when.

The workflow applies actions in the order they came, with the rules this follows: a second
acknowledgement changes nothing, nothing changes a resolved escalation, a snooze needs a
time still ahead; a completed CRM task acknowledges for whoever completed it (the
connector's word), else for its assignee.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from csautomation.audit.story import MakeLine, Story, moment, when


def round_words(step_id: str) -> str:
    """A notice's round in words: L1.0 -> "level 1", L1.1 -> "level 1 (repeat 1)"; a
    reassignment's notice (reassign-1) as it is."""
    head = step_id.split(":", 1)[0]
    level, _, rest = head.removeprefix("L").partition(".")
    repeat = rest.split("g", 1)[0]
    if not level.isdigit():
        return head
    return f"level {level}" + (f" (repeat {repeat})" if repeat not in ("", "0") else "")


class EscalationStory(Story):
    """Turns an escalation's events into timeline lines, keeping its status as the
    workflow does."""

    def __init__(self, lines: list[Any], make: MakeLine) -> None:
        super().__init__(lines, make)
        self.names: dict[str, str] = {}  # person id -> name, from the plans
        self.status = "open"

    def who(self, person: str) -> str:
        name = self.names.get(person)
        return f"{name} ({person})" if name and name != person else person

    def planned(self, at: datetime, plan: dict[str, Any]) -> None:
        detail = []
        for level in plan.get("levels") or []:
            people = []
            for r in level.get("recipients") or []:
                self.names[str(r.get("person_id"))] = str(r.get("name"))
                people.append(f"{r.get('name')} ({r.get('person_id')}, {r.get('role')})")
            repeat = f" (repeat {level['repeat']})" if level.get("repeat") else ""
            due = when(level.get("ack_by"))
            detail.append(
                f"level {level.get('level')}{repeat}: {', '.join(people) or 'nobody'} via "
                f"{', '.join(level.get('channels') or []) or 'no channel'}"
                + (f"; acknowledge by {moment(due)}" if due else "")
            )
        detail += [str(n) for n in plan.get("notes") or []]
        team = f" for team {plan['team']}" if plan.get("team") else ""
        self.line(at, f"plan{team}: {len(plan.get('levels') or [])} round(s)", detail)

    def notified(self, at: datetime, inp: dict[str, Any], result: Any) -> None:
        step = str(inp.get("step_id") or "")
        person, channel = str(inp.get("person_id") or "?"), inp.get("channel", "?")
        record = ""
        if isinstance(result, dict) and result.get("record_id"):
            made = "created" if result.get("created") else "already there"
            record = f"{result.get('connector')} record {result['record_id']} ({made})"
        if step.startswith("reassign-"):
            what = f"{self.who(person)} told of the reassignment via {channel}"
        else:
            what = f"{round_words(step)}: {self.who(person)} notified via {channel}"
        due = when(inp.get("ack_by"))
        detail = [record] if record else []
        if due is not None and not step.startswith("reassign-"):
            detail.append(f"acknowledge by {moment(due)}")
        self.line(at, what, detail)

    def wait_started(self, at: datetime, what: str, until: datetime) -> None:
        if what.startswith("level "):
            self.line(at, f"{what}: waiting for an acknowledgement until {moment(until)}")

    def wait_ended(self, at: datetime, what: str, until: datetime) -> None:
        if what == "snoozed":
            self.status = "open"
            self.line(at, f"the snooze ended at {moment(until)}: the plan starts again")
        else:
            self.line(at, f"{what}: not acknowledged by {moment(until)}")

    def signaled(self, at: datetime, name: str, args: list[Any]) -> bool:
        """A person's action; False when the signal is not one."""
        if name == "task_completed" and args:
            step = str(args[0])
            by = str(args[1]) if len(args) > 1 and args[1] else ""
            assignee = step.rsplit(":", 1)[-1]
            if by:
                assigned = self.who(assignee)
                note = f"completed the CRM task of {round_words(step)} (assigned to {assigned})"
            else:
                note = (
                    f"completed the CRM task of {round_words(step)}; the connector did not say "
                    "by whom, so its assignee is credited"
                )
            self.act(at, "acknowledge", {"by": by or assignee, "note": note})
            return True
        if name in ("acknowledge", "resolve", "reassign", "snooze") and args:
            action = args[0] if isinstance(args[0], dict) else {}
            self.act(at, name, action)
            return True
        return False

    def act(self, at: datetime, kind: str, action: dict[str, Any]) -> None:
        by = str(action.get("by") or "?")
        note = str(action.get("note") or "")
        detail = [note] if note else []
        who = self.who(by)
        if self.status == "resolved":
            self.line(at, f"{kind} by {who}: no change, already resolved", detail, by)
        elif kind == "acknowledge":
            if self.status == "acknowledged":
                self.line(at, f"acknowledged again by {who}: no change", detail, by)
                return
            self.status = "acknowledged"
            self.line(at, f"acknowledged by {who}", detail, by)
        elif kind == "resolve":
            self.status = "resolved"
            self.line(at, f"resolved by {who}", detail, by)
        elif kind == "reassign":
            to = str(action.get("to") or "?")
            self.line(at, f"reassigned by {who} to {self.who(to)}", detail, by)
        else:
            until = when(action.get("until"))
            if until is None or until <= at:
                self.line(at, f"snooze by {who}: no change, its end is not ahead", detail, by)
                return
            self.status = "snoozed"
            self.line(at, f"snoozed by {who} until {moment(until)}", detail, by)
