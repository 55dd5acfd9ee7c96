"""A playbook run's history as its story: each wait with its step and deadline, each
branch and goal with the facts it read, their values and which way it went, and each
completed task with whoever completed it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from csautomation.audit import conditions
from csautomation.audit.story import MakeLine, Story, duration, moment, when
from csautomation.playbooks.spec import Playbook, Step

_STEP_CHECK = re.compile(r"^step (?P<step>\S+): (?P<what>branch|wait check)$")
_GOAL = re.compile(r"^goal before step (?P<step>\S+)$")


class PlaybookStory(Story):
    def __init__(self, lines: list[Any], make: MakeLine) -> None:
        super().__init__(lines, make)
        self.playbook: Playbook | None = None
        self.goal_line: Any = None  # the last line of a run of goal checks not met
        self.goal_times = 0

    def started(self, inp: dict[str, Any]) -> None:
        self.playbook = conditions.playbook_of(inp)

    def step(self, what: str) -> Step | None:
        return conditions.step_of(self.playbook, what.removeprefix("step "))

    # -- the facts a check read ----------------------------------------------------------
    def facts_read(self, at: datetime, summary: str, facts: dict[str, Any]) -> None:
        goal_read = _GOAL.match(summary)
        checked = goal_read or _STEP_CHECK.match(summary)
        if checked is None or self.playbook is None:
            return  # recorded before reads were named: which check read them is not told
        goal = self.playbook.goal
        is_wait = not goal_read and checked["what"] == "wait check"
        if goal is not None and (goal_read or is_wait):
            self.goal_checked(at, checked["step"], conditions.decide(goal.condition, facts))
        step = self.step(checked["step"])
        if step is None:
            return
        if step.branch is not None and not goal_read and checked["what"] == "branch":
            b = step.branch
            d = conditions.decide(b.if_, facts)
            went = f"then {b.then}" if d.holds else f"else {b.else_}"
            verdict = "holds" if d.holds else "does not hold"
            self.line(at, f"step {step.id}: branch on {d.condition}: {verdict}, {went}", d.checks)
        w = step.wait_for
        if w is not None and w.condition is not None and is_wait:
            d = conditions.decide(w.condition, facts)
            verdict = "holds: the wait is over" if d.holds else "does not hold yet"
            self.line(at, f"step {step.id}: {d.condition} {verdict}", d.checks)

    def goal_checked(self, at: datetime, step: str, d: conditions.Decision) -> None:
        """A goal met ends the run, so it is shown. One not met is shown when its values
        change; the checks that read the same values are counted on the line shown."""
        if d.holds:
            self.line(at, f"goal met ({d.condition}): the playbook ends", d.checks)
            return
        what = f"goal not met ({d.condition})"
        shown = self.goal_line
        if shown is not None and shown in self.lines and shown.detail[: len(d.checks)] == d.checks:
            self.goal_times += 1
            checked = f"checked {self.goal_times} times up to {moment(at)} (before step {step})"
            index = self.lines.index(shown)
            self.lines[index] = self.goal_line = self.make(shown.at, what, [*d.checks, checked], "")
            return
        self.goal_times = 1
        self.line(at, what, d.checks)
        self.goal_line = self.lines[-1]

    # -- waits ---------------------------------------------------------------------------
    def wait_started(self, at: datetime, what: str, until: datetime) -> None:
        step = self.step(what)
        if step is not None and step.wait is not None:
            words = f"waiting {duration(step.wait.total_seconds())}, until {moment(until)}"
        elif step is not None and step.wait_for is not None:
            w = step.wait_for
            if w.task_completed is not None:
                awaited = f"for the task of step {w.task_completed} to be completed"
            else:
                awaited = f"for {conditions.said(w.condition)} to hold"
            words = (
                f"waiting {awaited}, until {moment(until)} (timeout "
                f"{duration(w.timeout.total_seconds())}, then {w.on_timeout})"
            )
        else:
            words = f"waiting until {moment(until)}"
        self.line(at, f"{what}: {words}")

    def wait_ended(self, at: datetime, what: str, until: datetime) -> None:
        step = self.step(what)
        if step is not None and step.wait_for is not None:
            then = step.wait_for.on_timeout
            self.line(at, f"{what}: timed out at {moment(until)}, then {then}")
        else:
            self.line(at, f"{what}: waited until {moment(until)}")

    def wait_over(self, at: datetime, what: str, until: datetime) -> None:
        self.line(at, f"{what}: the wait is over before its deadline {moment(until)}")

    def task_completed(self, at: datetime, args: list[Any]) -> None:
        by = str(args[1]) if len(args) > 1 and args[1] else ""
        who = f"by {by}" if by else "(the connector did not say by whom)"
        self.line(at, f"the task of step {args[0]} was completed {who}", by=by)


def steps(records: list[Any]) -> list[str]:
    """A finished playbook's steps as it recorded them: when each ran, where it went."""
    out = []
    for r in records:
        if not isinstance(r, dict):
            continue
        began, ended = when(r.get("started_at")), when(r.get("ended_at"))
        span = moment(began) if began else "?"
        if began and ended and ended - began >= timedelta(seconds=1):
            span += f" to {moment(ended)}"
        out.append(f"step {r.get('step_id')} ({r.get('kind')}) {span}: {r.get('result') or '-'}")
    return out
