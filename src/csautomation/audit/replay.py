"""Replay a recorded workflow history against the current code.

A history is what Temporal recorded of one run: its input (the playbook at its version, the
firing's explain), every activity scheduled with its input and result (tasks created, with
the vendor's record id), every timer, signal and update (a manager's acknowledgement), and
how it ended. `replay` runs the current workflow code over it, sandboxed as in the tests:
code that would now issue different commands than the ones recorded is non-deterministic,
and a worker running it would fail that run's next workflow task. It also sees what the
code schedules on the way (audit/capture.py), which audit/compare.py compares with what
was recorded. audit/timeline.py reads the same history for people: what happened, when,
why, and who did it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from temporalio.client import WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from csautomation.audit.capture import Scheduled, Seen
from csautomation.errors import CsAutomationError
from csautomation.runtime.converter import data_converter
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
        data_converter=data_converter,
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
