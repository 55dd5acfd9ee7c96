"""PlaybookWorkflow: interprets a validated playbook definition, step by step.

The definition arrives in the input with its version hash, so editing a YAML file never
changes a running playbook, and history records exactly what ran. Fresh facts come from an
activity; conditions are evaluated here with the pure rule-language evaluator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from csautomation.workflows import activity_names as names
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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_context(inp: PlaybookInput) -> dict[str, Any]:
    """What an action's templates see of the firing, beside the account and its facts."""
    return {
        "rule": {"id": inp.rule_id, "version": inp.rule_version},
        "params": inp.params,
        "explain": inp.explain,
    }


@workflow.defn
class PlaybookWorkflow:
    def __init__(self) -> None:
        self._completed: set[str] = set()
        self._cancelled = False
        self._paused = False
        self._current = ""
        self._history: list[StepRecord] = []
        self._redriven: set[str] = set()
        self._dead_lettered: set[str] = set()  # steps whose action is in the dead-letter store

    @workflow.signal
    def task_completed(self, step_id: str, by: str = "") -> None:  # noqa: ARG002
        """The task of step `step_id` was completed; `by` is whoever completed it, when the
        connector tells: the run needs only the step, the history keeps `by` for the
        timeline."""
        self._completed.add(step_id)

    @workflow.signal
    def redriven(self, step_id: str) -> None:
        """A dead-lettered action of this run was re-driven: a paused run goes on."""
        self._redriven.add(step_id)
        self._dead_lettered.discard(step_id)

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

    async def _facts(self, account_id: str, why: str) -> dict[str, Any]:
        # a local activity: a short read, recorded as a marker, no extra server round trip;
        # its summary (`why`) names the check that reads them, for the audit timeline
        result: dict[str, Any] = await workflow.execute_local_activity(
            names.READ_ACCOUNT_FACTS,
            FactsInput(account_id=account_id),
            result_type=dict,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
            summary=why,
        )
        return result

    async def _goal_met(self, inp: PlaybookInput, before: str) -> bool:
        goal = inp.playbook.goal
        if goal is None:
            return False
        return _eval(goal.condition, await self._facts(inp.account_id, f"goal before {before}"))

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
                facts = await self._facts(inp.account_id, f"step {self._current}: wait check")
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
                    timeout_summary=f"step {self._current}: wait until {_iso(end)}",
                )
            except TimeoutError:
                continue
            return "cancelled" if self._cancelled else "done"

    @workflow.run
    async def run(self, inp: PlaybookInput) -> PlaybookResult:
        outcome = await self._steps(inp)
        self._current = ""
        # a run whose action waits in the dead-letter store did not do what it says: it is
        # "incomplete" (kept when the action is re-driven later), never "completed"
        if (
            self._dead_lettered
            and outcome not in ("cancelled", "goal_met")
            and workflow.patched("dead-letter-incomplete")
        ):
            outcome = "incomplete"
        await workflow.execute_local_activity(
            names.RECORD_RUN_OUTCOME,
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
            step = steps[i]
            if await self._goal_met(inp, f"step {step.id}"):
                return "goal_met"
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
        """Run one step; return where to go next: a step id, "complete", "goal_met",
        "cancelled", or None for the next step."""
        kinds: dict[str, Callable[[PlaybookInput, Step], Awaitable[str | None]]] = {
            "create_task": self._create_task,
            "wait": self._wait_step,
            "wait_for": self._wait_for,
            "branch": self._branch,
            "escalate": self._escalate,
            "notify": self._notify,
            "update_account": self._update_account,
        }
        run = kinds.get(step.kind)  # `complete` does nothing here: _steps ends the run
        return None if run is None else await run(inp, step)

    async def _create_task(self, inp: PlaybookInput, step: Step) -> str | None:
        t = step.create_task
        assert t is not None
        wf_id = workflow.info().workflow_id
        return await self._action(
            inp,
            step,
            names.CREATE_TASK,
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
                context=template_context(inp),
            ),
        )

    async def _wait_step(self, inp: PlaybookInput, step: Step) -> str | None:
        assert step.wait is not None
        ended = await self._wait(inp, step.wait)
        return ended if ended in ("cancelled", "goal_met") else None

    async def _wait_for(self, inp: PlaybookInput, step: Step) -> str | None:
        w = step.wait_for
        assert w is not None
        ref = w.task_completed
        if ref is not None:
            ended = await self._wait(inp, w.timeout, done=lambda: ref in self._completed)
        else:
            ended = await self._wait(inp, w.timeout, condition=w.condition, every=w.check_every)
        if ended is None:
            return w.on_timeout
        return ended if ended in ("cancelled", "goal_met") else None

    async def _branch(self, inp: PlaybookInput, step: Step) -> str | None:
        b = step.branch
        assert b is not None
        ok = _eval(b.if_, await self._facts(inp.account_id, f"step {step.id}: branch"))
        return b.then if ok else b.else_

    async def _escalate(self, inp: PlaybookInput, step: Step) -> str | None:
        e = step.escalate
        assert e is not None
        wf_id = workflow.info().workflow_id
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
            names.OPEN_ESCALATION,
            OpenEscalation(workflow_id=eid, input=einp, context=template_context(inp)),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return None

    async def _notify(self, inp: PlaybookInput, step: Step) -> str | None:
        n = step.notify
        assert n is not None
        wf_id = workflow.info().workflow_id
        return await self._action(
            inp,
            step,
            names.NOTIFY,
            n.channel,
            NotifyInput(
                idempotency_key=f"{wf_id}:{step.id}",
                workflow_id=wf_id,
                step_id=step.id,
                account_id=inp.account_id,
                channel=n.channel,
                template=n.template,
                context=template_context(inp),
            ),
        )

    async def _update_account(self, inp: PlaybookInput, step: Step) -> str | None:
        u = step.update_account
        assert u is not None
        wf_id = workflow.info().workflow_id
        return await self._action(
            inp,
            step,
            names.UPDATE_ACCOUNT,
            u.connector,
            UpdateInput(
                idempotency_key=f"{wf_id}:{step.id}",
                workflow_id=wf_id,
                step_id=step.id,
                account_id=inp.account_id,
                connector=u.connector,
                field=u.field,
                value=u.value,
                context=template_context(inp),
            ),
        )

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
            # before it is stored: its re-drive (the `redriven` signal) can come only after
            self._dead_lettered.add(step.id)
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
