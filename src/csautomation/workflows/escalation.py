"""The escalation workflow: reach level 1, wait for an acknowledgement, climb on timeout.

    opened -> notified (level 1) --ack_by passes--> climbed -> notified (level 2) -> ...
                 |                                   the last level passed: exhausted
                 +-- acknowledge: the climb stops; resolve closes it
                 +-- snooze until T: no timers until T, then the plan restarts at the level
                 +-- reassign to P: P is told and holds it; the timers go on
                 +-- a notice's CRM task completed: whoever completed it (the
                     connector tells, else its assignee) acknowledges

The plan (who, through which channels, until when) is computed by an activity from
escalation_matrix.yaml and people.yaml when the escalation opens, and again when a snooze
ends; it is kept in the history, so editing the matrix never changes an open escalation.
Every change is recorded in the store (the manager's page reads it there) with an
increasing sequence number, and is answerable by the `state` query.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

from csautomation.workflows import activity_names as names
from csautomation.workflows.common import ACTION_RETRY, RETRY, TIMEOUT, dead_letter

with workflow.unsafe.imports_passed_through():
    from csautomation.escalation.model import EscalationPlan, PlannedLevel
    from csautomation.workflows.types import (
        EscalationAction,
        EscalationEvent,
        EscalationInput,
        EscalationNotice,
        EscalationPlanInput,
        EscalationRecord,
        EscalationState,
        RunOutcome,
    )

ACTIONS = ("acknowledge", "resolve", "reassign", "snooze")


@workflow.defn
class EscalationWorkflow:
    def __init__(self) -> None:
        self._state: EscalationState | None = None
        self._inbox: list[tuple[str, EscalationAction]] = []
        self._seq = 0
        self._reassigned = 0
        self._generation = 0  # plans made after a snooze

    # -- what people do ------------------------------------------------------------------
    @workflow.signal
    def acknowledge(self, action: EscalationAction) -> None:
        self._inbox.append(("acknowledge", action))

    @workflow.signal
    def resolve(self, action: EscalationAction) -> None:
        self._inbox.append(("resolve", action))

    @workflow.signal
    def reassign(self, action: EscalationAction) -> None:
        self._inbox.append(("reassign", action))

    @workflow.signal
    def snooze(self, action: EscalationAction) -> None:
        self._inbox.append(("snooze", action))

    @workflow.signal
    def task_completed(self, step_id: str, by: str = "") -> None:
        """A notice's CRM task was completed (the local CRM, or completion sync from a
        vendor): whoever completed it acknowledges, when the connector tells (`by`), else
        its assignee, the last part of the notice's step id."""
        assignee = step_id.rsplit(":", 1)[-1]
        note = f"completed the CRM task {step_id}"
        if by and by != assignee:
            note += f" (assigned to {assignee})"
        self._inbox.append(("acknowledge", EscalationAction(by=by or assignee, note=note)))

    @workflow.query
    def state(self) -> EscalationState | None:
        return self._state

    # -- the climb -----------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: EscalationInput) -> str:
        wf_id = workflow.info().workflow_id
        plan = await self._plan(inp, 1)
        st = self._state = EscalationState(
            workflow_id=wf_id,
            account_id=inp.account_id,
            severity=inp.severity,
            reason=inp.reason,
            rule_id=inp.rule_id,
            source_workflow_id=inp.source_workflow_id,
            team=plan.team,
            opened_at=workflow.now(),
        )
        self._event("opened", detail=f"{inp.severity}: {inp.reason}" if inp.reason else "")
        await self._record(plan)
        rnd, notified = 0, -1
        while st.status != "resolved":
            if self._inbox:
                await self._handle(inp, plan)
                continue
            if st.status == "snoozed":
                assert st.snoozed_until is not None
                if not await self._wait_for_action(st.snoozed_until, "snoozed"):
                    st.status, st.snoozed_until = "open", None
                    self._event("woke", level=st.level)
                    self._generation += 1  # its notifications are new ones, not repeats
                    plan, rnd, notified = await self._plan(inp, max(st.level, 1)), 0, -1
                    await self._record(plan)
                continue
            if st.status == "acknowledged" or rnd >= len(plan.levels):
                await workflow.wait_condition(lambda: bool(self._inbox))
                continue
            current = plan.levels[rnd]
            if notified < rnd:
                await self._reach(inp, current)
                notified = rnd
                await self._record()
            if not await self._wait_for_action(current.ack_by, f"level {current.level}"):
                rnd += 1
                if rnd < len(plan.levels):
                    nxt = plan.levels[rnd]
                    kind = "repeated" if nxt.level == current.level else "climbed"
                    self._event(
                        kind, level=nxt.level, detail=f"not acknowledged by {_hm(current.ack_by)}"
                    )
                else:
                    st.ack_by = None
                    self._event("exhausted", level=current.level, detail="every level reached")
                    await self._record()
        await workflow.execute_local_activity(
            names.RECORD_RUN_OUTCOME,
            RunOutcome(workflow_id=wf_id, outcome="resolved"),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return "resolved"

    async def _wait_for_action(self, until: datetime, what: str) -> bool:
        """Wait for a person's action until `until`; False when the time came first. The
        timer's summary says what the wait is for, for the audit timeline."""
        left = (until - workflow.now()).total_seconds()
        if left <= 0:
            return bool(self._inbox)
        summary = f"{what}: until {until.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        try:
            await workflow.wait_condition(
                lambda: bool(self._inbox), timeout=left, timeout_summary=summary
            )
        except TimeoutError:
            return bool(self._inbox)
        return True

    async def _handle(self, inp: EscalationInput, plan: EscalationPlan) -> None:
        """Apply the oldest action a person took."""
        st = self._state
        assert st is not None
        kind, action = self._inbox.pop(0)
        now = workflow.now()
        if st.status == "resolved":
            return
        if kind == "acknowledge":
            if st.status == "acknowledged":
                return  # a second acknowledgement changes nothing
            st.status, st.acknowledged_at, st.ack_by, st.snoozed_until = (
                "acknowledged",
                now,
                None,
                None,
            )
            st.holder, st.holder_name = action.by, _name(plan, action.by)
            self._event("acknowledged", by=action.by, level=st.level, detail=action.note)
        elif kind == "resolve":
            st.status, st.resolved_at, st.resolution, st.ack_by = "resolved", now, action.note, None
            self._event("resolved", by=action.by, level=st.level, detail=action.note)
        elif kind == "reassign":
            st.holder, st.holder_name = action.to, _name(plan, action.to)
            self._event(
                "reassigned",
                by=action.by,
                level=st.level,
                detail=f"to {action.to}. {action.note}".strip(),
            )
            self._reassigned += 1
            channels = plan.levels[0].channels if plan.levels else []
            for channel in channels:
                await self._notify(
                    inp, f"reassign-{self._reassigned}", channel, action.to, st.ack_by
                )
        elif kind == "snooze" and action.until is not None and action.until > now:
            st.status, st.snoozed_until, st.ack_by = "snoozed", action.until, None
            self._event(
                "snoozed",
                by=action.by,
                level=st.level,
                detail=f"until {action.until.isoformat()}. {action.note}".strip(),
            )
        else:
            return
        await self._record()

    async def _reach(self, inp: EscalationInput, rnd: PlannedLevel) -> None:
        st = self._state
        assert st is not None
        st.level, st.ack_by = rnd.level, rnd.ack_by
        if rnd.recipients and st.status == "open":
            st.holder, st.holder_name = rnd.recipients[0].person_id, rnd.recipients[0].name
        names = ", ".join(f"{r.name} ({r.role})" for r in rnd.recipients)
        self._event(
            "notified",
            level=rnd.level,
            detail=f"{names} via {', '.join(rnd.channels)}; acknowledge by {_hm(rnd.ack_by)}",
        )
        step = f"L{rnd.level}.{rnd.repeat}" + (f"g{self._generation}" if self._generation else "")
        for channel in rnd.channels:
            for person in rnd.recipients:
                await self._notify(inp, step, channel, person.person_id, rnd.ack_by)

    async def _notify(
        self, inp: EscalationInput, step: str, channel: str, person: str, ack_by: datetime | None
    ) -> None:
        """One notification; when it fails for good it goes to the dead-letter store and
        the escalation goes on (the next level is the fallback)."""
        st = self._state
        assert st is not None
        notice = EscalationNotice(
            idempotency_key=f"{st.workflow_id}:{step}:{channel}:{person}",
            workflow_id=st.workflow_id,
            step_id=f"{step}:{channel}:{person}",
            account_id=inp.account_id,
            severity=inp.severity,
            reason=inp.reason,
            level=st.level,
            channel=channel,
            person_id=person,
            ack_by=ack_by,
        )
        began = workflow.now()
        try:
            await workflow.execute_activity(
                names.NOTIFY_ESCALATION,
                notice,
                start_to_close_timeout=TIMEOUT,
                retry_policy=ACTION_RETRY,
            )
            return
        except ActivityError as err:
            step_id = notice.step_id
            await dead_letter(
                err, names.NOTIFY_ESCALATION, notice, step_id, channel, inp.account_id, began
            )
        self._event("undelivered", level=st.level, detail=f"{channel} to {person}: dead-lettered")

    async def _plan(self, inp: EscalationInput, from_level: int) -> EscalationPlan:
        plan: EscalationPlan = await workflow.execute_local_activity(
            names.PLAN_ESCALATION,
            EscalationPlanInput(
                account_id=inp.account_id,
                severity=inp.severity,
                start=workflow.now(),
                from_level=from_level,
            ),
            result_type=EscalationPlan,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        return plan

    async def _record(self, plan: EscalationPlan | None = None) -> None:
        assert self._state is not None
        self._seq += 1
        await workflow.execute_local_activity(
            names.RECORD_ESCALATION,
            EscalationRecord(
                state=self._state,
                seq=self._seq,
                plan=None if plan is None else plan.model_dump(mode="json"),
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )

    def _event(self, kind: str, by: str = "system", level: int = 0, detail: str = "") -> None:
        assert self._state is not None
        self._state.timeline.append(
            EscalationEvent(at=workflow.now(), kind=kind, by=by, level=level, detail=detail)
        )


def _name(plan: EscalationPlan, person_id: str) -> str:
    for rnd in plan.levels:
        for r in rnd.recipients:
            if r.person_id == person_id:
                return r.name
    return person_id


def _hm(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
