"""The one duration grammar of every configuration file: a number and a unit.

    500ms  10s  1.5m  12h  14d  2w

Rules, playbooks, ingest sources, connectors, the escalation matrix and schedules all read
durations this way. Each kind of file keeps the wording its readers know in its error messages (the
examples it quotes, the hints it gives for a bare number or a spelled-out unit): `Duration`,
`ShortDuration` and `Interval` are that one grammar with three wordings.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_GRAMMAR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPELLED = re.compile(r"^\s*(\d+)\s*(min|minutes?|hours?|hrs?|days?|weeks?|wks?)\s*$", re.I)
_PATTERN = r"^\d+(\.\d+)?\s*(ms|s|m|h|d|w)$"

RULE_EXAMPLES = "30m, 12h, 14d or 2w"


def parse_duration(
    value: Any, examples: str = RULE_EXAMPLES, unit: str = "d", explain: bool = True
) -> timedelta:
    """`value` as a timedelta, or ValueError worded with `examples`.

    `unit`: a bare number gets "add a unit, e.g. 5{unit}" ("" for no such hint).
    `explain`: a zero duration and a spelled-out unit ("3 days") get their own words.
    """
    if isinstance(value, timedelta):
        return value
    m = _GRAMMAR.match(value) if isinstance(value, str) else None
    if m and float(m.group(1)) > 0:
        return timedelta(seconds=float(m.group(1)) * _SECONDS[m.group(2)])
    if m and explain:
        raise ValueError(f"a duration must be longer than zero, found {value!r}")
    hint = ""
    if unit and isinstance(value, int) and not isinstance(value, bool):
        hint = f"; add a unit, e.g. {value}{unit}"
    elif explain and isinstance(value, str) and (spelled := _SPELLED.match(value)):
        hint = f"; write {spelled.group(1)}{spelled.group(2)[0].lower()}"
    raise ValueError(f"expected a duration such as {examples}, found {value!r}{hint}")


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: 2w, 14d, 12h, 30m, 10s, else milliseconds."""
    micro = value // timedelta(microseconds=1)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if micro % (size * 1_000_000) == 0:
            return f"{micro // (size * 1_000_000)}{unit}"
    return f"{micro / 1000:g}ms"


def _words(examples: str, unit: str = "d", explain: bool = True) -> BeforeValidator:
    def parse(value: Any) -> timedelta:
        return parse_duration(value, examples, unit, explain)

    return BeforeValidator(parse)


def _schema(examples: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": _PATTERN, "description": f"a duration: {examples}"}
    )


_AS_TEXT = PlainSerializer(format_duration, return_type=str)

# rules, playbooks and ingest sources: days and weeks are the usual scale
Duration = Annotated[timedelta, _words(RULE_EXAMPLES), _AS_TEXT, _schema(RULE_EXAMPLES)]

# connectors' timeouts and backoffs, and the escalation matrix's acknowledge-within
ShortDuration = Annotated[
    timedelta,
    _words("500ms, 10s, 5m or 1h", unit="", explain=False),
    _AS_TEXT,
    _schema("500ms, 10s, 5m or 1h"),
]

# how often a scheduled job runs, and how late it may still run
Interval = Annotated[
    timedelta,
    _words("30s, 15m, 1h or 1d", unit="m", explain=False),
    _AS_TEXT,
    _schema("30s, 15m, 1h or 1d"),
]
