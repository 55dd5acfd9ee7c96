"""From a rule match to Temporal workflows, exactly once.

Workflow ids derive from the rule, the playbook, the account and the cooldown window, so
evaluating the same signal twice, or a crash and retry between evaluation and start, finds
the run that exists instead of starting a second one: USE_EXISTING while it runs,
REJECT_DUPLICATE once it has closed (within the namespace's retention; the rule_firings
table keeps the record beyond it). Priority picks the task queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from csautomation.playbooks.spec import Playbook
from csautomation.rules.runtime import Match
from csautomation.rules.spec import Escalate, StartPlaybook
from csautomation.workflows.playbook import EscalationWorkflow, PlaybookWorkflow
from csautomation.workflows.types import EscalationInput, PlaybookInput

QUEUES = {
    "critical": "csauto-critical",
    "high": "csauto-high",
    "medium": "csauto-normal",
    "low": "csauto-low",
}


@dataclass(frozen=True)
class Started:
    """The run a firing maps to; run_id None when that run already closed."""

    workflow_id: str
    run_id: str | None


def playbook_workflow_id(match: Match, playbook_id: str) -> str:
    return f"playbook:{match.rule_id}:{playbook_id}:{match.account_id}:{match.window}"


def escalation_workflow_id(match: Match) -> str:
    return f"escalation:{match.rule_id}:{match.account_id}:{match.window}"


async def dispatch(
    client: Client, match: Match, playbooks: dict[str, Playbook], queues: dict[str, str] = QUEUES
) -> list[Started]:
    queue = queues[match.rule.rule.priority.value]
    out: list[Started] = []
    for action in match.rule.rule.actions:
        if isinstance(action, StartPlaybook):
            pb = playbooks[action.start_playbook]
            wf_id = playbook_workflow_id(match, pb.id)
            inp = PlaybookInput(
                playbook=pb,
                playbook_version=pb.version,
                account_id=match.account_id,
                rule_id=match.rule_id,
                rule_version=match.rule.version,
                explain=match.explanation.to_dict(),
                params={**pb.parameters, **action.parameters},
            )
            out.append(await _start(client, PlaybookWorkflow.run, inp, wf_id, queue))
        elif isinstance(action, Escalate):
            wf_id = escalation_workflow_id(match)
            einp = EscalationInput(
                account_id=match.account_id,
                severity=action.escalate.severity,
                reason=action.escalate.reason,
                source_workflow_id=f"rule:{match.rule_id}",
            )
            out.append(await _start(client, EscalationWorkflow.run, einp, wf_id, queue))
    return out


async def _start(client: Client, run: Any, arg: Any, wf_id: str, queue: str) -> Started:
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
        return Started(wf_id, None)
    return Started(wf_id, handle.result_run_id)
