"""The playbook language (workflows/*.yaml). `csauto playbooks schema` exports it.

    playbook:
      id: usage-recovery
      name: Usage recovery
      goal: {condition: health.band == green}      # ends the run early when it holds
      steps:
        - id: outreach
          create_task: {assignee: owner, subject: "...", due_in: 3d}
        - id: wait-for-call
          wait_for: {task_completed: outreach, timeout: 7d, on_timeout: escalate}
        - id: check
          branch: {if: "usage.logins_change_30d_pct > -10", then: done, else: escalate}
        - id: escalate
          escalate: {severity: high}
        - id: done
          complete: {outcome: recovered}

Steps run in order; `branch` and `on_timeout` jump to a step id. Conditions are the rule
language's conditions, read against fresh account facts.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from csautomation.config import Duration
from csautomation.rules.spec import Condition, Scalar, TaskSpec
from csautomation.templates import Template, check

NEXT = ("continue", "complete")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# one model for a rule's create_task action and a playbook's create_task step
TaskStep = TaskSpec


class NotifyStep(Strict):
    channel: str = Field(min_length=1, description="connector id of a notify channel, e.g. slack")
    template: Template = Field(min_length=1)


class WaitFor(Strict):
    task_completed: str | None = Field(default=None, description="id of a create_task step")
    condition: Condition | None = Field(default=None, description="on fresh account facts")
    check_every: Duration = timedelta(days=1)
    timeout: Duration
    on_timeout: str = Field(default="continue", description="a step id, continue or complete")

    @model_validator(mode="after")
    def _one(self) -> WaitFor:
        if (self.task_completed is None) == (self.condition is None):
            raise ValueError("wait_for needs exactly one of 'task_completed' or 'condition'")
        return self


class Branch(Strict):
    if_: Condition = Field(alias="if")
    then: str = Field(description="a step id, continue or complete")
    else_: str = Field(default="continue", alias="else")


class EscalateStep(Strict):
    severity: Literal["critical", "high", "medium", "low"]
    reason: Template = ""


class UpdateAccount(Strict):
    connector: str | None = None
    field: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="CRM field name")
    value: Scalar = Field(description="a number, true or false, or text (a template)")

    @model_validator(mode="after")
    def _template(self) -> UpdateAccount:
        if isinstance(self.value, str):
            check(self.value)
        return self


class Complete(Strict):
    outcome: str = Field(default="completed", pattern=r"^[a-z][a-z0-9_-]*$")


_KINDS = (
    "create_task",
    "notify",
    "wait",
    "wait_for",
    "branch",
    "escalate",
    "update_account",
    "complete",
)


class Step(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    create_task: TaskStep | None = None
    notify: NotifyStep | None = None
    wait: Duration | None = None
    wait_for: WaitFor | None = None
    branch: Branch | None = None
    escalate: EscalateStep | None = None
    update_account: UpdateAccount | None = None
    complete: Complete | None = None
    # an action that ends in the dead-letter store: go on with the next step, or pause the
    # playbook until it is re-driven (`csauto dlq retry`) or resumed
    on_failure: Literal["continue", "pause"] = "continue"

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"step '{self.id}' needs exactly one of {', '.join(_KINDS)} (found {found})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if getattr(self, k) is not None)


class Goal(Strict):
    condition: Condition
    check_every: Duration = timedelta(days=1)


class Playbook(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1)
    description: str = ""
    owner: str = Field(min_length=1)
    parameters: dict[str, Scalar] = Field(default_factory=dict, description="defaults")
    goal: Goal | None = None
    steps: list[Step] = Field(min_length=1)

    @property
    def version(self) -> str:
        # defaults left out: a field added to the language later keeps every version
        data = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class PlaybookFile(Strict):
    playbook: Playbook


def reference_problems(playbook: Playbook) -> list[tuple[tuple[str | int, ...], str]]:
    """Step references that do not resolve, each with its path inside the file."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    ids = [s.id for s in playbook.steps]
    tasks = {s.id for s in playbook.steps if s.create_task is not None}
    seen: set[str] = set()
    for i, step in enumerate(playbook.steps):
        at: tuple[str | int, ...] = ("playbook", "steps", i)
        if step.id in seen:
            found.append(((*at, "id"), f"step id '{step.id}' is used twice"))
        seen.add(step.id)
        targets: list[tuple[tuple[str | int, ...], str]] = []
        if step.branch is not None:
            targets += [
                ((*at, "branch", "then"), step.branch.then),
                ((*at, "branch", "else"), step.branch.else_),
            ]
        if step.wait_for is not None:
            targets.append(((*at, "wait_for", "on_timeout"), step.wait_for.on_timeout))
            ref = step.wait_for.task_completed
            if ref is not None and ref not in tasks:
                found.append(
                    (
                        (*at, "wait_for", "task_completed"),
                        f"'{ref}' is not a create_task step of this playbook",
                    )
                )
        for path, target in targets:
            if target not in ids and target not in NEXT:
                found.append(
                    (path, f"no step '{target}' to jump to (use a step id, continue or complete)")
                )
    return found
