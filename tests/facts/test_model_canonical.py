"""A signal is stored as it was validated (facts/canonical.py): numbers given as text by one
rule, booleans, NaN, Infinity and numbers beyond 2**53 refused, dates and timestamps in one
form, the time window applied at the door; a payload already in that form is kept as it
came, and so is its idempotency key."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from csautomation.facts.canonical import MAX_NUMBER, TimeWindow, door_context
from csautomation.facts.model import Signal

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def signal(kind: str, payload: dict[str, Any], at: Any = "2026-11-01T09:00:00Z") -> Signal:
    return Signal.model_validate(
        {"type": kind, "account_id": "ACME", "occurred_at": at, "payload": payload}
    )


def refused(kind: str, payload: dict[str, Any], at: Any = "2026-11-01T09:00:00Z") -> list[Any]:
    with pytest.raises(ValidationError) as info:
        signal(kind, payload, at)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("5", 5),
        ("05", 5),
        ("+7", 7),
        ("-0", 0),
        (5, 5),
        (5.0, 5),  # an integral float for a count is the count
        (str(MAX_NUMBER), MAX_NUMBER),
    ],
)
def test_a_count_is_stored_as_an_integer(given: Any, stored: int) -> None:
    s = signal("usage_daily", {"logins": given, "active_users": 1})
    assert s.payload["logins"] == stored and type(s.payload["logins"]) is int


@pytest.mark.parametrize(
    ("given", "stored"),
    [(80, 80), ("80", 80), (80.5, 80.5), ("80.5", 80.5), (0.0, 0.0), ("0.25", 0.25)],
)
def test_a_decimal_keeps_the_form_it_came_in(given: Any, stored: float) -> None:
    s = signal("outcome_review", {"goals_met_pct": given})
    assert s.payload["goals_met_pct"] == stored
    assert type(s.payload["goals_met_pct"]) is type(stored)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (True, "boolean"),
        (False, "boolean"),
        (float("nan"), "NaN and Infinity"),
        (float("inf"), "NaN and Infinity"),
        (float("-inf"), "NaN and Infinity"),
        (MAX_NUMBER + 1, "out of range"),
        (10**400, "out of range"),
        ("9" * 41, "plain decimal"),  # longer than the 40 characters text is read to
        ("1e3", "plain decimal"),
        (" 5", "plain decimal"),
        ("5,000", "plain decimal"),
        ("NaN", "plain decimal"),
        ("", "plain decimal"),
        ("٣", "plain decimal"),  # a digit, but not an ASCII one
        ("5.5", "fractional part"),  # a decimal where a count is expected
        ([5], "valid integer"),
        ({"n": 5}, "valid integer"),
    ],
)
def test_what_is_not_a_number_is_refused_with_its_path(given: Any, reason: str) -> None:
    [(path, message)] = refused("usage_daily", {"logins": given, "active_users": 1})
    assert path == "payload.logins" and reason in message


def test_decimals_outside_the_range_and_not_finite_are_refused() -> None:
    for given in (1e300, "1" * 20 + ".5", float("nan"), "-1"):
        [(path, _)] = refused("contract_update", {"arr": given})
        assert path == "payload.arr"


def test_a_payload_in_canonical_form_is_kept_and_so_is_its_key() -> None:
    """The key formula of every signal stored before the door got strict: unchanged for a
    payload already canonical, so re-sent events are still recognised."""
    payloads = {
        "usage_daily": {"logins": 40, "active_users": 10, "feature_events": 3},
        "outcome_review": {"goals_met_pct": 80},
        "churn_prediction": {"probability": 0.35, "model": "v2"},
        "contract_update": {"renewal_date": "2027-06-30", "arr": 120000, "seats": None},
        "meeting": {"status": "attended"},
    }
    for kind, payload in payloads.items():
        s = signal(kind, payload)
        assert s.payload == payload and list(s.payload) == list(payload)
        assert [type(v) for v in s.payload.values()] == [type(v) for v in payload.values()]
        old_key = hashlib.sha256(
            f"{kind}|ACME|{s.occurred_at.isoformat()}|{sorted(payload.items())}".encode()
        ).hexdigest()[:32]
        assert s.idempotency_key == old_key
    # text for a number is the same event as the number
    assert (
        signal("usage_daily", {"logins": "40", "active_users": "10"}).idempotency_key
        == signal("usage_daily", {"logins": 40, "active_users": 10}).idempotency_key
    )


def test_defaults_are_not_added_to_the_stored_payload() -> None:
    assert signal("meeting", {"status": "missed"}).payload == {"status": "missed"}


def test_dates_are_yyyy_mm_dd() -> None:
    s = signal("contract_update", {"renewal_date": "2027-01-31"})
    assert s.payload == {"renewal_date": "2027-01-31"}
    for given in ("2027-02-30", "2027-1-31", "31/01/2027", "2027-01-31T00:00:00", 1700000000):
        [(path, _)] = refused("contract_update", {"renewal_date": given})
        assert path == "payload.renewal_date"


def test_timestamps_are_iso_text_with_a_time_zone() -> None:
    assert signal("meeting", {"status": "missed"}, "2026-11-01T09:00:00+05:30").day == date(
        2026, 11, 1
    )
    for given in (1700000000, "1700000000", "2026-11-01T09:00:00", "yesterday", None):
        [(path, message)] = refused("meeting", {"status": "missed"}, given)
        assert path == "occurred_at", message


def test_the_window_is_applied_at_the_door_only() -> None:
    def at_door(at: str, window: TimeWindow | None = None) -> Signal:
        data = {"type": "meeting", "account_id": "A", "occurred_at": at, "payload": {}}
        data["payload"] = {"status": "missed"}
        return Signal.model_validate(data, context=door_context(window or TimeWindow(), NOW))

    at_door("2000-01-01T00:00:00Z")
    at_door((NOW + timedelta(hours=23)).isoformat())
    for too in ("0001-01-01T00:00:00+05:00", "1999-12-31T23:59:59Z", "2026-11-21T12:00:01Z"):
        with pytest.raises(ValidationError) as info:
            at_door(too)
        [error] = info.value.errors()
        assert error["loc"] == ("occurred_at",) and "CSAUTO_SIGNAL_" in error["msg"]
    narrow = TimeWindow(date(2026, 1, 1), timedelta(hours=1))
    with pytest.raises(ValidationError, match="more than 1h ahead"):
        at_door("2026-11-20T13:30:00Z", narrow)
    with pytest.raises(ValidationError, match="before 2026-01-01"):
        at_door("2025-12-31T00:00:00Z", narrow)
    # read back from the store (no context): a signal is never refused for the window
    assert signal("meeting", {"status": "missed"}, "1999-01-01T00:00:00Z").day.year == 1999
