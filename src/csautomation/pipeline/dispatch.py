"""From a rule firing to Temporal workflows, exactly once.

Workflow ids derive from the rule, the playbook, the account and the cooldown window, so
evaluating the same signal twice, or a crash and retry between evaluation and start, finds
the run that exists instead of starting a second one: USE_EXISTING while it runs,
REJECT_DUPLICATE once it has closed (within the namespace's retention; the rule_firings
table keeps the record beyond it). Priority picks the task queue.

A firing carries the rule's actions as they were when it fired, so the dispatch outbox
(rule_firings rows not yet dispatched) can be drained after a crash without the rule files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from csautomation.errors import ConfigError
from csautomation.playbooks.spec import Playbook, Step
from csautomation.rules.runtime import Match
from csautomation.rules.spec import Action, CreateTask, Escalate, StartPlaybook
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import EscalationInput, PlaybookInput

PRIORITIES = ("critical", "high", "medium", "low")
QUEUES = {
    "critical": "csauto-critical",
    "high": "csauto-high",
    "medium": "csauto-normal",
    "low": "csauto-low",
}
_ACTIONS: TypeAdapter[list[Action]] = TypeAdapter(list[Action])


@dataclass(frozen=True)
class Firing:
    """A rule that fired for an account in a cooldown window: what the outbox holds."""

    rule_id: str
    rule_version: str
    account_id: str
    window: int
    priority: str
    at: datetime
    actions: tuple[dict[str, Any], ...]
    explain: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @classmethod
    def from_match(cls, match: Match) -> Firing:
        return cls(
            rule_id=match.rule_id,
            rule_version=match.rule.version,
            account_id=match.account_id,
            window=match.window,
            priority=match.rule.rule.priority.value,
            at=match.at,
            actions=tuple(
                a.model_dump(mode="json", by_alias=True) for a in match.rule.rule.actions
            ),
            explain=match.explanation.to_dict(),
        )


@dataclass(frozen=True)
class Planned:
    """A workflow a firing calls for, with its deterministic id, before it is started."""

    workflow_id: str
    kind: str  # playbook or escalation
    playbook_id: str
    playbook_version: str
    task_queue: str
    run: Any = field(repr=False)
    arg: Any = field(repr=False)


@dataclass(frozen=True)
class Started:
    """The run a firing maps to; run_id None when that run already closed."""

    workflow_id: str
    run_id: str | None
    kind: str
    playbook_id: str
    playbook_version: str
    task_queue: str


def playbook_workflow_id(firing: Firing | Match, playbook_id: str) -> str:
    return f"playbook:{firing.rule_id}:{playbook_id}:{firing.account_id}:{firing.window}"


def escalation_workflow_id(firing: Firing | Match) -> str:
    return f"escalation:{firing.rule_id}:{firing.account_id}:{firing.window}"


def task_playbook(rule_id: str, action: CreateTask) -> Playbook:
    """A rule's own create_task action runs as a one-step playbook, with the same guarantees."""
    return Playbook(
        id=f"rule-task-{rule_id}"[:64],
        name=f"Task from rule {rule_id}",
        owner="rule",
        steps=[
            Step(
                id="task",
                create_task=action.create_task,  # the one task model: every field kept
            )
        ],
    )


class UnknownPlaybookError(ConfigError, LookupError):
    """A rule starts a playbook that is not loaded: the firing waits in the outbox."""


def plan(
    firing: Firing | Match,
    playbooks: Mapping[str, Playbook],
    queues: Mapping[str, str] = QUEUES,
    time_scale: float = 1.0,
) -> list[Planned]:
    """Every workflow the firing's actions call for, in action order."""
    if isinstance(firing, Match):
        firing = Firing.from_match(firing)
    queue = queues[firing.priority]
    out: list[Planned] = []
    for action in _ACTIONS.validate_python(list(firing.actions)):
        if isinstance(action, Escalate):
            einp = EscalationInput(
                account_id=firing.account_id,
                severity=action.escalate.severity,
                reason=action.escalate.reason,
                source_workflow_id=f"rule:{firing.rule_id}",
                rule_id=firing.rule_id,
            )
            wf_id = escalation_workflow_id(firing)
            out.append(Planned(wf_id, "escalation", "", "", queue, EscalationWorkflow.run, einp))
            continue
        params: dict[str, Any] = {}
        if isinstance(action, StartPlaybook):
            pb = playbooks.get(action.start_playbook)
            if pb is None:
                raise UnknownPlaybookError(
                    f"rule '{firing.rule_id}' starts playbook '{action.start_playbook}', "
                    "which is not in workflows/"
                )
            params = {**pb.parameters, **action.parameters}
        else:
            pb = task_playbook(firing.rule_id, action)
        inp = PlaybookInput(
            playbook=pb,
            playbook_version=pb.version,
            account_id=firing.account_id,
            rule_id=firing.rule_id,
            rule_version=firing.rule_version,
            explain=firing.explain,
            params=params,
            time_scale=time_scale,
        )
        wf_id = playbook_workflow_id(firing, pb.id)
        out.append(Planned(wf_id, "playbook", pb.id, pb.version, queue, PlaybookWorkflow.run, inp))
    return out


async def start(client: Client, planned: Planned) -> Started:
    """Start one planned workflow, or find the run its id already has; idempotent."""
    run_id = await _start(client, planned.run, planned.arg, planned.workflow_id, planned.task_queue)
    return Started(
        planned.workflow_id,
        run_id,
        planned.kind,
        planned.playbook_id,
        planned.playbook_version,
        planned.task_queue,
    )


async def dispatch(
    client: Client,
    firing: Firing | Match,
    playbooks: Mapping[str, Playbook],
    queues: Mapping[str, str] = QUEUES,
    time_scale: float = 1.0,
) -> list[Started]:
    """Start every workflow the firing's actions call for; idempotent."""
    return [await start(client, p) for p in plan(firing, playbooks, queues, time_scale)]


async def _start(client: Client, run: Any, arg: Any, wf_id: str, queue: str) -> str | None:
    try:
        handle = await client.start_workflow(
            run,
            arg,
            id=wf_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:  # it ran and closed: this firing was handled
        return None
    return handle.result_run_id


def queue_names(priorities: Sequence[str]) -> list[str]:
    """Task queue names for priority names (critical, high, normal or medium, low)."""
    out = []
    for p in priorities:
        key = "medium" if p == "normal" else p
        if key not in QUEUES:
            raise ValueError(f"unknown priority '{p}' (use critical, high, normal or low)")
        out.append(QUEUES[key])
    return out
