"""The door's invariant: whatever `ingest.validate.check` accepts (the check of the API,
`csauto ingest` and re-processing) can be derived and evaluated, so that no accepted signal
can stop the pipeline.

Hypothesis builds signal-like dicts over the payload schemas (right fields, values of every
kind: numbers as text, booleans, huge integers, NaN and Infinity, dates as anything) and
over arbitrary JSON, with timestamps in odd time zones and far from now. Every accepted
signal is then derived (`derive` and `derive_records`) into an account's facts, as it comes
from the check and as it comes back from the store (JSON payload, UTC timestamp), and the
shipped rules (rules/) are evaluated on them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Le
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from csautomation.facts.canonical import MAX_NUMBER, TimeWindow
from csautomation.facts.derive import derive
from csautomation.facts.derive_many import derive_records
from csautomation.facts.health import load_health_model
from csautomation.facts.model import PAYLOADS, Signal, SignalType
from csautomation.ingest.validate import check
from csautomation.rules.runtime import RuleRuntime
from factories import account

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
WINDOW = TimeWindow()
MODEL = load_health_model()


@pytest.fixture(scope="module")
def runtime() -> Iterator[RuleRuntime]:
    rt = RuleRuntime([ROOT / "rules"], MODEL, reload_interval=3600)
    yield rt
    rt.close()


# -- values of every kind ---------------------------------------------------------------------
def _json_values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )


EDGE_NUMBERS = [0, -1, 2**53, 2**53 + 1, -(2**53), 10**20, 10**400, 1e308, 1e-320, -0.0]
numbers = st.one_of(
    st.integers(-5, 500),
    st.integers(),
    st.sampled_from(EDGE_NUMBERS),
    st.floats(),  # NaN and +-Infinity included
    st.floats(-1e6, 1e6, allow_nan=False),
)
number_text = st.one_of(
    numbers.map(str),
    st.sampled_from(["5", "05", "+7", "-0", "0.5", "1e3", " 5", "5 ", "1_000", "NaN", "", "٣"]),
    st.from_regex(r"[+-]?\d{1,60}(\.\d{1,5})?", fullmatch=True),
)
date_text = st.one_of(
    st.dates().map(date.isoformat),
    st.sampled_from(["2027-02-30", "2027-1-1", "20270101", "2027-01-01T00:00:00", "0000-01-01"]),
)
leaf = st.one_of(st.none(), st.booleans(), numbers, number_text, date_text, st.text(max_size=12))
json_value = _json_values(leaf)
offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-1439, 1439))
recent = st.datetimes(datetime(2000, 1, 2), datetime(2026, 11, 21), timezones=offsets)
when = recent | st.datetimes(timezones=offsets)  # year 1 to 9999
occurred_at = st.one_of(
    when.map(datetime.isoformat),
    when.map(lambda d: d.isoformat().replace("+00:00", "Z")),
    when.map(lambda d: d.replace(tzinfo=None).isoformat()),  # no time zone
    st.sampled_from(["2026-02-30T00:00:00Z", "yesterday", "1700000000", "2026-11-01"]),
    leaf,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` seven times in eight, else `bad`: most drawn signals are accepted."""
    return st.integers(0, 7).flatmap(lambda n: bad if n == 0 else good)


def _number_field(field: FieldInfo) -> st.SearchStrategy[Any]:
    """Numbers the field accepts, as numbers or as decimal text, ints for decimal fields."""
    lo = next((m.ge for m in field.metadata if isinstance(m, Ge)), -MAX_NUMBER)
    hi = next((m.le for m in field.metadata if isinstance(m, Le)), MAX_NUMBER)
    ints = st.integers(int(lo), int(hi)) | st.sampled_from([int(lo), int(hi)])
    if "float" in str(field.annotation):
        values = ints | st.floats(lo, hi, allow_nan=False) | st.sampled_from([lo, hi, 1e-320])
    else:
        values = ints | ints.map(float)  # 5.0 for a count
    as_text = values.filter(lambda v: "e" not in str(v)).map(str)
    return values | as_text


def _field_value(field: FieldInfo) -> st.SearchStrategy[Any]:
    text = str(field.annotation)
    if "int" in text or "float" in text:
        return mostly(_number_field(field), numbers | number_text | leaf)
    if "date" in text:
        return mostly(st.dates().map(date.isoformat), date_text | leaf)
    pattern = next((getattr(m, "pattern", None) for m in field.metadata), None)
    good = st.from_regex(pattern, fullmatch=True) if pattern else st.text(max_size=12)
    return mostly(good, leaf)


def _payload(kind: SignalType) -> st.SearchStrategy[dict[str, Any]]:
    fields = PAYLOADS[kind].model_fields
    required = {n: _field_value(f) for n, f in fields.items() if f.is_required()}
    optional = {n: _field_value(f) for n, f in fields.items() if not f.is_required()}
    good = st.fixed_dictionaries(required, optional=optional)
    return mostly(good, st.fixed_dictionaries({}, optional={**optional, "extra": json_value}))


def _schema_signal(kind: SignalType) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": st.just(kind.value),
            "account_id": st.sampled_from(["ACME", "acme", "x" * 128, "ünï code"]),
            "occurred_at": mostly(recent.map(datetime.isoformat), occurred_at),
            "payload": _payload(kind),
        },
        optional={"idempotency_key": st.text(max_size=40)},
    )


schema_signals = st.sampled_from(list(SignalType)).flatmap(_schema_signal)
raw_signals = (
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from([k.value for k in SignalType]) | leaf,
            "account_id": st.text(max_size=10) | leaf,
            "occurred_at": occurred_at,
            "payload": st.dictionaries(st.text(max_size=8), json_value, max_size=4) | json_value,
            "idempotency_key": leaf,
        },
    )
    | json_value
)


def _as_stored(s: Signal) -> Signal:
    """The signal as the store gives it back: the payload through a JSON column, the time in
    UTC (store/repo.py and store/facts.py rebuild rows with model_construct)."""
    return Signal.model_construct(
        type=s.type,
        account_id=s.account_id,
        occurred_at=s.occurred_at.astimezone(UTC),
        payload=json.loads(json.dumps(s.payload, allow_nan=False)),
        idempotency_key=s.idempotency_key,
    )


def _plain(value: Any) -> bool:
    """JSON-native and finite: what a number field may hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) <= MAX_NUMBER


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(mostly(schema_signals, raw_signals), min_size=1, max_size=8))
def test_whatever_the_door_accepts_is_derived_and_evaluated(
    runtime: RuleRuntime, items: list[Any]
) -> None:
    checked = [check(item, window=WINDOW, now=NOW) for item in items]
    accepted = [s for s in checked if isinstance(s, Signal)]
    event(f"accepted: {min(len(accepted), 2)}+")
    for s in accepted:
        event(f"type accepted: {s.type.value}")
    for s in accepted:
        # stored as validated: in the window, every number a plain finite number in range
        assert datetime(2000, 1, 1, tzinfo=UTC) <= s.occurred_at <= NOW + timedelta(days=1)
        typed = PAYLOADS[s.type].model_fields
        for name, value in s.payload.items():
            if "int" in str(typed[name].annotation) or "float" in str(typed[name].annotation):
                assert value is None or _plain(value), (name, value)
        assert Signal.model_validate(s.model_dump()) == s  # canonical: a fixed point
    if not accepted:
        return
    acme = account()
    for history in (accepted, [_as_stored(s) for s in accepted]):
        as_of = max(s.day for s in history)
        at = max(s.occurred_at for s in history)
        record = derive(acme, history, as_of, MODEL, runtime.derived).record()
        [many] = derive_records([(acme, history, as_of)], MODEL, runtime.derived)
        for facts in (record, many):
            runtime.evaluate_record(acme.id, facts, at, None, apply_cooldown=False)
