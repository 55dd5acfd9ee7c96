"""What the Amplitude and Mixpanel pull tests share: a clock the export client's waits
advance (so a Retry-After is honoured without the test waiting), 60 days of product usage
that falls by 70% in its second month, and the stored usage signals and firings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client

from csautomation.facts.health import load_health_model
from csautomation.ingest.pulls import export_http
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.engine import table
from csautomation.store.outbox import firings_per_rule
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow
from factories import ROOT, account
from playbook_support import PLAYBOOKS

NOW = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)
DAYS = 60
FIRST_DAY = NOW.date() - timedelta(days=DAYS)  # the 60 days end yesterday
MAPPING: dict[str, Any] = {
    "fields": {
        "logins": {"events": ["Signed In"]},
        "feature_events": {"events": ["Report Run", "Export"]},
        "active_users": {"events": ["Signed In", "Report Run", "Export"], "unit": "users"},
    },
    "user_accounts": {"bob@beta.example": "BETA"},
}


@dataclass
class FakeClock:
    """Monotonic seconds that only the export client's waits move."""

    now: float = 1000.0
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(export_http, "sleep", clock.sleep)
    monkeypatch.setattr(export_http, "clock", clock)
    return clock


def usage_store(store: Store) -> Store:
    store.upsert_accounts([account(id="ACME", seats=40), account(id="BETA", name="Beta")])
    return store


def day_plan(n: int) -> tuple[int, int]:
    """(users, logins each) on day n of 60: 8 users x 5 logins, then 3 users x 4."""
    return (8, 5) if n < DAYS // 2 else (3, 4)


def sixty_days(add: Callable[[str, str, datetime], None]) -> None:
    """ACME's users sign in and run reports for 60 days; `add(event, user, at)`."""
    for n in range(DAYS):
        day = FIRST_DAY + timedelta(days=n)
        users, logins = day_plan(n)
        for u in range(users):
            for k in range(logins):
                add("Signed In", f"user{u}@acme.example", _at(day, 8 + k, u))
        add("Report Run", "user0@acme.example", _at(day, 15, 0))
        add("Export", "user1@acme.example", _at(day, 16, 0))


def _at(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def expected(n: int) -> dict[str, int]:
    users, logins = day_plan(n)
    return {"logins": users * logins, "active_users": users, "feature_events": 2}


def usage_signals(store: Store) -> dict[str, tuple[str, dict[str, Any], bool]]:
    """idempotency key -> (account, payload, pending evaluation) of every usage signal."""
    t = table(SignalRow)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.idempotency_key, t.c.account_id, t.c.payload, t.c.evaluated_at).where(
                t.c.type == "usage_daily"
            )
        )
        return {k: (a, p, e is None) for k, a, p, e in rows}


def evaluate(store: Store, client: Client) -> dict[str, int]:
    """Every stored signal through the real pipeline and rules; the firings per rule."""
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    try:
        pipe = Pipeline(store, runtime, PLAYBOOKS, client)
        while pipe.evaluate_pending():
            pass
    finally:
        runtime.close()
    return firings_per_rule(store)


def doc_section(vendor: str) -> str:
    """docs/data.md's `## <vendor>` section."""
    text = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {vendor}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def doc_blocks(section: str, lang: str) -> list[str]:
    """The fenced blocks of one language, in order."""
    parts = section.split(f"```{lang}\n")[1:]
    return [p.split("```", 1)[0] for p in parts]


def shipped_pull(name: str) -> dict[str, Any]:
    """The options of a pull in the shipped schedules.yaml."""
    import yaml

    doc = yaml.safe_load((ROOT / "schedules.yaml").read_text(encoding="utf-8"))
    options: dict[str, Any] = doc["pulls"][name]["options"]
    return options
