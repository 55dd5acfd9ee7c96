"""Replay that compares: a recorded run against the current code and the current files.

Three questions, each answered in the playbook's words (step id and kind):
- does the current code replay the history (determinism; the SDK's message as detail)?
- is the playbook version the run executed still the one its file defines, and if not,
  what changed, step by step?
- would the current code send each activity the input the run recorded? The SDK's replay
  does not compare inputs, so each activity the code schedules during the replay
  (audit/capture.py) is compared, in order, with the history's ActivityTaskScheduled
  events. Local activities (the facts reads) record no input and are left out.

The verdict: "same" (exit 0), "diverges" (exit 1, with every reason), or "could not replay"
(exit 2: no history, an unreadable file, no Temporal, unreadable definitions). Escalation
workflows run no playbook: their inputs are compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import WorkflowRunner

from csautomation.audit.capture import Scheduled
from csautomation.audit.replay import Verdict, replay, workflow_type
from csautomation.audit.versions import (
    Difference,
    canonical,
    changed_leaves,
    playbook_differences,
    show,
    step_kinds,
    version_of,
)
from csautomation.playbooks.spec import Playbook

__all__ = ["Comparison", "Definitions", "Versions", "compare", "could_not_replay"]

SAME, DIVERGES, COULD_NOT = "same", "diverges", "could not replay"
EXIT_CODES = {SAME: 0, DIVERGES: 1, COULD_NOT: 2}


@dataclass(frozen=True)
class Versions:
    """The playbook version a run executed, against the one its file defines now."""

    playbook_id: str
    run: str  # the version the run recorded
    run_now: str  # its definition's version as computed today ("" when no longer readable)
    current: str  # the file's version now; "" when the playbook is gone
    source: str  # the folder its definition lives in: workflows/, or rules/ for a rule's task

    @property
    def same(self) -> bool:
        return bool(self.current) and self.current in (self.run, self.run_now)

    def render(self) -> str:
        ran = f"playbook {self.playbook_id}: the run executed version {self.run}"
        if self.run_now and self.run_now != self.run:
            ran += f" ({self.run_now} as versions are computed now)"
        if not self.current:
            return f"{ran}; it is no longer in {self.source}"
        if self.same:
            return f"{ran}, the version {self.source} holds now"
        return f"{ran}; {self.source} now holds version {self.current}"


@dataclass(frozen=True)
class Comparison:
    workflow_id: str
    verdict: str  # same, diverges, could not replay
    workflow_type: str = ""
    replay: str = ""  # the replay's own finding, as `Verdict.render` says it
    deterministic: bool | None = None
    events: int = 0
    playbook: Versions | None = None  # None: the workflow runs no playbook
    activities: int = 0  # activities whose inputs were compared
    differences: tuple[Difference, ...] = ()
    problem: str = ""  # why it could not replay

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "workflow_type": self.workflow_type,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "problem": self.problem,
            "replay": self.replay,
            "deterministic": self.deterministic,
            "events": self.events,
            "playbook": asdict(self.playbook) if self.playbook is not None else None,
            "activities_compared": self.activities,
            "differences": [d.to_dict() for d in self.differences],
        }

    def render(self) -> list[str]:
        """The comparison for people, after the replay's own line."""
        if self.verdict == COULD_NOT:
            return [f"verdict: could not replay (exit 2): {self.problem}"]
        out = []
        if self.playbook is not None:
            out.append(self.playbook.render())
        for d in self.differences:
            if d.kind not in _INPUTS:
                out += [f"  {d.message}", *([f"    {d.detail}"] if d.detail else [])]
        inputs = [d for d in self.differences if d.kind in _INPUTS]
        out.append(
            f"activities: {self.activities} compared with the recorded ones, "
            + (f"{len(inputs)} difference(s)" if inputs else "the same names and inputs")
        )
        out += [f"  {d.message}" for d in inputs]
        if self.verdict == SAME:
            out.append("verdict: same (exit 0)")
        else:
            out.append(f"verdict: DIVERGES (exit 1): {len(self.differences)} difference(s)")
        return out


_INPUTS = ("input", "activity")


def could_not_replay(workflow_id: str, problem: str) -> Comparison:
    return Comparison(workflow_id, COULD_NOT, problem=problem)


class Definitions:
    """The playbooks as the files define them now: workflows/, and the one-step playbooks
    of rules' own create_task actions (rules/); each folder read when first needed. A
    folder with problems raises ConfigFileError: no comparison can be made."""

    def __init__(self, playbooks_path: Path, rules_path: Path) -> None:
        self.playbooks_path = playbooks_path
        self.rules_path = rules_path
        self._playbooks: dict[str, Playbook] | None = None
        self._rule_tasks: dict[str, Playbook] | None = None

    def find(self, recorded: dict[str, Any]) -> tuple[Playbook | None, str]:
        """The current definition of a recorded playbook, and the folder it lives in."""
        playbook_id = str(recorded.get("id", ""))
        if recorded.get("owner") == "rule" and playbook_id.startswith("rule-task-"):
            return self.rule_tasks().get(playbook_id), f"{self.rules_path}/"
        return self.playbooks().get(playbook_id), f"{self.playbooks_path}/"

    def playbooks(self) -> dict[str, Playbook]:
        if self._playbooks is None:
            from csautomation.playbooks.loader import load_playbooks

            self._playbooks = dict(load_playbooks([self.playbooks_path]))
        return self._playbooks

    def rule_tasks(self) -> dict[str, Playbook]:
        if self._rule_tasks is None:
            from csautomation.pipeline.dispatch import task_playbook
            from csautomation.rules.loader import load_rules
            from csautomation.rules.spec import CreateTask

            found: dict[str, Playbook] = {}
            for compiled in load_rules([self.rules_path]).rules:
                for action in compiled.rule.actions:
                    if isinstance(action, CreateTask):
                        book = task_playbook(compiled.id, action)
                        found.setdefault(book.id, book)
            self._rule_tasks = found
        return self._rule_tasks


async def compare(
    history: WorkflowHistory,
    definitions: Definitions | None,
    runner: WorkflowRunner | None = None,
) -> Comparison:
    """Replay `history` on the current code (`runner`: the SDK's sandbox unless given) and
    compare it with the recorded run, and with the current files unless `definitions` is
    None (the code alone: a deploy's check, as file edits never reach a running run)."""
    verdict = await replay(history, runner)
    kind = workflow_type(history)
    if not verdict.replayed:
        return Comparison(
            history.workflow_id, COULD_NOT, kind, verdict.render(), problem=verdict.problem
        )
    started = _started_input(history)
    book = started.get("playbook") if kind == "PlaybookWorkflow" else None
    run = canonical(book) if isinstance(book, dict) else {}
    kinds = step_kinds(run)
    differences = [] if verdict.deterministic else [_divergence(verdict, kinds)]
    versions = None
    if isinstance(book, dict) and definitions is not None:
        found, where = definitions.find(book)
        versions = Versions(
            str(book.get("id", "")),
            str(started.get("playbook_version", "")),
            version_of(book),
            found.version if found is not None else "",
            where,
        )
        differences += _version_differences(run, found, versions)
    recorded = _recorded_activities(history)
    differences += _input_differences(recorded, verdict.scheduled, kinds)
    return Comparison(
        history.workflow_id,
        SAME if not differences else DIVERGES,
        kind,
        verdict.render(),
        verdict.deterministic,
        verdict.events,
        versions,
        min(len(recorded), len(verdict.scheduled)),
        tuple(differences),
    )


def _version_differences(
    run: dict[str, Any], found: Playbook | None, versions: Versions
) -> list[Difference]:
    if found is None:
        message = f"playbook {versions.playbook_id} removed from {versions.source}"
        return [Difference("playbook_removed", message)]
    if versions.same:
        return []
    changes = playbook_differences(run, canonical(found))
    if changes:
        return changes
    # a definition this code no longer reads, whose recorded fields all match the file's
    return [
        Difference(
            "playbook_changed",
            f"playbook version was {versions.run}, now {found.version}, with no field changed",
            field="version",
            before=versions.run,
            after=found.version,
        )
    ]


def _divergence(verdict: Verdict, kinds: dict[str, str]) -> Difference:
    step = verdict.at_step
    where = f"step '{step}' ({kinds.get(step, '?')}): " if step else ""
    if verdict.detail.startswith(("Diverges", "Divergence")):
        what = (
            "the current code issues different commands here than the run recorded, so a "
            "worker would fail this run's next workflow task"
        )
        kind = "nondeterministic"
    else:
        what = "the current code fails here on this history"
        kind = "fails"
    return Difference(
        kind, where + what, step, kinds.get(step, ""), detail=verdict.detail or verdict.problem
    )


def _started_input(history: WorkflowHistory) -> dict[str, Any]:
    attributes = history.events[0].workflow_execution_started_event_attributes
    values = _decode(list(attributes.input.payloads))
    return values[0] if values and isinstance(values[0], dict) else {}


def _recorded_activities(history: WorkflowHistory) -> list[tuple[str, list[Any]]]:
    out = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = event.activity_task_scheduled_event_attributes
            out.append((a.activity_type.name, _decode(list(a.input.payloads))))
    return out


def _decode(payloads: list[Any]) -> list[Any]:
    return (
        list(pydantic_data_converter.payload_converter.from_payloads(payloads)) if payloads else []
    )


def _input_differences(
    recorded: list[tuple[str, list[Any]]], scheduled: tuple[Scheduled, ...], kinds: dict[str, str]
) -> list[Difference]:
    """Each recorded activity against the one the current code scheduled in its place.
    Those scheduled after the history ends are the run's future, not a difference."""
    out: list[Difference] = []
    for n, ((name, args), now) in enumerate(zip(recorded, scheduled, strict=False), start=1):
        step, kind = now.step_id, kinds.get(now.step_id, "")
        where = f"step '{step}' ({kind})" if step else f"activity #{n} ({name})"
        if now.activity != name:
            out.append(
                Difference(
                    "activity",
                    f"{where}: the current code schedules {now.activity} where the run "
                    f"scheduled {name}",
                    step,
                    kind,
                    "activity",
                    name,
                    now.activity,
                )
            )
            continue
        for path, was, new in _leaf_changes(args, now.args):
            out.append(
                Difference(
                    "input",
                    f"{where}: {name} input {path} was {show(was)}, now {show(new)}",
                    step,
                    kind,
                    path,
                    was,
                    new,
                )
            )
    return out


def _leaf_changes(before: list[Any], after: list[Any]) -> list[tuple[str, Any, Any]]:
    """The inputs' differing leaves; the one argument our activities take is named by its
    fields alone."""
    if (
        len(before) == len(after) == 1
        and isinstance(before[0], dict)
        and isinstance(after[0], dict)
    ):
        return changed_leaves(before[0], after[0])
    return changed_leaves({"args": before}, {"args": after})
