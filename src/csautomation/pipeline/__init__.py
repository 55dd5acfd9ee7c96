"""From a stored signal to started workflows, in one place.

dispatch.py   a firing's workflows: planned with deterministic ids, started exactly once
cooldowns.py  when each rule last fired for each account (the rule runtime's cooldowns)
loop.py       `Pipeline`: the evaluation and dispatch outboxes drained, once or forever
"""

from csautomation.pipeline.cooldowns import BatchCooldowns, SqlCooldowns
from csautomation.pipeline.dispatch import (
    PRIORITIES,
    QUEUES,
    Firing,
    Planned,
    Started,
    UnknownPlaybookError,
    dispatch,
    escalation_workflow_id,
    plan,
    playbook_workflow_id,
    queue_names,
    start,
    task_playbook,
)
from csautomation.pipeline.loop import Counts, Pipeline, PlaybookSource

__all__ = [
    "PRIORITIES",
    "QUEUES",
    "BatchCooldowns",
    "Counts",
    "Firing",
    "Pipeline",
    "Planned",
    "PlaybookSource",
    "SqlCooldowns",
    "Started",
    "UnknownPlaybookError",
    "dispatch",
    "escalation_workflow_id",
    "plan",
    "playbook_workflow_id",
    "queue_names",
    "start",
    "task_playbook",
]
