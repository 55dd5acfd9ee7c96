"""What the timeline's readers of a playbook's and an escalation's events share: how they
add a line, say a moment, and read the names the workflows give their waits.

The workflows name each wait and each facts read in the summary Temporal keeps with it:

    step wait-for-call: wait until 2026-12-13T10:00:00Z     a playbook wait and its deadline
    step check-recovery: branch                              the facts a branch read
    step watch-health: wait check                            a wait's goal or condition check
    goal before step outreach                                the goal checked before a step
    level 2: until 2026-12-21T11:00:00Z                      an escalation level's deadline
    snoozed: until 2026-12-22T09:00:00Z                      a snooze's end

Histories recorded before the summaries have none: their waits show without a name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from csautomation.store import ledger

# makes a timeline line (audit/timeline.py's Line): when, what, detail lines, and the person
# id of whoever acted
MakeLine = Callable[[datetime, str, list[str], str], Any]

_UNTIL = re.compile(r"^(?P<what>.+?):? (?:wait )?until (?P<until>\S+)$")


class Story:
    """Adds lines to a timeline's list of lines."""

    def __init__(self, lines: list[Any], make: MakeLine) -> None:
        self.lines = lines
        self.make = make

    def line(self, at: datetime, what: str, detail: list[str] | None = None, by: str = "") -> None:
        self.lines.append(self.make(at, what, detail or [], by))


def moment(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def when(value: Any) -> datetime | None:
    """A time as a history's JSON holds it."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def until(summary: str) -> tuple[str, datetime | None]:
    """A wait's summary split into what it waits for and until when (None: not named)."""
    found = _UNTIL.match(summary)
    if found is None:
        return summary, None
    return found["what"], when(found["until"])


def duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 3600 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def started(workflow_type: str, inp: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A run's header (what ran, for whom, why) and its start line's detail."""
    header: list[str] = []
    if workflow_type == "PlaybookWorkflow":
        book = inp.get("playbook") or {}
        header.append(
            f"playbook {book.get('id', '?')} (version {inp.get('playbook_version', '?')}) for "
            f"account {inp.get('account_id', '?')}"
        )
        why = inp.get("explain") or {}
        if inp.get("rule_id"):
            header.append(
                f"started by rule {inp['rule_id']} (version {inp.get('rule_version', '?')})"
                + (" which matched" if why.get("matched") else "")
            )
        facts = why.get("facts") or {}
        header += [f"  fact {k} = {'missing' if v is None else v}" for k, v in facts.items()]
        return header, [f"input: account {inp.get('account_id', '?')}"]
    if workflow_type == "EscalationWorkflow":
        header.append(
            f"escalation ({inp.get('severity', '?')}) for account {inp.get('account_id', '?')}: "
            f"{inp.get('reason', '')}"
        )
        if inp.get("rule_id") or inp.get("source_workflow_id"):
            header.append(
                f"raised by rule {inp.get('rule_id') or '?'} from {inp.get('source_workflow_id')}"
            )
    return header, []


def result(name: str, inp: dict[str, Any], value: Any) -> list[str]:
    """An activity's result in words: the vendor's record, the escalation opened."""
    if isinstance(value, dict) and {"connector", "record_id"} <= value.keys():
        verb = ledger.effect_words(name, bool(value.get("created")))
        thing = {"create_task": "task", "update_account": "account"}.get(name, "message")
        return [f"{thing} {value['record_id']} in {value['connector']}: {verb}"]
    if name == "open_escalation":
        opened = "was already closed" if value == "closed" else "opened"
        return [f"escalation {inp.get('workflow_id', '?')} {opened}"]
    if value is None:
        return []
    return [f"result: {json.dumps(value, default=str)[:160]}"]


def args(values: list[Any]) -> list[str]:
    """A signal's or update's arguments in words."""
    out = []
    for v in values:
        if isinstance(v, dict):
            out.append(", ".join(f"{k} {val}" for k, val in v.items() if val not in (None, "")))
        elif v is not None:
            out.append(str(v))
    return out
