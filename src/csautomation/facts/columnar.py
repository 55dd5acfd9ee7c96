"""Signal histories as compact columns, and derive_many's grid built straight from them.

A process that derives the facts of every account every day (the scheduler's sweeps) keeps
each account's history as one small 2-D numpy array: per signal its UTC day (and moment in
the day, for order), its type and the (at most three) numbers derive reads from its
payload. Derivation then needs no Signal objects and no per-signal Python:
`gather_columns` gives derive_many the same `Updates` that `grid.gather` gives from
signals, so the records are equal, not close.

A row whose payload derive could not read plainly (a missing field, a string where a number
belongs, a type no longer known, an unreadable date) makes `slots` return None: its
account is then derived from Signal objects by the reference path, which raises what derive
raises. The columns hold only what derive reads the same way on every path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from csautomation.facts.derive import MAX_LOOKBACK
from csautomation.facts.grid import Updates
from csautomation.facts.model import SignalType
from csautomation.facts.numeric import NAN, F, I

# One signal is a row of floats (plain 2-D arrays concatenate fast; records do not): its
# UTC day's ordinal and microsecond in that day (for order within a day), its type's code
# and the numbers derive reads. Every value is a whole number below 2**53 or a float as
# stored, so float64 holds each exactly.
DAY, MICRO, TYPE, A, B, C = range(6)
WIDTH = 6
Rows = npt.NDArray[np.float64]
TYPES: tuple[SignalType, ...] = tuple(SignalType)
CODE = {t.value: i for i, t in enumerate(TYPES)}
(USAGE, MEETING, NPS, TICKET, ESCALATION, OUTCOME, STAKEHOLDER, CHURN, CONTRACT, INTEREST) = (
    CODE[t.value]
    for t in (
        SignalType.usage_daily,
        SignalType.meeting,
        SignalType.nps_response,
        SignalType.support_ticket,
        SignalType.support_escalation,
        SignalType.outcome_review,
        SignalType.stakeholder_change,
        SignalType.churn_prediction,
        SignalType.contract_update,
        SignalType.expansion_interest,
    )
)
CHAMPION, SPONSOR = 1.0, 2.0  # a stakeholder change's `a`: who left (0: nobody derive counts)
_EXACT = 2**53  # whole numbers beyond this lose digits as floats: left to the reference path


def _number(value: Any) -> float | None:
    """`value` as derive's arrays hold it, when it is a plain finite number (a bool counts
    as 0 or 1 there too); None otherwise."""
    if type(value) is float:  # large ones may have been whole numbers in the JSON
        return value if math.isfinite(value) and -_EXACT < value < _EXACT else None
    if type(value) in (int, bool):
        return float(value) if -_EXACT < value < _EXACT else None
    return None


def slots(kind: str, payload: Any) -> tuple[int, float, float, float] | None:
    """(type code, a, b, c) of one stored signal, or None when derive would not read its
    payload plainly (see the module's docstring). What each type keeps:

    usage_daily: logins, active_users, feature_events; meeting: 1 attended, 0 not;
    nps_response: score; support_ticket: 1 urgent or high, 0 not; outcome_review:
    goals_met_pct; stakeholder_change: CHAMPION or SPONSOR left, 0 otherwise;
    churn_prediction: probability; contract_update: the renewal date's ordinal, arr, seats
    (NaN where derive keeps the last value); escalations and expansion interest: nothing."""
    code = CODE.get(kind)
    if code is None:
        return None
    if code in (ESCALATION, INTEREST):  # derive reads nothing of their payloads
        return code, 0.0, 0.0, 0.0
    if not isinstance(payload, dict):
        return None
    p = payload
    if code == USAGE:
        if "logins" not in p or "active_users" not in p:
            return None
        a, b, c = (
            _number(p["logins"]),
            _number(p["active_users"]),
            _number(p.get("feature_events", 0)),
        )
        return None if a is None or b is None or c is None else (code, a, b, c)
    if code == MEETING:
        return None if "status" not in p else (code, float(p["status"] == "attended"), 0.0, 0.0)
    if code == TICKET:
        if "priority" not in p:
            return None
        return code, float(p["priority"] in ("urgent", "high")), 0.0, 0.0
    if code == STAKEHOLDER:
        if "change" not in p:
            return None
        if p["change"] != "left":
            return code, 0.0, 0.0, 0.0
        if "role" not in p:
            return None
        role = p["role"]
        return (
            code,
            CHAMPION if role == "champion" else SPONSOR if role == "exec_sponsor" else 0.0,
            0.0,
            0.0,
        )
    if code == CONTRACT:
        return _contract(p)
    field = {NPS: "score", OUTCOME: "goals_met_pct", CHURN: "probability"}[code]
    value = _number(p[field]) if field in p else None
    return None if value is None else (code, value, 0.0, 0.0)


def _contract(p: dict[str, Any]) -> tuple[int, float, float, float] | None:
    renewal, arr, seats = NAN, NAN, NAN
    if p.get("renewal_date"):
        try:
            renewal = float(date.fromisoformat(str(p["renewal_date"])).toordinal())
        except ValueError:
            return None
    if p.get("arr") is not None:
        value = _number(p["arr"])
        if value is None:
            return None
        arr = value
    if p.get("seats") is not None:
        value = _number(p["seats"])
        if value is None:
            return None
        seats = value
    return CONTRACT, renewal, arr, seats


def gather_columns(histories: Sequence[Rows], as_of: date, count_types: set[str]) -> Updates:
    """grid.gather, from column histories (each in signal order: by moment, then row id)."""
    last = as_of.toordinal()
    first = last - MAX_LOOKBACK + 1
    rows = np.concatenate(histories) if histories else np.zeros((0, WIDTH))
    owner = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    day = rows[:, DAY]
    keep = (day >= first) & (day <= last)
    if not keep.all():  # most batches: every row within the look-back
        rows, owner, day = rows[keep], owner[keep], day[keep]
    day = day.astype(np.intp)
    earliest = np.full(len(histories), last + 1, dtype=np.intp)
    np.minimum.at(earliest, owner, day)
    # no signal: derive still makes MAX_LOOKBACK days (all of them missing or zero)
    days = np.where(earliest <= last, last - earliest + 1, MAX_LOOKBACK).tolist()
    k = owner * MAX_LOOKBACK + (day - first)
    kind, a, b, c = rows[:, TYPE], rows[:, A], rows[:, B], rows[:, C]

    def where(mask: npt.NDArray[np.bool_]) -> I:
        return np.asarray(k[mask], dtype=np.intp)

    usage = kind == USAGE
    meeting, ticket, stake = kind == MEETING, kind == TICKET, kind == STAKEHOLDER
    added: dict[str, tuple[I, F | None]] = {
        "logins": (where(usage), a[usage]),
        "features": (where(usage), c[usage]),
        "attended": (where(meeting & (a == 1.0)), None),
        "missed": (where(meeting & (a == 0.0)), None),
        "tickets": (where(ticket), None),
        "urgent": (where(ticket & (a == 1.0)), None),
        "escalations": (where(kind == ESCALATION), None),
        "interest": (where(kind == INTEREST), None),
    }
    for name in count_types:
        code = CODE.get(name)
        added[f"count:{name}"] = (where(kind == (-1 if code is None else code)), None)
    contract = kind == CONTRACT
    assigned = {
        "users": _last(k[usage], b[usage]),
        "nps": _last(k[kind == NPS], a[kind == NPS]),
        "goals": _last(k[kind == OUTCOME], a[kind == OUTCOME]),
        "churn": _last(k[kind == CHURN], a[kind == CHURN]),
        "renewal": _last(*_present(k[contract], a[contract] - last)),
        "arr": _last(*_present(k[contract], b[contract])),
        "seats": _last(*_present(k[contract], c[contract])),
    }
    flagged = {
        "seen_usage": where(usage),
        "champion_left": where(stake & (a == CHAMPION)),
        "sponsor_left": where(stake & (a == SPONSOR)),
    }
    return Updates(days, added, assigned, flagged)


def _present(at: I, values: F) -> tuple[I, F]:
    kept = ~np.isnan(values)
    return at[kept], values[kept]


def _last(at: I, values: F) -> tuple[I, F]:
    """Each place once, with the last value given for it (derive's `=` in signal order)."""
    if len(at) == 0:
        return np.asarray(at, dtype=np.intp), values
    if (at[1:] >= at[:-1]).all():  # in place order already (histories are in signal order)
        end = np.append(at[1:] != at[:-1], True)  # the last of each place's run
        return np.asarray(at[end], dtype=np.intp), values[end]
    reverse = at[::-1]
    places, first_from_end = np.unique(reverse, return_index=True)
    return np.asarray(places, dtype=np.intp), values[::-1][first_from_end]
