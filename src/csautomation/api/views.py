"""What the pages show, computed in Python so the templates only lay it out: times in
words, the list's rows, the timeline with names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from csautomation.escalation.people import People
from csautomation.workflows.types import EscalationEvent


def page_url(workflow_id: str) -> str:
    return f"/escalations/{quote(workflow_id, safe='')}"


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def reason(text: str) -> str:
    """An escalation's reason as rendered when it opened. A template that failed then is
    stored as written: its placeholders mean nothing to a reader, so they are not shown."""
    if not text.strip():
        return "—"
    if "{{" in text or "{%" in text:
        return "(its reason could not be filled in when it opened)"
    return text


def money(amount: float | None) -> str:
    return "—" if amount is None else f"{amount:,.0f}"


def duration(seconds: float) -> str:
    """3 d 4 h, 2 h 5 min, 12 min, under a minute."""
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min" if mins else "under a minute"


def time_left(deadline: datetime | None, now: datetime) -> tuple[str, bool]:
    """Words for the time to a deadline, and whether it has passed."""
    if deadline is None:
        return "", False
    seconds = (deadline - now).total_seconds()
    if seconds < 0:
        return f"overdue by {duration(seconds)}", True
    return duration(seconds), False


def person_name(people: People, person_id: str, known: str = "") -> str:
    if not person_id:
        return ""
    if known and known != person_id:
        return known
    person = people.get(person_id)
    return person.name if person is not None else person_id


@dataclass(frozen=True)
class Step:
    at: str
    kind: str
    by: str
    level: int
    detail: str


def timeline(events: Sequence[EscalationEvent], people: People) -> list[Step]:
    return [
        Step(
            at=when(e.at),
            kind=e.kind,
            by="system" if e.by == "system" else person_name(people, e.by),
            level=e.level,
            detail=e.detail,
        )
        for e in events
    ]
