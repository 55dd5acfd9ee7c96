"""The facts a rule's window and signal-count conditions need derived from history, and the
canonical form of every fact value.

Rules lower such conditions to leaves over derived fact keys (`window:health.score:fell:30d`);
the fact builders compute those keys, so both sides meet on these definitions. Numbers are
compared after rounding to `DECIMALS` decimals; empty lists and nulls count as missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DECIMALS = 6


def norm(value: Any) -> Any:
    """The canonical form of a fact value or constant; None means missing."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        r = round(value, DECIMALS)
        return int(r) if r.is_integer() and abs(r) < 2**53 else r
    if isinstance(value, list | tuple):
        return [norm(v) for v in value] or None
    return value


@dataclass(frozen=True, slots=True)
class WindowFact:
    """max (fell) or min (rose) of a fact over the last `days` days (today and the days-1
    before: facts/days.py), against today."""

    fact: str
    direction: str  # "fell" or "rose"
    days: int

    @property
    def key(self) -> str:
        return f"window:{self.fact}:{self.direction}:{self.days}d"


@dataclass(frozen=True, slots=True)
class SignalsFact:
    """How many of `types` (distinct types, or occurrences) were seen in the last `days`
    (today and the days-1 before)."""

    types: tuple[str, ...]
    days: int
    counting: str  # "types" or "occurrences"

    @property
    def key(self) -> str:
        return f"signals:{self.counting}:{self.days}d:{','.join(self.types)}"


DerivedFact = WindowFact | SignalsFact
