"""PlaybookWorkflow: interprets a validated playbook definition, step by step.

The definition arrives in the input with its version hash, so editing a YAML file never
changes a running playbook, and history records exactly what ran. Fresh facts come from an
activity; conditions are evaluated here with the pure rule-language evaluator.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from csautomation.workflows.common import ACTION_RETRY, RETRY, TIMEOUT, dead_letter
from csautomation.workflows.escalation import EscalationWorkflow

with workflow.unsafe.imports_passed_through():
    from csautomation.playbooks.spec import Step
    from csautomation.rules.explain import holds
    from csautomation.rules.ir import lower
    from csautomation.workflows.types import (
        EscalationInput,
        FactsInput,
        NotifyInput,
        OpenEscalation,
        PlaybookInput,
        PlaybookResult,
        RunOutcome,
        StepRecord,
        TaskInput,
        UpdateInput,
    )


def _eval(condition: Any, facts: dict[str, Any]) -> bool:
    return holds(lower(condition, {}), facts)


@workflow.defn
class PlaybookWorkflow:
    def __init__(self) -> None:
        self._completed: set[str] = set()
        self._cancelled = False
        self._paused = False
        self._current = ""
        self._history: list[StepRecord] = []
        self._redriven: set[str] = set()

    @workflow.signal
    def task_completed(self, step_id: str) -> None:
        self._completed.add(step_id)

    @workflow.signal
    def redriven(self, step_id: str) -> None:
        """A dead-lettered action of this run was re-driven: a paused run goes on."""
        self._redriven.add(step_id)

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
        # a local activity: a short read, recorded as a marker, no extra server round trip
        result: dict[str, Any] = await workflow.execute_local_activity(
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

    async def _wait(
        self,
        inp: PlaybookInput,
        duration: timedelta,
        done: Callable[[], bool] | None = None,
        condition: Any = None,
        every: timedelta | None = None,
    ) -> str | None:
        """Wait up to `duration` (scaled) for `done()` or `condition`, checking the goal.

        Returns "cancelled", "goal_met", "done", or None when the time ran out. One facts
        read per tick serves both the goal and the condition.
        """
        goal = inp.playbook.goal
        scale = inp.time_scale
        end = workflow.now() + duration * scale
        intervals = [goal.check_every] if goal is not None else []
        if condition is not None and every is not None:
            intervals.append(every)
        tick = min(intervals) * scale if intervals else None
        check = condition is not None
        while True:
            if check and (goal is not None or condition is not None):
                facts = await self._facts(inp.account_id)
                if goal is not None and _eval(goal.condition, facts):
                    return "goal_met"
                if condition is not None and _eval(condition, facts):
                    return "done"
            check = True
            remaining = end - workflow.now()
            if remaining <= timedelta(0):
                return None
            try:
                await workflow.wait_condition(
                    lambda: self._cancelled or (done is not None and done()),
                    timeout=min(remaining, tick) if tick is not None else remaining,
                )
            except TimeoutError:
                continue
            return "cancelled" if self._cancelled else "done"

    @workflow.run
    async def run(self, inp: PlaybookInput) -> PlaybookResult:
        outcome = await self._steps(inp)
        self._current = ""
        await workflow.execute_local_activity(
            "record_run_outcome",
            RunOutcome(workflow_id=workflow.info().workflow_id, outcome=outcome),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return PlaybookResult(outcome=outcome, steps=self._history)

    async def _steps(self, inp: PlaybookInput) -> str:
        steps = inp.playbook.steps
        index = {s.id: i for i, s in enumerate(steps)}
        i = 0
        while i < len(steps):
            await workflow.wait_condition(lambda: not self._paused or self._cancelled)
            if self._cancelled:
                return "cancelled"
            if await self._goal_met(inp):
                return "goal_met"
            step = steps[i]
            self._current = step.id
            record = StepRecord(step_id=step.id, kind=step.kind, started_at=workflow.now())
            self._history.append(record)
            jump = await self._run_step(inp, step)
            record.ended_at = workflow.now()
            record.result = jump or record.result or "continue"
            if step.complete is not None:
                return step.complete.outcome
            if jump == "complete":
                return "completed"
            if jump in ("goal_met", "cancelled"):
                return jump
            i = index[jump] if jump and jump in index else i + 1
        return "completed"

    async def _run_step(self, inp: PlaybookInput, step: Step) -> str | None:
        wf_id = workflow.info().workflow_id
        if step.create_task is not None:
            t = step.create_task
            return await self._action(
                inp,
                step,
                "create_task",
                t.connector,
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
            )
        if step.wait is not None:
            ended = await self._wait(inp, step.wait)
            return ended if ended in ("cancelled", "goal_met") else None
        if step.wait_for is not None:
            w = step.wait_for
            ref = w.task_completed
            if ref is not None:
                ended = await self._wait(inp, w.timeout, done=lambda: ref in self._completed)
            else:
                ended = await self._wait(inp, w.timeout, condition=w.condition, every=w.check_every)
            if ended is None:
                return w.on_timeout
            return ended if ended in ("cancelled", "goal_met") else None
        if step.branch is not None:
            b = step.branch
            ok = _eval(b.if_, await self._facts(inp.account_id))
            return b.then if ok else b.else_
        if step.escalate is not None:
            e = step.escalate
            einp = EscalationInput(
                account_id=inp.account_id,
                severity=e.severity,
                reason=e.reason,
                source_workflow_id=wf_id,
                rule_id=inp.rule_id,
            )
            eid = f"escalation:{inp.account_id}:{wf_id}:{step.id}"
            if not workflow.patched("escalation-top-level"):
                # runs recorded before escalations could last days waited for the stub child
                await workflow.execute_child_workflow(EscalationWorkflow.run, einp, id=eid)
                return None
            # a workflow of its own, with a deterministic id: it outlives this playbook,
            # managers close it, and a retried step finds the one already open
            await workflow.execute_activity(
                "open_escalation",
                OpenEscalation(workflow_id=eid, input=einp),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            return None
        context = {
            "rule": {"id": inp.rule_id, "version": inp.rule_version},
            "params": inp.params,
            "explain": inp.explain,
        }
        if step.notify is not None:
            return await self._action(
                inp,
                step,
                "notify",
                step.notify.channel,
                NotifyInput(
                    idempotency_key=f"{wf_id}:{step.id}",
                    workflow_id=wf_id,
                    step_id=step.id,
                    account_id=inp.account_id,
                    channel=step.notify.channel,
                    template=step.notify.template,
                    context=context,
                ),
            )
        if step.update_account is not None:
            u = step.update_account
            return await self._action(
                inp,
                step,
                "update_account",
                u.connector,
                UpdateInput(
                    idempotency_key=f"{wf_id}:{step.id}",
                    workflow_id=wf_id,
                    step_id=step.id,
                    account_id=inp.account_id,
                    connector=u.connector,
                    field=u.field,
                    value=u.value,
                ),
            )
        return None

    async def _action(
        self, inp: PlaybookInput, step: Step, name: str, connector: str | None, arg: Any
    ) -> str | None:
        """Run a vendor action; when it fails for good, record it in the dead-letter store
        and go on, or pause until it is re-driven, as the step says."""
        try:
            await workflow.execute_activity(
                name, arg, start_to_close_timeout=TIMEOUT, retry_policy=ACTION_RETRY
            )
            return None
        except ActivityError as err:
            began = self._history[-1].started_at
            await dead_letter(err, name, arg, step.id, connector or "", inp.account_id, began)
        self._history[-1].result = "dead_letter"
        if step.on_failure == "pause":
            self._paused = True
            await workflow.wait_condition(
                lambda: step.id in self._redriven or not self._paused or self._cancelled
            )
            self._paused = False
            if self._cancelled:
                return "cancelled"
        return None
