"""A workflow's history read as a timeline: what happened, when, why, and who did it.

The history holds the run's input (the playbook at its version, the firing's explain),
every activity with its input and result (a task created, with the vendor's record id),
every facts read (a local activity's marker, with the facts it returned), every timer and
every signal a person sent. What a playbook's and an escalation's events mean is told in
playbook_story.py and escalation_story.py; the names the workflows give their waits and
facts reads, in story.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from csautomation.audit.escalation_story import EscalationStory
from csautomation.audit.playbook_story import PlaybookStory, steps
from csautomation.audit.story import args, duration, result, started, until

__all__ = ["Line", "Timeline", "timeline"]


@dataclass(frozen=True)
class Line:
    at: datetime
    what: str
    detail: list[str] = field(default_factory=list)
    by: str = ""  # the person id of whoever acted, for a person's action


@dataclass
class Timeline:
    workflow_id: str
    workflow_type: str = ""
    run_id: str = ""
    status: str = "running"
    header: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    started_input: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        out = [
            f"{self.workflow_type} {self.workflow_id}"
            + (f"  run {self.run_id}" if self.run_id else "")
        ]
        out += [f"  {h}" for h in self.header]
        for line in self.lines:
            out.append(f"{line.at:%Y-%m-%d %H:%M:%S}Z  {line.what}")
            out += [f"{'':22}{d}" for d in line.detail]
        out.append(f"status: {self.status}")
        return "\n".join(out)


def _decode(payloads: Payloads | None) -> list[Any]:
    if payloads is None or not payloads.payloads:
        return []
    return list(pydantic_data_converter.payload_converter.from_payloads(list(payloads.payloads)))


def _first(payloads: Payloads | None) -> Any:
    values = _decode(payloads)
    return values[0] if values else None


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _summary(event: HistoryEvent) -> str:
    """The name the workflow gave a timer or a local activity (audit/story.py)."""
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return ""
    converter = pydantic_data_converter.payload_converter
    value = converter.from_payloads([event.user_metadata.summary])[0]
    return value if isinstance(value, str) else ""


def _started(tl: Timeline, event: HistoryEvent) -> None:
    a = event.workflow_execution_started_event_attributes
    tl.workflow_type = a.workflow_type.name
    tl.run_id = a.original_execution_run_id
    value = _first(a.input)
    tl.started_input = value if isinstance(value, dict) else {}
    header, detail = started(tl.workflow_type, tl.started_input)
    tl.header += header
    tl.lines.append(Line(_at(event), "workflow started", detail))


_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued as new",
}
# a timer that fires this close before the deadline its summary names has met it (the
# summary keeps whole seconds)
_DEADLINE_SLACK = 1.0


@dataclass(frozen=True)
class _Timer:
    seconds: float
    what: str  # what the summary says it waits for: "step wait-for-call", "level 2", ...
    until: datetime | None  # the deadline it names; None in histories without summaries


class _Reader:
    """Reads a history's events into a timeline, one handler per event type; what a
    playbook's and an escalation's events mean is told by their stories."""

    def __init__(self, workflow_id: str) -> None:
        self.tl = Timeline(workflow_id)
        self.scheduled: dict[int, tuple[str, dict[str, Any]]] = {}
        self.timers: dict[int, _Timer] = {}
        self.waiting: tuple[str, datetime | None] | None = None  # the wait shown last
        self.playbook = PlaybookStory(self.tl.lines, Line)
        self.escalation = EscalationStory(self.tl.lines, Line)
        e = EventType
        self.handlers: dict[int, Callable[[HistoryEvent], None]] = {
            e.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: self.started,
            e.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: self.activity_scheduled,
            e.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: self.activity_completed,
            e.EVENT_TYPE_ACTIVITY_TASK_FAILED: self.activity_failed,
            e.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: self.activity_timed_out,
            e.EVENT_TYPE_MARKER_RECORDED: self.marker,
            e.EVENT_TYPE_TIMER_STARTED: self.timer_started,
            e.EVENT_TYPE_TIMER_FIRED: self.timer_fired,
            e.EVENT_TYPE_TIMER_CANCELED: self.timer_canceled,
            e.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: self.signaled,
            e.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: self.update,
            e.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: self.child_started,
            e.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: self.child_completed,
            e.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: self.completed,
            e.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: self.failed,
            **{kind: self.closed for kind in _CLOSED},
        }

    def read(self, events: Iterable[HistoryEvent]) -> Timeline:
        for event in events:
            handler = self.handlers.get(event.event_type)
            if handler is not None:
                handler(event)
        return self.tl

    def add(self, event: HistoryEvent, what: str, detail: list[str] | None = None) -> None:
        self.tl.lines.append(Line(_at(event), what, detail or []))

    @property
    def escalating(self) -> bool:
        return self.tl.workflow_type == "EscalationWorkflow"

    def started(self, event: HistoryEvent) -> None:
        _started(self.tl, event)
        if self.tl.workflow_type == "PlaybookWorkflow":
            self.playbook.started(self.tl.started_input)

    def activity_scheduled(self, event: HistoryEvent) -> None:
        a = event.activity_task_scheduled_event_attributes
        value = _first(a.input)
        self.scheduled[event.event_id] = (
            a.activity_type.name,
            value if isinstance(value, dict) else {},
        )

    def activity_completed(self, event: HistoryEvent) -> None:
        a = event.activity_task_completed_event_attributes
        name, inp = self.scheduled.get(a.scheduled_event_id, ("?", {}))
        value = _first(a.result)
        if name == "notify_escalation":
            self.escalation.notified(_at(event), inp, value)
            return
        self.add(event, f"{_step_of(inp)}{name} completed", result(name, inp, value))

    def activity_failed(self, event: HistoryEvent) -> None:
        a = event.activity_task_failed_event_attributes
        name, inp = self.scheduled.get(a.scheduled_event_id, ("?", {}))
        self.add(event, f"{_step_of(inp)}{name} failed for good", [a.failure.message[:200]])

    def activity_timed_out(self, event: HistoryEvent) -> None:
        a = event.activity_task_timed_out_event_attributes
        name, inp = self.scheduled.get(a.scheduled_event_id, ("?", {}))
        self.add(event, f"{_step_of(inp)}{name} timed out")

    def marker(self, event: HistoryEvent) -> None:
        """A local activity's record: the facts a check read, an escalation's plan."""
        a = event.marker_recorded_event_attributes
        if a.marker_name != "core_local_activity" or "data" not in a.details:
            return
        data = _first(a.details["data"])
        kind = data.get("activity_type") if isinstance(data, dict) else None
        result = _first(a.details["result"]) if "result" in a.details else None
        if kind == "plan_escalation" and isinstance(result, dict):
            self.escalation.planned(_at(event), result)
        elif kind == "read_account_facts" and isinstance(result, dict):
            self.playbook.facts_read(_at(event), _summary(event), result)

    def timer_started(self, event: HistoryEvent) -> None:
        timeout = event.timer_started_event_attributes.start_to_fire_timeout
        what, deadline = until(_summary(event))
        self.timers[event.event_id] = _Timer(timeout.ToTimedelta().total_seconds(), what, deadline)
        if deadline is None or self.waiting == (what, deadline):
            return  # not named (an older history), or the same wait going on
        self.waiting = (what, deadline)
        story = self.escalation if self.escalating else self.playbook
        story.wait_started(_at(event), what, deadline)

    def timer_fired(self, event: HistoryEvent) -> None:
        timer = self.timers.get(event.timer_fired_event_attributes.started_event_id)
        if timer is None or timer.until is None:
            self.add(event, f"waited {duration(round(timer.seconds)) if timer else '?'}")
            return
        if (timer.until - _at(event)).total_seconds() > _DEADLINE_SLACK:
            return  # a check's tick inside a longer wait: the check itself is shown
        self.waiting = None
        story = self.escalation if self.escalating else self.playbook
        story.wait_ended(_at(event), timer.what, timer.until)

    def timer_canceled(self, event: HistoryEvent) -> None:
        timer = self.timers.get(event.timer_canceled_event_attributes.started_event_id)
        if timer is None or timer.until is None or self.escalating:
            return  # an escalation's wait ends with a person's action, shown with it
        self.waiting = None
        self.playbook.wait_over(_at(event), timer.what, timer.until)

    def signaled(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_signaled_event_attributes
        values = _decode(a.input)
        if self.escalating and self.escalation.signaled(_at(event), a.signal_name, values):
            self.waiting = None  # the workflow waits again, with its own deadline
            return
        if a.signal_name == "task_completed" and values:
            self.playbook.task_completed(_at(event), values)
            return
        self.add(event, f"signal {a.signal_name}", args(values))

    def update(self, event: HistoryEvent) -> None:
        req = event.workflow_execution_update_accepted_event_attributes.accepted_request
        self.add(event, f"update {req.input.name}", args(_decode(req.input.args)))

    def child_started(self, event: HistoryEvent) -> None:
        a = event.start_child_workflow_execution_initiated_event_attributes
        self.add(event, f"child {a.workflow_type.name} {a.workflow_id} started")

    def child_completed(self, event: HistoryEvent) -> None:
        a = event.child_workflow_execution_completed_event_attributes
        self.add(event, f"child {a.workflow_execution.workflow_id} completed")

    def completed(self, event: HistoryEvent) -> None:
        result = _first(event.workflow_execution_completed_event_attributes.result)
        outcome = result.get("outcome") if isinstance(result, dict) else result
        self.tl.status = f"completed, outcome {outcome}" if outcome else "completed"
        records = result.get("steps") if isinstance(result, dict) else None
        self.add(event, self.tl.status, steps(records or []))

    def failed(self, event: HistoryEvent) -> None:
        message = event.workflow_execution_failed_event_attributes.failure.message
        self.tl.status = f"failed: {message[:200]}"
        self.add(event, self.tl.status)

    def closed(self, event: HistoryEvent) -> None:
        self.tl.status = _CLOSED[event.event_type]
        self.add(event, self.tl.status)


def _step_of(inp: dict[str, Any]) -> str:
    if inp.get("step_id"):
        return f"step {inp['step_id']}: "
    if isinstance(inp.get("input"), dict) and inp.get("workflow_id"):  # open_escalation's
        return f"step {str(inp['workflow_id']).rsplit(':', 1)[-1]}: "
    return ""


def timeline(history: WorkflowHistory) -> Timeline:
    """The history as people read it: what happened, when, why, and who did it."""
    return _Reader(history.workflow_id).read(history.events)
