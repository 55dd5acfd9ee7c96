"""The automatic re-drive: dead letters of transient failures, due by their growing delays
(schedules.yaml `redrive:`), re-driven once their connector's breaker lets calls through.

The breaker each worker reported is in the store (`csauto connectors status`): while it
is open and younger than the connector's `breaker.reset_after`, its entries wait for it
(no attempt spent); an older open state is stale (nothing called the vendor since it
opened), and the re-drive's first call is the probe. A permanent refusal never becomes
due (store/deadletters.py); an entry older than `max_age` stops being due and waits for a
person.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from csautomation.activities.redrive import Outcome, Redriver
from csautomation.connectors.config import Breaker
from csautomation.store.deadletters import breaker_states, due_dead_letters, postpone
from csautomation.store.engine import aware

__all__ = ["RedrivePass", "redrive_due"]


class RedrivePass:
    """What one pass did: counts per outcome, and the steps whose playbooks to tell."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.steps: list[tuple[str, str]] = []

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.status == "redriven":
            self.steps.append((outcome.row.workflow_id, outcome.row.step_id))

    def to_dict(self) -> dict[str, Any]:
        return {k: self.counts.get(k, 0) for k in ("redriven", "failed", "deferred", "to_person")}


def _reset_after(redriver: Redriver, connector: str) -> timedelta:
    found = redriver.acts.connectors.by_name.get(connector)
    breaker = getattr(getattr(found, "config", None), "breaker", None)
    return breaker.reset_after if isinstance(breaker, Breaker) else Breaker().reset_after


def redrive_due(redriver: Redriver, now: datetime) -> RedrivePass:
    """Re-drive the dead letters due at `now` whose connector's breaker is closed (or
    due a probe); each outcome is recorded on its entry."""
    store = redriver.acts.store
    done = RedrivePass()
    states = breaker_states(store)
    ready = []
    for row in due_dead_letters(store, now):
        assert row.id is not None
        if now - aware(row.first_failure) > redriver.policy.max_age:
            postpone(store, row.id, None)  # too old for automatic re-drive: a person decides
            done.counts["to_person"] += 1
            continue
        state = states.get(row.connector)
        if state is not None and state.state != "closed":
            probe_at = aware(state.updated_at) + _reset_after(redriver, row.connector)
            if probe_at > now:  # wait for the breaker: no attempt spent
                postpone(store, row.id, probe_at)
                done.counts["deferred"] += 1
                continue
        ready.append(row)
    redriver.run(ready, done.add)
    return done
