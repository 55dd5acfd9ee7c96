"""The store on SQLite, and on PostgreSQL wherever a server answers on 127.0.0.1:5432."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.repo import Store
from factories import account

ROOT = Path(__file__).parents[2]


def signal(day: int, key: str | None = None) -> Signal:
    return Signal(
        type="support_escalation",
        account_id="ACME",
        occurred_at=datetime(2026, 10, day, 9, tzinfo=UTC),
        payload={"reason": "x"},
        idempotency_key=key or f"esc-{day}",
    )


def test_signals_are_deduplicated_by_idempotency_key(store: Store) -> None:
    assert store.add_signal(signal(1)) is True
    assert store.add_signal(signal(1)) is False
    assert store.add_signals([signal(1), signal(2), signal(3), signal(3)]) == 2
    stored = store.signals_for("ACME")
    assert [s.idempotency_key for s in stored] == ["esc-1", "esc-2", "esc-3"]
    assert stored[0].occurred_at == signal(1).occurred_at  # timezone-aware round trip


def test_accounts_round_trip(store: Store) -> None:
    store.upsert_accounts([account()])
    store.upsert_accounts([account().model_copy(update={"name": "Acme Corp"})])
    got = store.account("ACME")
    assert got is not None and got.name == "Acme Corp" and got.tier == "enterprise"
    assert store.account("NOPE") is None


def test_cooldowns_survive_a_new_runtime(store: Store, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "rules:\n  - id: r\n    name: r\n    owner: o\n    priority: high\n"
        "    trigger: {on: [support_escalation]}\n    conditions: health.score < 50\n"
        "    cooldown: 7d\n    actions: [{start_playbook: p}]\n",
        encoding="utf-8",
    )
    at = datetime(2026, 11, 1, tzinfo=UTC)
    first = RuleRuntime([rules], load_health_model(), cooldowns=SqlCooldowns(store))
    assert len(first.evaluate_record("ACME", {"health.score": 10}, at, None).fired) == 1
    first.close()
    # a restarted process reads the cooldown back from the database
    second = RuleRuntime([rules], load_health_model(), cooldowns=SqlCooldowns(store))
    later = second.evaluate_record("ACME", {"health.score": 10}, at + timedelta(days=3), None)
    assert later.fired == () and len(later.suppressed) == 1
    second.close()
    assert store.last_fired("r", "ACME") == at


def test_a_firing_is_recorded_once_per_cooldown_window(store: Store) -> None:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    args = ("r", "v1", "ACME", 2930, "high", at, {"matched": True})
    assert store.record_firing(*args) is True
    assert store.record_firing(*args) is False
    assert store.record_firing("r", "v1", "ACME", 2931, "high", at, {}) is True
