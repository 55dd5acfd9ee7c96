"""The whole story in a run's timeline, read from real histories: the shipped
usage-recovery playbook and the escalation it opens, run by the real workflows and
activities on the time-skipping server. Each wait shows its step and deadline, the branch
the facts it read and which way it went, each escalation transition who took it and when;
a task completed by someone other than its assignee credits them, in the escalation, the
timeline and the ledger. A committed history recorded before waits were named still tells
its escalation's transitions."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from csautomation.audit.timeline import Line, Timeline, timeline
from csautomation.ingest.completions import complete_task
from csautomation.store.escalations import get_escalation
from csautomation.store.ledger import Query, entries
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import EscalationAction
from factories import add_playbook_accounts
from playbook_support import HISTORIES, make_worker, playbook_input, until

CSM, MANAGER, COVER = "csm-01", "mgr-01", "csm-02"  # ACME's owner, their manager, a peer


@pytest.fixture
def store(store: Store) -> Store:
    return add_playbook_accounts(store)


@dataclass
class Story:
    playbook: Timeline
    escalation: Timeline
    store: Store
    snoozed_until: datetime


def find(tl: Timeline, start: str) -> Line:
    found = [line for line in tl.lines if line.what.startswith(start)]
    assert found, f"no line starting {start!r} in:\n{tl.render()}"
    return found[0]


def moment(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


async def escalation_task(store: Store, eid: str, step: str) -> int:
    await until(lambda: any(t.step_id == step for t in local_tasks(store, eid)), step)
    task_id = next(t.id for t in local_tasks(store, eid) if t.step_id == step)
    assert task_id is not None
    return task_id


async def passes(env: WorkflowEnvironment, deadline: datetime) -> None:
    """Skip the shared clock to a minute past `deadline`."""
    await env.sleep(deadline - await env.get_current_time() + timedelta(minutes=1))


@pytest_asyncio.fixture
async def story(env: WorkflowEnvironment, client: Client, store: Store) -> Story:
    """The CSM's outreach task completed by their manager; the run waits two weeks, its
    branch finds usage still down and escalates; nobody acknowledges level 1 in time; the
    manager completes the CSM's escalation task, reassigns to a peer, who snoozes it and
    resolves it after the snooze."""
    queue = f"story-{uuid.uuid4()}"
    async with make_worker(client, store, queue):
        handle: WorkflowHandle[PlaybookWorkflow, object] = await client.start_workflow(
            PlaybookWorkflow.run,
            playbook_input(),
            id=f"playbook:usage-decline:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        await until(lambda: bool(local_tasks(store, handle.id)), "the outreach task")
        [task] = local_tasks(store, handle.id)
        assert task.id is not None and task.assignee == CSM
        # completed once the run waits for it: a completion that arrives before the wait
        # begins ends it at once, and the timeline then has no wait to show
        async with asyncio.timeout(30):
            while await handle.query(PlaybookWorkflow.current_step) != "wait-for-call":
                await asyncio.sleep(0.02)
        await complete_task(client, store, task.id, by=MANAGER)
        await handle.result()

        eid = f"escalation:ACME:{handle.id}:escalate"
        first = await escalation_task(store, eid, f"L1.0:local:{CSM}")
        await until(lambda: _deadline(store, eid) is not None, "level 1's deadline recorded")
        deadline = _deadline(store, eid)
        assert deadline is not None
        await passes(env, deadline)  # level 1 is not acknowledged in time
        await escalation_task(store, eid, f"L1.1:local:{CSM}")
        await complete_task(client, store, first, by=MANAGER)
        esc = client.get_workflow_handle(eid)
        await esc.signal(
            EscalationWorkflow.reassign, EscalationAction(by=MANAGER, to=COVER, note="covering")
        )
        snoozed_until = (await env.get_current_time()) + timedelta(days=1)
        await esc.signal(
            EscalationWorkflow.snooze,
            EscalationAction(by=COVER, until=snoozed_until, note="after their QBR"),
        )
        await until(lambda: _status(store, eid) == "snoozed", "the snooze")
        await passes(env, snoozed_until)
        await until(lambda: _status(store, eid) == "open", "the end of the snooze")
        await esc.signal(EscalationWorkflow.resolve, EscalationAction(by=COVER, note="saved"))
        assert await esc.result() == "resolved"
        return Story(
            timeline(await handle.fetch_history()),
            timeline(await esc.fetch_history()),
            store,
            snoozed_until,
        )


def _deadline(store: Store, eid: str) -> datetime | None:
    state = get_escalation(store, eid)
    return state.ack_by if state is not None else None


def _status(store: Store, eid: str) -> str:
    state = get_escalation(store, eid)
    return state.status if state is not None else ""


def near(shown: datetime, then: datetime) -> bool:
    """`shown` (whole seconds, from a clock read a moment before `then`) is `then`'s."""
    return then - timedelta(seconds=10) <= shown <= then


def shown_until(what: str) -> datetime:
    """The deadline a wait's line shows ('... until 2037-01-24 16:49:23Z ...')."""
    found = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)Z", what)
    assert found, what
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@pytest.mark.asyncio
async def test_waits_show_their_step_and_deadline(story: Story) -> None:
    tl = story.playbook
    started = find(tl, "workflow started").at
    wait_for = find(tl, "step wait-for-call: waiting for the task of step outreach")
    assert wait_for.what.endswith("(timeout 7d, then escalate)")
    # the deadline is the workflow's clock at the wait's start plus the timeout, shown to
    # the second below: the event that records it may carry a time a few milliseconds later
    assert near(shown_until(wait_for.what), wait_for.at + timedelta(days=7))
    assert find(tl, "step wait-for-call: the wait is over").at < started + timedelta(days=1)
    wait = find(tl, "step give-it-time: waiting 14d")
    assert near(shown_until(wait.what), wait.at + timedelta(days=14))
    waited = find(tl, "step give-it-time: waited until").at
    assert waited - wait.at > timedelta(days=14) - timedelta(seconds=1)


@pytest.mark.asyncio
async def test_the_branch_shows_the_facts_it_read_and_which_way_it_went(story: Story) -> None:
    tl = story.playbook
    branch = find(tl, "step check-recovery: branch on")
    assert branch.what == (
        "step check-recovery: branch on usage.logins_change_30d_pct > -10: "
        "does not hold, else escalate"
    )
    [check] = branch.detail
    assert check.startswith("✘ usage.logins_change_30d_pct > -10 (value: -")
    goal = find(tl, "goal not met (usage.logins_change_30d_pct >= 0)")
    assert any(d.startswith("checked ") for d in goal.detail)  # daily checks, folded
    # the recorded steps agree: the branch went to escalate
    assert "step check-recovery (branch)" in "\n".join(tl.lines[-1].detail)
    assert tl.status == "completed, outcome escalated"


@pytest.mark.asyncio
async def test_a_task_completed_by_someone_else_credits_them(story: Story) -> None:
    done = find(story.playbook, "the task of step outreach was completed")
    assert (done.what, done.by) == (
        f"the task of step outreach was completed by {MANAGER}",
        MANAGER,
    )
    ack = find(story.escalation, "acknowledged by")
    assert ack.by == MANAGER and ack.what == "acknowledged by Elena Petrova (mgr-01)"
    assert ack.detail == ["completed the CRM task of level 1 (assigned to Priya Raman (csm-01))"]
    # the workflow credits them too, and the ledger records who completed each task
    eid = story.escalation.workflow_id
    state = get_escalation(story.store, eid)
    assert state is not None
    acked = next(e for e in state.timeline if e.kind == "acknowledged")
    assert acked.by == MANAGER
    completions = entries(story.store, Query(kinds=["task_completed"]))
    assert {(e.workflow_id, e.detail["by"], e.detail["assignee"]) for e in completions} == {
        (story.playbook.workflow_id, MANAGER, CSM),
        (eid, MANAGER, CSM),
    }


@pytest.mark.asyncio
async def test_every_escalation_transition_says_who_and_when(story: Story) -> None:
    tl = story.escalation
    plan = find(tl, "plan for team enterprise")
    assert plan.detail[0].startswith("level 1: Priya Raman (csm-01, csm) via local")
    notified = find(tl, "level 1: Priya Raman (csm-01) notified via local")
    deadline = next(d for d in notified.detail if d.startswith("acknowledge by "))
    missed = find(tl, "level 1: not acknowledged by")
    assert missed.what == f"level 1: {deadline.replace('acknowledge by', 'not acknowledged by')}"
    find(tl, "level 1 (repeat 1): Priya Raman (csm-01) notified via local")
    people = [(line.what, line.by, line.detail) for line in tl.lines if line.by]
    assert people == [
        (
            "acknowledged by Elena Petrova (mgr-01)",
            MANAGER,
            ["completed the CRM task of level 1 (assigned to Priya Raman (csm-01))"],
        ),
        ("reassigned by Elena Petrova (mgr-01) to csm-02", MANAGER, ["covering"]),
        (f"snoozed by csm-02 until {moment(story.snoozed_until)}", COVER, ["after their QBR"]),
        ("resolved by csm-02", COVER, ["saved"]),
    ]
    ended = find(tl, "the snooze ended at")
    assert ended.at >= story.snoozed_until - timedelta(seconds=1)
    assert [line.what for line in tl.lines].index(ended.what) < [
        line.what for line in tl.lines
    ].index("resolved by csm-02")
    assert tl.status == "completed, outcome resolved"


def test_a_history_recorded_before_waits_were_named_still_tells_who_acted() -> None:
    path = HISTORIES / "escalation" / "climb-reassign-ack-snooze-resolve.json"
    tl = timeline(WorkflowHistory.from_json("escalation:recorded:ACME:1", path.read_text()))
    people = [(line.what, line.by) for line in tl.lines if line.by]
    assert people == [
        ("reassigned by Mo (mgr-01) to csm-02", "mgr-01"),
        ("acknowledged by csm-02", "csm-02"),
        ("snoozed by csm-02 until 2066-11-15 19:20:53Z", "csm-02"),
        ("resolved by csm-02", "csm-02"),
    ]
    assert find(tl, "level 2: Mo (mgr-01) notified via slack")
    assert "waited 30m" in [line.what for line in tl.lines]  # its waits carry no name
