"""The evaluation instant through the store (rules/README.md, "Time: days, windows and the
evaluation instant"): a signal is stored and read back at its instant, on its UTC day; the
pipeline evaluates at its newest pending signal's moment and reads no signal after it; a
sweep reads its whole UTC day, as `--as-of` does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from csautomation.facts.derive import derive
from csautomation.facts.derived import SignalsFact
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling.sweep import sweep
from csautomation.store.facts import FactsReader
from csautomation.store.outbox import mark_all_evaluated, pending_signals, undispatched_firings
from csautomation.store.repo import Store
from factories import account

END = date(2026, 11, 1)
MODEL = load_health_model()
EST = timezone(timedelta(hours=-5))
TODAY_COUNT = SignalsFact(("support_escalation",), 1, "occurrences")
WITHIN_14D = SignalsFact(("support_escalation",), 14, "occurrences")

RULES = """\
rules:
  - id: escalated-today
    name: Escalated today
    owner: cs-ops@example.com
    priority: high
    trigger: {on: [usage_daily], schedule: "0 6 * * *"}
    conditions:
      signals: {of: [support_escalation], at_least: 1, within: 1d}
    cooldown: 1h
    actions:
      - create_task: {subject: "Call {{ account.name }}"}
"""


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def signal(kind: str, moment: datetime, account_id: str = "ACME", **payload: Any) -> Signal:
    return Signal(type=kind, account_id=account_id, occurred_at=moment, payload=payload)


def usage(moment: datetime, account_id: str = "ACME") -> Signal:
    return signal("usage_daily", moment, account_id, logins=1, active_users=1)


@pytest.fixture
def store(store: Store) -> Store:
    store.upsert_accounts([account(), account(id="BETA")])
    store.add_signals(
        [usage(at(END - timedelta(days=b), 9), a) for a in ("ACME", "BETA") for b in range(40)]
    )
    return store


@pytest.fixture
def runtime(tmp_path: Path, store: Store) -> Iterator[RuleRuntime]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "today.yaml").write_text(RULES)
    r = RuleRuntime([tmp_path / "rules"], MODEL, SqlCooldowns(store), reload_interval=3600)
    yield r
    r.close()


def test_a_signal_in_another_zone_is_stored_at_its_instant_on_its_utc_day(store: Store) -> None:
    late = signal("support_escalation", datetime(2026, 10, 31, 23, 30, tzinfo=EST))
    store.add_signal(late)
    instant = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)
    reader = FactsReader(store, MODEL)
    [stored] = [s for s in store.signals_for("ACME") if s.type == "support_escalation"]
    [pending] = [p.signal for p in pending_signals(store) if p.signal.type == "support_escalation"]
    [read] = [s for s in reader.history("ACME")[0] if s.type == "support_escalation"]
    for s in (stored, pending, read):
        assert (s.occurred_at, s.day) == (instant, date(2026, 11, 1))
    history = store.signals_for("ACME")
    for day, count in ((date(2026, 10, 31), 0), (date(2026, 11, 14), 1), (date(2026, 11, 15), 0)):
        record = reader.record(account(), day, [WITHIN_14D])
        assert record == derive(account(), history, day, MODEL, [WITHIN_14D]).record()
        assert record[WITHIN_14D.key] == count, day


def test_the_facts_reader_reads_an_instant_up_to_itself_and_a_day_whole(store: Store) -> None:
    store.add_signal(signal("support_escalation", at(END, 20)))
    reader = FactsReader(store, MODEL)

    def today(as_of: date | datetime) -> int:
        count: int = reader.record(account(), as_of, [TODAY_COUNT])[TODAY_COUNT.key]
        return count

    assert today(at(END, 12)) == 0  # the escalation comes later that day
    assert today(at(END, 20)) == 1  # at it: occurred_at <= T
    assert today(END) == 1  # the day, read at its end
    assert today(at(END, 21)) == today(END)
    # the same record whichever the path: one account alone, or among several (the grid)
    together = reader.records([(account(), at(END, 12)), *[(account(id="BETA"), END)] * 4])
    assert together[0] == reader.record(account(), at(END, 12))


def test_the_pipeline_evaluates_without_the_signals_after_its_moment(
    store: Store, runtime: RuleRuntime
) -> None:
    """An escalation stored ahead of time (at 20:00) does not count at 10:00, when the day's
    usage comes in; it counts for the usage at 21:00."""
    store.add_signal(signal("support_escalation", at(END, 20)))
    mark_all_evaluated(store)
    pipeline = Pipeline(store, runtime, {}, client=None)  # type: ignore[arg-type]
    store.add_signal(usage(at(END, 10)))
    assert pipeline.evaluate_pending() == 1
    assert undispatched_firings(store) == []
    store.add_signal(usage(at(END, 21)))
    assert pipeline.evaluate_pending() == 1
    [fired] = undispatched_firings(store)
    assert (fired.rule_id, fired.account_id) == ("escalated-today", "ACME")
    assert fired.fired_at.replace(tzinfo=UTC) == at(END, 21)


def test_a_sweep_reads_its_whole_utc_day(store: Store, runtime: RuleRuntime) -> None:
    store.add_signals(
        [
            signal("support_escalation", at(END, 20)),  # later on the sweep's day
            signal("support_escalation", datetime(2026, 11, 1, 19, 30, tzinfo=EST), "BETA"),
        ]
    )
    mark_all_evaluated(store)
    first = sweep(store, runtime, ["escalated-today"], at(END, 6))
    assert (first.accounts, first.matched) == (2, 1)  # BETA's is 00:30 UTC on the 2nd
    assert [f.account_id for f in undispatched_firings(store)] == ["ACME"]
    second = sweep(store, runtime, ["escalated-today"], at(END + timedelta(days=1), 6))
    assert (second.matched, second.fired) == (1, 1)  # ACME's is 1 day ago: outside 1d
    assert [f.account_id for f in undispatched_firings(store)] == ["ACME", "BETA"]
