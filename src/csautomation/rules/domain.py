"""Comparisons checked against what a fact can be: one that can never hold (`engagement.nps
< 0`, `health.band == crimson`) or that holds for every account (`usage.logins_7d >= 0`)
is a mistake in the rule, refused when it loads, with the fix where there is one.

A comparison with a fact that has no value never holds, whatever the operator; "always
holds" means for every account where the fact is known (then `exists` says it plainly).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from csautomation.facts.catalog import FactDef, FactType

__all__ = ["domain_problem", "percent_fix", "window_problem"]

_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}


def _text(fd: FactDef, op: str, value: Any) -> str:
    if op == "between":
        return f"{fd.path} between {value[0]:g} and {value[1]:g}"
    if op in ("in", "not_in"):
        shown = ", ".join(_show(v) for v in value)
        return f"{fd.path} {op.replace('_', ' ')} [{shown}]"
    return f"{fd.path} {_SYMBOL.get(op, op)} {_show(value)}"


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def domain_problem(fd: FactDef, op: str, value: Any) -> str | None:
    """Why `fd op value` can never hold or always holds, or None when it can go either way."""
    if fd.type == FactType.string and fd.values:
        return _text_problem(fd, op, value)
    if fd.type != FactType.number or (fd.low is None and fd.high is None):
        return None
    verdict = _number_verdict(fd.low, fd.high, op, value)
    if verdict is None:
        return None
    condition = _text(fd, op, value)
    where = f"'{fd.path}' is {fd.domain}"
    if verdict == "never":
        return f"'{condition}' can never hold: {where}{_scale_hint(fd, op, value)}"
    return (
        f"'{condition}' holds for every account where the fact is known: {where}; "
        f"to ask whether it is known, write '{fd.path} exists'"
    )


def _outside(low: float | None, high: float | None, v: float) -> bool:
    return (low is not None and v < low) or (high is not None and v > high)


def _number_verdict(low: float | None, high: float | None, op: str, value: Any) -> str | None:
    lo, hi = low, high
    if op in ("eq", "in", "ne", "not_in"):
        values = value if op in ("in", "not_in") else [value]
        if all(_outside(lo, hi, v) for v in values):
            return "never" if op in ("eq", "in") else "always"
        return None
    if op == "between":
        a, b = value
        if (lo is not None and b < lo) or (hi is not None and a > hi):
            return "never"
        if lo is not None and hi is not None and a <= lo and b >= hi:
            return "always"
        return None
    never = {
        "lt": lo is not None and value <= lo,
        "lte": lo is not None and value < lo,
        "gt": hi is not None and value >= hi,
        "gte": hi is not None and value > hi,
    }
    always = {
        "lt": hi is not None and value > hi,
        "lte": hi is not None and value >= hi,
        "gt": lo is not None and value < lo,
        "gte": lo is not None and value <= lo,
    }
    if never.get(op):
        return "never"
    return "always" if always.get(op) else None


def _scale_hint(fd: FactDef, op: str, value: Any) -> str:
    """A probability written as a percentage: `churn.probability > 70` meant 0.7."""
    if fd.unit != "probability" or op in ("between", "in", "not_in"):
        return ""
    if isinstance(value, int | float) and 1 < abs(value) <= 100:
        return f"; for {value:g}% write {value / 100:g}"
    return ""


def _text_problem(fd: FactDef, op: str, value: Any) -> str | None:
    if op not in ("eq", "ne", "in", "not_in"):
        return None
    values: Sequence[Any] = value if op in ("in", "not_in") else [value]
    unknown = [v for v in values if v not in fd.values]
    if not unknown:
        return None
    near = difflib.get_close_matches(str(unknown[0]), fd.values, n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    where = f"'{fd.path}' is {fd.domain}, never '{unknown[0]}'{hint}"
    if op in ("eq", "in") and len(unknown) == len(values):
        return f"'{_text(fd, op, value)}' can never hold: {where}"
    if op in ("ne", "not_in") and len(unknown) == len(values):
        return f"'{_text(fd, op, value)}' holds for every account: {where}"
    return f"'{_text(fd, op, value)}' names a value the fact never takes: {where}"


def percent_fix(fd: FactDef | None, number: str) -> str:
    """What to write instead of `90%`."""
    value = float(number)
    if fd is not None and fd.unit == "probability":
        return f"write {value / 100:g}: '{fd.path}' is a probability from 0 to 1"
    if fd is not None and fd.unit == "%":
        return f"write {number}: '{fd.path}' is already in percent"
    return f"write {number} without '%'"


def window_problem(fd: FactDef, change: float, direction: str) -> str | None:
    """A window asking a fact to fall (or rise) by more than its whole range."""
    if fd.low is None or fd.high is None or change <= fd.high - fd.low:
        return None
    return (
        f"'{fd.path}' is {fd.domain}, so it can never {direction} by {change:g} "
        f"(at most {fd.high - fd.low:g})"
    )
