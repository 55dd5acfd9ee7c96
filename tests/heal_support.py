"""The automatic re-drive as the scheduler runs it, on a clock the test moves: a scheduler
process's own connectors (their breakers on that clock too, reporting to the store as a
worker's do), and passes of `redrive_due` until no dead letter is left open."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from csautomation.activities.playbook import PlaybookActivities
from csautomation.activities.redrive import Redriver
from csautomation.connectors.registry import Connectors
from csautomation.connectors.resilience import BreakerState, Guardable
from csautomation.facts.health import load_health_model
from csautomation.scheduling.config import Redrive
from csautomation.scheduling.redrive import redrive_due
from csautomation.store.deadletters import dead_letters, save_breaker
from csautomation.store.engine import aware
from csautomation.store.repo import Store
from factories import vendor_connectors
from fakes.vendors import Vendors


def reporting(store: Store) -> Any:
    """A breaker's changes kept in the store, as bootstrap.build_connectors does."""

    def report(state: BreakerState) -> None:
        save_breaker(store, state.connector, state.state, state.failures, state.last_error)

    return report


class Clock:
    """The scheduler's time, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


@dataclass
class Settled:
    passes: int = 0
    took: timedelta = timedelta(0)  # scheduler time from `start` to the last re-drive
    outcomes: Counter[str] = field(default_factory=Counter)
    left: int = 0  # dead letters still open


def settle(
    store: Store,
    vendors: Vendors,
    folder: Path,
    start: datetime,
    policy: Redrive | None = None,
    max_passes: int = 200,
) -> Settled:
    """Run the scheduler's re-drive passes from `start`, each at the next due time, with
    connectors of its own (a scheduler process's), until nothing is open or due."""
    policy = policy or Redrive()
    clock = Clock(aware(start))
    connectors: Connectors = vendor_connectors(vendors, store, folder, on_change=reporting(store))
    for connector in connectors.by_name.values():
        if isinstance(connector, Guardable) and connector.guard is not None:
            connector.guard.breaker.clock = clock.seconds
    acts = PlaybookActivities(store, load_health_model(), connectors=connectors)
    redriver = Redriver(acts, policy, concurrency=policy.concurrency, clock=clock)
    done = Settled()
    try:
        while done.passes < max_passes:
            open_ = dead_letters(store)
            due = [d.next_redrive_at for d in open_ if d.next_redrive_at is not None]
            if not due:
                break
            clock.now = max(clock.now, aware(min(due)))
            result = redrive_due(redriver, clock.now)
            done.passes += 1
            done.outcomes.update(result.counts)
            done.took = clock.now - aware(start)
    finally:
        connectors.close()
    done.left = len(dead_letters(store))
    return done
