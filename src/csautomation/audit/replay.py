"""Replay a recorded workflow history against the current code, and read it as a timeline.

A history is what Temporal recorded of one run: its input (the playbook at its version, the
firing's explain), every activity scheduled with its input and result (tasks created, with
the vendor's record id), every timer, signal and update (a manager's acknowledgement), and
how it ended. `replay` runs the current workflow code over it, sandboxed as in the tests:
code that would now issue different commands than the ones recorded is non-deterministic,
and a worker running it would fail that run's next workflow task. It also sees what the
code schedules on the way (audit/capture.py), which audit/compare.py compares with what
was recorded. `timeline` reads the same history for people: what happened, when, and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from csautomation.audit.capture import Scheduled, Seen
from csautomation.errors import CsAutomationError
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow

WORKFLOWS = (PlaybookWorkflow, EscalationWorkflow)


class HistoryFileError(CsAutomationError):
    pass


@dataclass(frozen=True)
class Verdict:
    deterministic: bool
    events: int
    problem: str = ""  # what diverged, or why the replay could not run
    detail: str = ""  # the SDK's finding, with the event it names
    replayed: bool = True  # False: the current code has no such workflow to replay it on
    at_step: str = ""  # the playbook step the current code was at when it diverged
    scheduled: tuple[Scheduled, ...] = ()  # each activity the current code scheduled

    def render(self) -> str:
        if self.deterministic:
            return f"deterministic: the current code replays all {self.events} events"
        if not self.replayed:
            return f"could not replay: {self.problem}"
        return f"NOT deterministic: {self.problem}"


async def replay(history: WorkflowHistory, runner: WorkflowRunner | None = None) -> Verdict:
    """Replay `history` against the current workflow code (sandboxed, unless another
    `runner` is given), noting each activity it schedules and each step it enters."""
    events = len(history.events)
    kind = workflow_type(history)
    known = [w.__name__ for w in WORKFLOWS]  # their @workflow.defn names
    if kind not in known:
        problem = f"the current code has no workflow '{kind}' (it has {', '.join(known)})"
        return Verdict(False, events, problem, replayed=False)
    seen = Seen()
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        data_converter=pydantic_data_converter,
        runtime=_quiet_runtime(),
        interceptors=[seen],
        workflow_runner=runner or SandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    scheduled = tuple(seen.scheduled)
    if failure is None:
        return Verdict(True, events, scheduled=scheduled)
    at_step = seen.steps[-1] if seen.steps else ""
    if isinstance(failure, NondeterminismError):
        problem = (
            "the current code issues different commands than the ones this history "
            "recorded, so a worker would fail this run's next workflow task. "
        )
        detail = _divergence(failure)
    else:
        problem = "the current code fails on this history: "
        detail = f"{type(failure).__name__}: {failure}"
    return Verdict(False, events, problem + detail, detail, True, at_step, scheduled)


def workflow_type(history: WorkflowHistory) -> str:
    first = history.events[0] if history.events else None
    if first is None or not first.HasField("workflow_execution_started_event_attributes"):
        return ""
    return first.workflow_execution_started_event_attributes.workflow_type.name


def _divergence(error: Exception) -> str:
    """The SDK's finding in a sentence, with the event it names when it names one."""
    text = str(error).strip()
    found = re.search(r'message: "(?:\[\w+\] )?(?:Nondeterminism error: )?([^"]+)"', text)
    finding = found.group(1) if found else text
    event = re.search(r"HistoryEvent\(id: (\d+), (\w+)\)", finding) or re.search(
        r"event (?:id )?(\d+)()", finding, re.IGNORECASE
    )
    if event is None:
        return f"Divergence: {finding}"
    kind = f" ({event.group(2)})" if event.group(2) else ""
    return f"Diverges at event {event.group(1)}{kind}: {finding}"


_RUNTIME: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """A runtime whose core logs errors only: the verdict reports the divergence itself,
    instead of the core's warning about the workflow task it would fail."""
    global _RUNTIME
    if _RUNTIME is None:
        logging = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        _RUNTIME = Runtime(telemetry=TelemetryConfig(logging=logging))
    return _RUNTIME


# ---- history files -------------------------------------------------------------------------


def read_history(path: Path, workflow_id: str | None = None) -> WorkflowHistory:
    """A history file as `csauto history export` or Temporal's UI and CLI write it. Its
    workflow id: `workflow_id` when given, else the one the file carries (ours write it
    beside the events; a newer server records it in the start event), else the file's
    name, for files exported before they carried it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HistoryFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryFileError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise HistoryFileError(f"{path}: not a workflow history (no 'events' list)")
    try:
        history = WorkflowHistory.from_json(
            workflow_id or _id_inside(data) or _id_from_name(path), data
        )
    except Exception as exc:  # protobuf's ParseError and friends: a malformed event
        raise HistoryFileError(f"{path}: not a workflow history: {exc}") from None
    if not workflow_type(history):
        raise HistoryFileError(f"{path}: not a workflow history (it does not begin with a start)")
    return history


def history_json(history: WorkflowHistory) -> str:
    """A history as a file: Temporal's JSON, with the workflow id beside the events (the
    SDK's reader, `WorkflowHistory.from_json`, skips fields it does not know)."""
    return json.dumps({"workflowId": history.workflow_id, **history.to_json_dict()}, indent=2)


def file_name(workflow_id: str) -> str:
    """A history file's name: the workflow id, percent-encoded."""
    return quote(workflow_id, safe="") + ".json"


def _id_inside(data: dict[str, Any]) -> str:
    given = data.get("workflowId")
    if isinstance(given, str) and given:
        return given
    first = data["events"][0] if data["events"] else None
    started = (
        first.get("workflowExecutionStartedEventAttributes") if isinstance(first, dict) else None
    )
    found = started.get("workflowId") if isinstance(started, dict) else None
    return found if isinstance(found, str) else ""


def _id_from_name(path: Path) -> str:
    return unquote(path.stem)


# ---- the timeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    at: datetime
    what: str
    detail: list[str] = field(default_factory=list)


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


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 3600 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _facts_lines(explain: dict[str, Any]) -> list[str]:
    facts = explain.get("facts") or {}
    out = [f"fact {k} = {'missing' if v is None else v}" for k, v in facts.items()]
    return out


def _started(tl: Timeline, event: HistoryEvent) -> None:
    a = event.workflow_execution_started_event_attributes
    tl.workflow_type = a.workflow_type.name
    tl.run_id = a.original_execution_run_id
    value = _first(a.input)
    tl.started_input = value if isinstance(value, dict) else {}
    inp = tl.started_input
    if tl.workflow_type == "PlaybookWorkflow":
        book = inp.get("playbook") or {}
        tl.header.append(
            f"playbook {book.get('id', '?')} (version {inp.get('playbook_version', '?')}) for "
            f"account {inp.get('account_id', '?')}"
        )
        why = inp.get("explain") or {}
        if inp.get("rule_id"):
            tl.header.append(
                f"started by rule {inp['rule_id']} (version {inp.get('rule_version', '?')})"
                + (" which matched" if why.get("matched") else "")
            )
        tl.header += [f"  {f}" for f in _facts_lines(why)]
        detail = [f"input: account {inp.get('account_id', '?')}"]
    elif tl.workflow_type == "EscalationWorkflow":
        tl.header.append(
            f"escalation ({inp.get('severity', '?')}) for account {inp.get('account_id', '?')}: "
            f"{inp.get('reason', '')}"
        )
        if inp.get("rule_id") or inp.get("source_workflow_id"):
            tl.header.append(
                f"raised by rule {inp.get('rule_id') or '?'} from {inp.get('source_workflow_id')}"
            )
        detail = []
    else:
        detail = []
    tl.lines.append(Line(_at(event), "workflow started", detail))


def _result_text(name: str, inp: dict[str, Any], result: Any) -> list[str]:
    if isinstance(result, dict) and {"connector", "record_id"} <= result.keys():
        verb = "created" if result.get("created") else "already there (deduplicated)"
        thing = {"create_task": "task", "update_account": "update"}.get(name, "message")
        return [f"{thing} {result['record_id']} in {result['connector']}: {verb}"]
    if name == "read_account_facts" and isinstance(result, dict):
        shown = {k: result[k] for k in sorted(result)[:6]}
        return [f"read {len(result)} facts, e.g. {json.dumps(shown, default=str)}"]
    if name == "open_escalation":
        opened = "was already closed" if result == "closed" else "opened"
        return [f"escalation {inp.get('workflow_id', '?')} {opened}"]
    if name == "plan_escalation" and isinstance(result, dict):
        levels = result.get("levels") or []
        return [f"plan: {len(levels)} level(s)"]
    if name == "record_escalation":
        state = inp.get("state") or {}
        return [
            f"status {state.get('status', '?')}, level {state.get('level', '?')}, "
            f"holder {state.get('holder', '') or '-'}"
        ]
    if result is None:
        return []
    return [f"result: {json.dumps(result, default=str)[:160]}"]


def _step(inp: dict[str, Any]) -> str:
    return f"step {inp['step_id']}: " if inp.get("step_id") else ""


_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued as new",
}


class _Reader:
    """Reads a history's events into a timeline, one handler per event type."""

    def __init__(self, workflow_id: str) -> None:
        self.tl = Timeline(workflow_id)
        self.scheduled: dict[int, tuple[str, dict[str, Any]]] = {}
        self.timers: dict[int, str] = {}
        e = EventType
        self.handlers: dict[int, Callable[[HistoryEvent], None]] = {
            e.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: lambda ev: _started(self.tl, ev),
            e.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: self.activity_scheduled,
            e.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: self.activity_completed,
            e.EVENT_TYPE_ACTIVITY_TASK_FAILED: self.activity_failed,
            e.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: self.activity_timed_out,
            e.EVENT_TYPE_TIMER_STARTED: self.timer_started,
            e.EVENT_TYPE_TIMER_FIRED: self.timer_fired,
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
        self.add(event, f"{_step(inp)}{name} completed", _result_text(name, inp, _first(a.result)))

    def activity_failed(self, event: HistoryEvent) -> None:
        a = event.activity_task_failed_event_attributes
        name, inp = self.scheduled.get(a.scheduled_event_id, ("?", {}))
        self.add(event, f"{_step(inp)}{name} failed for good", [a.failure.message[:200]])

    def activity_timed_out(self, event: HistoryEvent) -> None:
        a = event.activity_task_timed_out_event_attributes
        name, inp = self.scheduled.get(a.scheduled_event_id, ("?", {}))
        self.add(event, f"{_step(inp)}{name} timed out")

    def timer_started(self, event: HistoryEvent) -> None:
        timeout = event.timer_started_event_attributes.start_to_fire_timeout
        self.timers[event.event_id] = _duration(timeout.ToTimedelta().total_seconds())

    def timer_fired(self, event: HistoryEvent) -> None:
        started = event.timer_fired_event_attributes.started_event_id
        self.add(event, f"waited {self.timers.get(started, '?')}")

    def signaled(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_signaled_event_attributes
        self.add(event, f"signal {a.signal_name}", _args(_decode(a.input)))

    def update(self, event: HistoryEvent) -> None:
        req = event.workflow_execution_update_accepted_event_attributes.accepted_request
        self.add(event, f"update {req.input.name}", _args(_decode(req.input.args)))

    def child_started(self, event: HistoryEvent) -> None:
        a = event.start_child_workflow_execution_initiated_event_attributes
        self.add(event, f"child {a.workflow_type.name} {a.workflow_id} started")

    def child_completed(self, event: HistoryEvent) -> None:
        a = event.child_workflow_execution_completed_event_attributes
        self.add(event, f"child {a.workflow_execution.workflow_id} completed")

    def completed(self, event: HistoryEvent) -> None:
        result = _first(event.workflow_execution_completed_event_attributes.result)
        outcome = result.get("outcome") if isinstance(result, dict) else None
        self.tl.status = f"completed, outcome {outcome}" if outcome else "completed"
        self.add(event, self.tl.status)

    def failed(self, event: HistoryEvent) -> None:
        message = event.workflow_execution_failed_event_attributes.failure.message
        self.tl.status = f"failed: {message[:200]}"
        self.add(event, self.tl.status)

    def closed(self, event: HistoryEvent) -> None:
        self.tl.status = _CLOSED[event.event_type]
        self.add(event, self.tl.status)


def timeline(history: WorkflowHistory) -> Timeline:
    """The history as people read it: what happened, when, and why."""
    return _Reader(history.workflow_id).read(history.events)


def _args(values: list[Any]) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, dict):
            out.append(", ".join(f"{k} {val}" for k, val in v.items() if val not in (None, "")))
        elif v is not None:
            out.append(str(v))
    return out
