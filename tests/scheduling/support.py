"""Shared set-up for the scheduler tests: a scheduled rule over the accounts of
`factories.scheduler_store`, and a tiny pull (this module stands in for
csautomation.ingest.pulls: `SchedulerOptions(pulls_module="scheduling.support")`)."""

from __future__ import annotations

import os
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from csautomation.store.engine import table
from csautomation.store.repo import Store
from csautomation.store.scheduler_tables import SchedulerRunRow
from csautomation.store.tables import RuleFiringRow

T = TypeVar("T")

# usage-decline's conditions, on a schedule only: sweeps are what wake it
RULE = """\
rules:
  - id: usage-drop
    name: Logins down 30% or more in 30 days
    owner: cs-ops@example.com
    priority: high
    trigger: {schedule: "0 6 * * *"}
    conditions:
      all:
        - usage.logins_change_30d_pct <= -30
    cooldown: 30d
    actions:
      - create_task: {subject: "Logins are down for {{ account.name }}"}
"""


def write_rules(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "usage.yaml").write_text(RULE)
    return folder


def firings(store: Store) -> list[tuple[str, str, int, datetime | None]]:
    t = table(RuleFiringRow)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.rule_id, t.c.account_id, t.c.window, t.c.dispatched_at).order_by(t.c.id)
        ).all()
    return [(r, a, w, d) for r, a, w, d in rows]


def run_rows(store: Store) -> list[Any]:
    t = table(SchedulerRunRow)
    with store.engine.connect() as conn:
        return list(conn.execute(select(t).order_by(t.c.id)).all())


def wait_for(check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """Poll until `check()` is truthy; fail with `what` at the deadline."""
    deadline = clock.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if clock.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        clock.sleep(0.05)


# the test pull ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PullContext:
    store: Store
    connectors_path: Path
    now: datetime


@dataclass(frozen=True)
class PullResult:
    kind: str
    fetched: int


def run_pull(kind: str, options: dict[str, Any], ctx: PullContext) -> PullResult:
    """Appends one line per run to `options["file"]`: the run's time and this process;
    raises when `options["fail"]` says so."""
    if options.get("fail"):
        raise RuntimeError(options["fail"])
    with open(options["file"], "a") as out:  # O_APPEND: whole lines from every process
        out.write(f"{ctx.now.isoformat()} {os.getpid()}\n")
    return PullResult(kind, 1)
