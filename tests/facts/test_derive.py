"""Facts are derived from signal history; the health model is configurable."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from csautomation.errors import ConfigFileError
from csautomation.facts.derive import derive
from csautomation.facts.derived import SignalsFact, WindowFact
from csautomation.facts.health import HealthModel, load_health_model
from csautomation.facts.model import Account, Signal

END = date(2026, 11, 1)
ROOT = Path(__file__).parents[2]


def account(**kw: Any) -> Account:
    base: dict[str, Any] = dict(
        id="ACME",
        name="Acme",
        tier="enterprise",
        arr=100000,
        seats=50,
        owner="csm-01",
        manager="mgr-01",
        renewal_date=date(2027, 1, 15),
        customer_since=date(2023, 1, 1),
    )
    return Account.model_validate(base | kw)


def sig(kind: str, days_ago: int, **payload: Any) -> Signal:
    day = END - timedelta(days=days_ago)
    return Signal(
        type=kind,
        account_id="ACME",
        payload=payload,
        occurred_at=datetime.combine(day, time(12), tzinfo=UTC),
    )


def usage(days: range, logins: int, users: int) -> list[Signal]:
    return [sig("usage_daily", d, logins=logins, active_users=users) for d in days]


def test_usage_decline_is_derived_from_daily_logins() -> None:
    history = usage(range(89, 29, -1), 100, 30) + usage(range(29, -1, -1), 40, 12)
    rec = derive(account(), history, END, load_health_model()).record()
    assert rec["usage.logins_30d"] == 1200
    assert rec["usage.logins_change_30d_pct"] == -60  # 1200 against 3000
    assert rec["usage.seat_utilization_pct"] == 24  # 12 of 50 seats
    assert rec["usage.days_since_last_login"] == 0


def test_too_little_history_gives_missing_not_made_up_facts() -> None:
    rec = derive(account(), usage(range(20, -1, -1), 10, 5), END, load_health_model()).record()
    assert "usage.logins_change_30d_pct" not in rec  # needs 60 days
    assert "health.trend_30d" not in rec
    assert rec["usage.logins_7d"] == 70


def test_health_weights_and_bands_come_from_the_model() -> None:
    history = usage(range(89, -1, -1), 100, 45) + [
        sig("meeting", 5, status="attended"),
        sig("nps_response", 10, score=9),
    ]
    default = load_health_model()
    rec = derive(account(), history, END, default).record()
    parts = {
        c: rec[f"health.{c}"]
        for c in ("product_usage", "engagement", "account_characteristics", "support")
    }
    # no outcome review yet: that component is missing and the other weights renormalise
    assert "health.business_outcomes" not in rec
    weights = {"product_usage": 35, "engagement": 25, "account_characteristics": 15, "support": 5}
    expected = sum(parts[c] * w for c, w in weights.items()) / sum(weights.values())
    assert rec["health.score"] == pytest.approx(expected, abs=0.02)
    usage_only = HealthModel.model_validate(
        default.model_dump()
        | {
            "weights": {
                "product_usage": 1,
                "engagement": 0,
                "business_outcomes": 0,
                "account_characteristics": 0,
                "support": 0,
            }
        }
    )
    rec2 = derive(account(), history, END, usage_only).record()
    assert rec2["health.score"] == rec["health.product_usage"]
    assert rec2["health.band"] == usage_only.band(rec2["health.score"])


def test_trends_windows_and_signal_counts() -> None:
    history = (
        usage(range(119, 24, -1), 120, 40)
        + usage(range(24, -1, -1), 5, 3)
        + [
            sig("support_escalation", 3),
            sig("stakeholder_change", 10, role="champion", change="left"),
            sig("support_escalation", 20),
        ]
    )
    extra = [
        WindowFact("health.score", "fell", 30),
        SignalsFact(("stakeholder_change", "support_escalation"), 14, "types"),
        SignalsFact(("support_escalation",), 30, "occurrences"),
    ]
    frame = derive(account(), history, END, load_health_model(), extra)
    rec = frame.record()
    assert rec["health.trend_30d"] < -15
    assert rec["window:health.score:fell:30d"] >= 15
    assert rec["signals:types:14d:stakeholder_change,support_escalation"] == 2
    assert rec["signals:occurrences:30d:support_escalation"] == 2
    assert rec["stakeholders.champion_changed"] is True
    assert rec["stakeholders.champion_changed_days_ago"] == 10
    assert rec["support.escalations_30d"] == 2


def test_backtest_frames_match_the_streaming_record_day_by_day() -> None:
    history = usage(range(119, -1, -1), 50, 20) + [sig("meeting", 40, status="missed")]
    model = load_health_model()
    frame = derive(account(), history, END, model, start=END - timedelta(days=30))
    assert len(frame.days) == 31
    for back in (0, 10, 30):
        day = END - timedelta(days=back)
        single = derive(account(), history, day, model).record()
        assert frame.record(frame.days.index(day)) == single


def test_shipped_health_model_is_the_packaged_default() -> None:
    shipped = load_health_model(ROOT / "health_model.yaml")
    assert shipped == load_health_model()
    assert shipped.weights.product_usage == 35 and shipped.weights.support == 5


def test_bad_health_model_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "health_model.yaml"
    path.write_text(
        "weights:\n  product_usage: lots\ncomponents:\n  usage:\n"
        "    - {metric: usage.logins_30, bad: 0, good: 1}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as info:
        load_health_model(path)
    text = str(info.value)
    assert f"{path}:2:" in text and "weights.product_usage" in text
    assert "unknown component 'usage'" in text or "usage.logins_30d" in text
