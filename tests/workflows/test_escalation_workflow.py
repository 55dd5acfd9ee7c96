"""The escalation workflow on the time-skipping server, with a fixed plan: each round is
reached exactly at its time, an acknowledgement stops the climb, resolve closes it, a
snooze holds the timers, a reassignment tells the new holder, and the same escalation
cannot be opened twice."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.escalation.calendar import working_time_between
from csautomation.escalation.model import EscalationPlan, PlannedLevel, Recipient
from csautomation.facts.health import load_health_model
from csautomation.runtime.converter import data_converter
from csautomation.store.escalations import get_plan
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.types import (
    ActionResult,
    DeadLetterInput,
    EscalationAction,
    EscalationInput,
    EscalationNotice,
    EscalationPlanInput,
    EscalationRecord,
    EscalationState,
    RunOutcome,
)
from factories import playbook_store
from playbook_support import GRACEFUL_SHUTDOWN, HISTORIES, escalation_activities

CSM = Recipient(person_id="csm-01", name="Dana", role="csm", team="east")
MGR = Recipient(person_id="mgr-01", name="Mo", role="manager", team="east")
DIR = Recipient(person_id="dir-01", name="Di", role="director", team="east")
# minutes after the round starts that it must be acknowledged by
ROUNDS = ((1, 0, CSM, 30), (1, 1, CSM, 30), (2, 0, MGR, 60), (3, 0, DIR, 120))


@dataclass
class Fakes:
    """Activities standing in for the matrix, the store and the connectors."""

    notices: list[tuple[datetime, EscalationNotice]] = field(default_factory=list)
    records: list[EscalationRecord] = field(default_factory=list)
    plans: list[EscalationPlanInput] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def all(self) -> list[Any]:
        @activity.defn(name="plan_escalation")
        def plan_escalation(inp: EscalationPlanInput) -> EscalationPlan:
            self.plans.append(inp)
            levels, start = [], inp.start
            for level, repeat, who, minutes in ROUNDS:
                if level < inp.from_level:
                    continue
                ack_by = start + timedelta(minutes=minutes)
                levels.append(
                    PlannedLevel(
                        level=level,
                        repeat=repeat,
                        roles=[who.role],
                        recipients=[who],
                        channels=["local", "slack"],
                        starts_at=start,
                        ack_by=ack_by,
                    )
                )
                start = ack_by
            return EscalationPlan(
                severity=inp.severity,
                account_id=inp.account_id,
                team="east",
                matched="test",
                levels=levels,
            )

        @activity.defn(name="notify_escalation")
        def notify_escalation(inp: EscalationNotice) -> ActionResult:
            self.notices.append((activity.info().current_attempt_scheduled_time, inp))
            return ActionResult(connector=inp.channel, record_id="1", created=True)

        @activity.defn(name="record_escalation")
        def record_escalation(inp: EscalationRecord) -> None:
            self.records.append(inp)

        @activity.defn(name="record_run_outcome")
        def record_run_outcome(inp: RunOutcome) -> None:
            self.outcomes.append(inp.outcome)

        @activity.defn(name="record_dead_letter")
        def record_dead_letter(inp: DeadLetterInput) -> int:  # noqa: ARG001
            return 1

        return [
            plan_escalation,
            notify_escalation,
            record_escalation,
            record_run_outcome,
            record_dead_letter,
        ]

    def reached(self, start: datetime) -> list[tuple[int, str, str]]:
        """(minutes after start, person, channel) of each notice."""
        return [
            (round((at - start).total_seconds() / 60), n.person_id, n.channel)
            for at, n in self.notices
        ]


async def open_one(client: Client, queue: str, wid: str | None = None) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        EscalationWorkflow.run,
        EscalationInput(
            account_id="ACME", severity="critical", reason="usage fell", source_workflow_id="t"
        ),
        id=wid or f"escalation:test:ACME:{uuid.uuid4()}",
        task_queue=queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )


async def state(handle: WorkflowHandle[Any, Any]) -> EscalationState:
    st: EscalationState = await handle.query(EscalationWorkflow.state)
    return st


def worker(client: Client, fakes: Fakes, queue: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[EscalationWorkflow],
        activities=fakes.all(),
        activity_executor=ThreadPoolExecutor(4),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


@pytest.mark.asyncio
async def test_an_unacknowledged_escalation_reaches_each_round_exactly_on_time(
    env: WorkflowEnvironment, client: Client
) -> None:
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue)
        await env.sleep(timedelta(hours=10))
        st = await state(handle)
        start = st.opened_at
        assert fakes.reached(start) == [
            (0, "csm-01", "local"),
            (0, "csm-01", "slack"),
            (30, "csm-01", "local"),  # the repeat of level 1
            (30, "csm-01", "slack"),
            (60, "mgr-01", "local"),
            (60, "mgr-01", "slack"),
            (120, "dir-01", "local"),
            (120, "dir-01", "slack"),
        ]
        keys = [n.idempotency_key for _, n in fakes.notices]
        assert len(set(keys)) == len(keys)
        assert st.status == "open" and st.level == 3 and st.holder == "dir-01"
        assert [e.kind for e in st.timeline] == [
            "opened",
            "notified",
            "repeated",
            "notified",
            "climbed",
            "notified",
            "climbed",
            "notified",
            "exhausted",
        ]
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="mgr-01", note="ok"))
        assert await handle.result() == "resolved"
    assert fakes.records[-1].state.status == "resolved"
    assert [r.seq for r in fakes.records] == list(range(1, len(fakes.records) + 1))
    assert fakes.outcomes == ["resolved"]


@pytest.mark.asyncio
async def test_acknowledge_stops_the_climb_and_resolve_closes_it(
    env: WorkflowEnvironment, client: Client
) -> None:
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue)
        await env.sleep(timedelta(minutes=10))
        await handle.signal(
            EscalationWorkflow.acknowledge, EscalationAction(by="csm-01", note="on it")
        )
        await env.sleep(timedelta(hours=6))
        st = await state(handle)
        assert st.status == "acknowledged" and st.holder == "csm-01" and st.level == 1
        assert st.acknowledged_at is not None and st.ack_by is None
        assert {n.person_id for _, n in fakes.notices} == {"csm-01"}
        assert len(fakes.notices) == 2  # level 1 only, no repeat
        ack = st.timeline[-1]
        assert (ack.kind, ack.by, ack.detail) == ("acknowledged", "csm-01", "on it")
        await handle.signal(
            EscalationWorkflow.resolve, EscalationAction(by="csm-01", note="call booked")
        )
        assert await handle.result() == "resolved"
        final = fakes.records[-1].state
        assert final.status == "resolved" and final.resolution == "call booked"
        assert final.resolved_at is not None


@pytest.mark.asyncio
async def test_a_snooze_holds_the_timers_and_the_level_is_reached_again_after(
    env: WorkflowEnvironment, client: Client
) -> None:
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue)
        await env.sleep(timedelta(minutes=40))  # level 1's repeat has gone out
        st = await state(handle)
        start = st.opened_at
        until = start + timedelta(hours=5)
        await handle.signal(
            EscalationWorkflow.snooze, EscalationAction(by="mgr-01", until=until, note="QBR")
        )
        await env.sleep(timedelta(hours=4))
        assert (await state(handle)).status == "snoozed"
        assert len(fakes.notices) == 4  # nothing while snoozed
        await env.sleep(timedelta(hours=1, minutes=10))
        st = await state(handle)
        assert st.status == "open" and st.level == 1
        # woken at 5 h, the plan starts again at level 1 (new notifications, new keys)
        assert fakes.reached(start)[4:6] == [(300, "csm-01", "local"), (300, "csm-01", "slack")]
        assert fakes.plans[-1].from_level == 1
        assert len({n.idempotency_key for _, n in fakes.notices}) == len(fakes.notices)
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="mgr-01"))
        await handle.result()


@pytest.mark.asyncio
async def test_reassign_tells_the_new_holder(env: WorkflowEnvironment, client: Client) -> None:
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue)
        await env.sleep(timedelta(minutes=5))
        await handle.signal(
            EscalationWorkflow.reassign, EscalationAction(by="mgr-01", to="csm-02", note="covering")
        )
        await env.sleep(timedelta(minutes=5))
        st = await state(handle)
        assert st.holder == "csm-02"
        event = st.timeline[-1]
        assert (event.kind, event.by) == ("reassigned", "mgr-01")
        told = [n for _, n in fakes.notices if n.person_id == "csm-02"]
        assert [n.channel for n in told] == ["local", "slack"]
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="mgr-01"))
        await handle.result()


@pytest.mark.asyncio
async def test_the_same_escalation_is_never_opened_twice(client: Client) -> None:
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    wid = f"escalation:rule:ACME:{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue, wid)
        with pytest.raises(WorkflowAlreadyStartedError):
            await open_one(client, queue, wid)  # while it is open
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="mgr-01"))
        await handle.result()
        with pytest.raises(WorkflowAlreadyStartedError):
            await open_one(client, queue, wid)  # and after it closed
    assert len([p for p in fakes.plans if p.from_level == 1]) == 1


HISTORY = HISTORIES / "escalation" / "climb-reassign-ack-snooze-resolve.json"
HISTORY_ID = "escalation:recorded:ACME:1"


async def record_history(env: WorkflowEnvironment, client: Client) -> None:
    """Every branch once: climb, reassign, acknowledge, snooze, wake, resolve.
    Re-record after a deliberate, versioned change:
        CSAUTO_RECORD_HISTORIES=1 .venv/bin/pytest tests/workflows/test_escalation_workflow.py
    """
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue, HISTORY_ID)
        await env.sleep(timedelta(minutes=70))
        await handle.signal(EscalationWorkflow.reassign, EscalationAction(by="mgr-01", to="csm-02"))
        await handle.signal(EscalationWorkflow.acknowledge, EscalationAction(by="csm-02"))
        st = await state(handle)
        until = st.opened_at + timedelta(hours=3)
        await handle.signal(EscalationWorkflow.snooze, EscalationAction(by="csm-02", until=until))
        await env.sleep(timedelta(hours=3))
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="csm-02", note="done"))
        await handle.result()
        history = await handle.fetch_history()
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    HISTORY.write_text(history.to_json(), encoding="utf-8")


@pytest.mark.asyncio
async def test_the_committed_history_replays(env: WorkflowEnvironment, client: Client) -> None:
    if os.environ.get("CSAUTO_RECORD_HISTORIES"):
        await record_history(env, client)
    history = WorkflowHistory.from_json(HISTORY_ID, HISTORY.read_text(encoding="utf-8"))
    kinds = {e.WhichOneof("attributes") for e in history.events}
    assert "workflow_execution_signaled_event_attributes" in kinds
    replayer = Replayer(workflows=[EscalationWorkflow], data_converter=data_converter)
    await replayer.replay_workflow(history)


@pytest.mark.asyncio
@pytest.mark.parametrize("severity", ["critical", "high"])
async def test_the_shipped_matrix_is_followed_to_the_minute_in_working_time(
    env: WorkflowEnvironment, client: Client, db_url: str, severity: str
) -> None:
    """With the real activities and the shipped matrix: critical (enterprise) runs around
    the clock, high (enterprise) counts London business hours, skipping nights, weekends
    and bank holidays. Each round is reached exactly when the one before expires."""
    store = playbook_store(db_url)
    acts = PlaybookActivities(store, load_health_model())
    esc = escalation_activities(acts)
    queue = f"esc-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[EscalationWorkflow],
        activities=[*acts.all(), *esc.all()],
        activity_executor=ThreadPoolExecutor(4),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    ):
        handle = await client.start_workflow(
            EscalationWorkflow.run,
            EscalationInput(
                account_id="ACME", severity=severity, reason="r", source_workflow_id=""
            ),
            id=f"escalation:matrix:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        await env.sleep(timedelta(days=12))  # past every deadline, weekends included
        st = await state(handle)
        plan = EscalationPlan.model_validate(get_plan(store, handle.id))
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="mgr-01"))
        await handle.result()
    entry = esc.matrix.entry_for(severity, store.account("ACME"))  # type: ignore[arg-type]
    assert entry is not None
    calendar = esc.matrix.calendar_of(entry)
    reached = [e.at for e in st.timeline if e.kind == "notified"]
    assert len(reached) == len(plan.levels)
    for at, rnd in zip(reached, plan.levels, strict=True):  # each round when planned
        assert timedelta(0) <= at - rnd.starts_at < timedelta(seconds=1)
    expected_within = [lvl.ack_within for lvl in entry.levels for _ in range(lvl.repeat + 1)]
    for rnd, within, nxt in zip(
        plan.levels, expected_within, [*plan.levels[1:], None], strict=True
    ):
        assert working_time_between(rnd.starts_at, rnd.ack_by, calendar) == within
        if nxt is not None:
            assert nxt.starts_at == rnd.ack_by
    assert [e.kind for e in st.timeline][-1] == "exhausted"
    if severity == "critical":
        assert calendar is None
        assert plan.levels[-1].ack_by - plan.levels[0].starts_at == sum(
            expected_within, timedelta()
        )
    else:  # nights and weekends do not count: the wall clock runs well past the sum
        assert calendar is not None
        # 16 working hours are two 8-hour days, so at least one closed night lies between
        # (the clock of the shared test server is on whatever weekday the session left it:
        # a weekend is not always crossed, so twice the sum was not always passed)
        assert plan.levels[-1].ack_by - plan.levels[0].starts_at > sum(
            expected_within, timedelta()
        ) + timedelta(hours=12)


@pytest.mark.asyncio
async def test_completing_the_crm_task_acknowledges_for_its_assignee(
    env: WorkflowEnvironment, client: Client
) -> None:
    fakes, queue = Fakes(), f"esc-{uuid.uuid4()}"
    async with worker(client, fakes, queue):
        handle = await open_one(client, queue)
        await env.sleep(timedelta(minutes=5))
        [task] = [n for _, n in fakes.notices if n.channel == "local"]
        await handle.signal(EscalationWorkflow.task_completed, task.step_id)  # as the CRM does
        await env.sleep(timedelta(hours=3))
        st = await state(handle)
        assert (st.status, st.holder) == ("acknowledged", "csm-01")
        assert st.timeline[-1].detail == f"completed the CRM task {task.step_id}"
        assert len(fakes.notices) == 2  # the climb stopped at level 1
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="csm-01"))
        await handle.result()
