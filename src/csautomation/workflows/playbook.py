"""PlaybookWorkflow: interprets a validated playbook definition, step by step.

The definition arrives in the input with its version hash, so editing a YAML file never
changes a running playbook, and history records exactly what ran. Fresh facts come from an
activity; conditions are evaluated here with the pure rule-language evaluator.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from csautomation.playbooks.spec import Step
    from csautomation.rules.explain import holds
    from csautomation.rules.ir import lower
    from csautomation.workflows.types import (
        EscalationInput,
        FactsInput,
        PlaybookInput,
        PlaybookResult,
        StepRecord,
        TaskInput,
    )

TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


def _eval(condition: Any, facts: dict[str, Any]) -> bool:
    return holds(lower(condition, {}), facts)


@workflow.defn
class EscalationWorkflow:
    """A stub level until the escalation issue lands: records that it was opened."""

    @workflow.run
    async def run(self, inp: EscalationInput) -> str:
        return f"opened:{inp.severity}"


@workflow.defn
class PlaybookWorkflow:
    def __init__(self) -> None:
        self._completed: set[str] = set()
        self._cancelled = False
        self._paused = False
        self._current = ""
        self._history: list[StepRecord] = []

    @workflow.signal
    def task_completed(self, step_id: str) -> None:
        self._completed.add(step_id)

    @workflow.signal
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.signal
    def pause(self) -> None:
        self._paused = True

    @workflow.signal
    def resume(self) -> None:
        self._paused = False

    @workflow.query
    def current_step(self) -> str:
        return self._current

    @workflow.query
    def step_history(self) -> list[StepRecord]:
        return self._history

    async def _facts(self, account_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            "read_account_facts",
            FactsInput(account_id=account_id),
            result_type=dict,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return result

    async def _goal_met(self, inp: PlaybookInput) -> bool:
        goal = inp.playbook.goal
        return goal is not None and _eval(goal.condition, await self._facts(inp.account_id))

    async def _sleep(self, inp: PlaybookInput, duration: timedelta) -> bool:
        """Sleep, checking the goal; True when the goal ended the run or it was cancelled."""
        goal = inp.playbook.goal
        end = workflow.now() + duration
        while workflow.now() < end:
            step = min(end - workflow.now(), goal.check_every) if goal else end - workflow.now()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._cancelled, timeout=step)
            if self._cancelled or await self._goal_met(inp):
                return True
        return False

    @workflow.run
    async def run(self, inp: PlaybookInput) -> PlaybookResult:
        steps = inp.playbook.steps
        index = {s.id: i for i, s in enumerate(steps)}
        i = 0
        while i < len(steps):
            await workflow.wait_condition(lambda: not self._paused or self._cancelled)
            if self._cancelled:
                return self._finish("cancelled")
            if await self._goal_met(inp):
                return self._finish("goal_met")
            step = steps[i]
            self._current = step.id
            record = StepRecord(step_id=step.id, kind=step.kind, started_at=workflow.now())
            self._history.append(record)
            jump = await self._run_step(inp, step)
            record.ended_at = workflow.now()
            record.result = jump or "continue"
            if jump == "complete" or (step.complete is not None):
                outcome = step.complete.outcome if step.complete is not None else "completed"
                return self._finish(outcome)
            if jump in ("goal_met", "cancelled"):
                return self._finish(jump)
            i = index[jump] if jump and jump in index else i + 1
        return self._finish("completed")

    def _finish(self, outcome: str) -> PlaybookResult:
        self._current = ""
        return PlaybookResult(outcome=outcome, steps=self._history)

    async def _run_step(self, inp: PlaybookInput, step: Step) -> str | None:
        wf_id = workflow.info().workflow_id
        if step.create_task is not None:
            t = step.create_task
            await workflow.execute_activity(
                "create_task",
                TaskInput(
                    idempotency_key=f"{wf_id}:{step.id}",
                    workflow_id=wf_id,
                    step_id=step.id,
                    account_id=inp.account_id,
                    connector=t.connector,
                    assignee=t.assignee,
                    subject=t.subject,
                    description=t.description,
                    due_at=workflow.now() + t.due_in,
                    priority=t.priority.value,
                    context={
                        "rule": {"id": inp.rule_id, "version": inp.rule_version},
                        "params": inp.params,
                        "explain": inp.explain,
                    },
                ),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            return None
        if step.wait is not None:
            ended = await self._sleep(inp, step.wait)
            return ("cancelled" if self._cancelled else "goal_met") if ended else None
        if step.wait_for is not None:
            w = step.wait_for
            if w.task_completed is not None:
                ref = w.task_completed
                try:
                    await workflow.wait_condition(
                        lambda: ref in self._completed or self._cancelled, timeout=w.timeout
                    )
                except TimeoutError:
                    return w.on_timeout
                return "cancelled" if self._cancelled else None
            deadline = workflow.now() + w.timeout
            while True:
                if _eval(w.condition, await self._facts(inp.account_id)):
                    return None
                if workflow.now() >= deadline:
                    return w.on_timeout
                if await self._sleep(inp, min(w.check_every, deadline - workflow.now())):
                    return "cancelled" if self._cancelled else "goal_met"
        if step.branch is not None:
            b = step.branch
            ok = _eval(b.if_, await self._facts(inp.account_id))
            return b.then if ok else b.else_
        if step.escalate is not None:
            e = step.escalate
            await workflow.execute_child_workflow(
                EscalationWorkflow.run,
                EscalationInput(
                    account_id=inp.account_id,
                    severity=e.severity,
                    reason=e.reason,
                    source_workflow_id=wf_id,
                ),
                id=f"escalation:{inp.account_id}:{wf_id}:{step.id}",
            )
            return None
        if step.notify is not None or step.update_account is not None:
            name = "notify" if step.notify is not None else "update_account"
            payload = step.notify or step.update_account
            assert payload is not None
            await workflow.execute_activity(
                name,
                {
                    "idempotency_key": f"{wf_id}:{step.id}",
                    "account_id": inp.account_id,
                    **payload.model_dump(mode="json"),
                },
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            return None
        return None
