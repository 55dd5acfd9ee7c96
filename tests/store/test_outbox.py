"""The outboxes and the runs index, on SQLite and PostgreSQL: every write idempotent and
independent of the order in which the dispatcher and the workflow make theirs."""

from __future__ import annotations

from datetime import UTC, datetime

from csautomation.facts.model import Signal
from csautomation.store.outbox import (
    RunStart,
    commit_evaluation,
    finish_run,
    index_firings,
    mark_firings,
    pending_signals,
    runs,
    undispatched_firings,
)
from csautomation.store.repo import Store

AT = datetime(2026, 11, 1, 9, tzinfo=UTC)


def firing(rule: str, priority: str = "high", window: int = 7) -> dict[str, object]:
    return {
        "rule_id": rule,
        "rule_version": "v1",
        "account_id": "ACME",
        "window": window,
        "priority": priority,
        "fired_at": AT,
        "explain": {"matched": True},
        "actions": [{"start_playbook": "usage-recovery"}],
    }


def start(wf_id: str, run_id: str | None = None) -> RunStart:
    return RunStart(wf_id, run_id, "playbook", "r", "p", "v", "ACME", "high", "csauto-high")


def test_an_evaluation_pass_commits_firings_and_marks_at_once_and_twice_is_once(
    store: Store,
) -> None:
    for day in (1, 2):
        store.add_signal(
            Signal(
                type="usage_daily",
                account_id="ACME",
                occurred_at=AT.replace(day=day),
                payload={"logins": 1, "active_users": 1},
            )
        )
    ids = [p.row_id for p in pending_signals(store)]
    assert len(ids) == 2
    rows = [firing("usage-decline"), firing("renewal-risk", "critical")]
    assert commit_evaluation(store, rows, ids, AT) == 2
    assert pending_signals(store) == []
    # the same pass again (a crash before the marks were seen): nothing new
    assert commit_evaluation(store, rows, ids, AT) == 0
    outbox = undispatched_firings(store)
    assert [r.rule_id for r in outbox] == ["renewal-risk", "usage-decline"]  # critical first
    first = outbox[0]
    assert first.id is not None and first.actions == [{"start_playbook": "usage-recovery"}]
    mark_firings(store, {first.id: []}, AT)
    assert [r.rule_id for r in undispatched_firings(store)] == ["usage-decline"]


def test_the_runs_index_ends_the_same_whichever_write_lands_first(store: Store) -> None:
    index_firings(store, {1: [start("wf-a")]})
    finish_run(store, "wf-a", "recovered", AT)
    mark_firings(store, {1: [start("wf-a", "run-1")]}, AT)

    finish_run(store, "wf-b", "escalated", AT)  # the workflow was faster than its index
    index_firings(store, {1: [start("wf-b")]})
    mark_firings(store, {1: [start("wf-b", "run-2")]}, AT)

    index_firings(store, {1: [start("wf-c")]})
    index_firings(store, {1: [start("wf-c")]})  # a retried dispatch
    by_id = {r.workflow_id: r for r in runs(store)}
    assert (by_id["wf-a"].status, by_id["wf-a"].outcome, by_id["wf-a"].run_id) == (
        "completed",
        "recovered",
        "run-1",
    )
    assert (by_id["wf-b"].status, by_id["wf-b"].rule_id, by_id["wf-b"].run_id) == (
        "completed",
        "r",
        "run-2",
    )
    assert by_id["wf-c"].status == "running"
    assert len(by_id) == 3
