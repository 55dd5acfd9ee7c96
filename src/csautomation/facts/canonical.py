"""What a signal may hold, and the one form it is stored in (README, "What is accepted").

A signal is stored exactly as it was validated, so that fact derivation never meets a value
of the wrong type. The rules, applied to every signal however it arrives (API, file, pull):

- numbers: a JSON number, or text that is a plain decimal (optional sign, digits, optionally
  a point and more digits; at most 40 characters: "5", "-2", "0.75"), stored as the number
  ("5" becomes 5). Anything else where a number is expected is refused: booleans, NaN and
  Infinity, exponents in text ("1e3"), and numbers beyond ±2**53 (9007199254740992, where
  integers stop being exact as floats). A number keeps the form it came in: 80 for a
  decimal field stays 80 (not 80.0), so a signal already in this form is stored unchanged
  and keeps its idempotency key.
- dates: text YYYY-MM-DD, stored as given.
- timestamps (`occurred_at`): ISO 8601 text with a time zone; not a number of seconds.
  At the door (the API, `csauto ingest`) they must also fall in a window, by default from
  2000-01-01 to one day ahead of now (CSAUTO_SIGNAL_EARLIEST, CSAUTO_SIGNAL_MAX_AHEAD). The
  window is passed in as validation context (`door_context`): signals read back from the
  store are not refused for a window changed since they were taken in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from csautomation.config.duration import format_duration

__all__ = [
    "MAX_NUMBER",
    "MAX_NUMBER_TEXT",
    "Payload",
    "TimeWindow",
    "canonical_payload",
    "door_context",
    "set_window",
    "timestamp",
    "to_number",
    "window",
]

MAX_NUMBER = 2**53
MAX_NUMBER_TEXT = 40
_DECIMAL = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)  # ASCII: "٣" is a digit to \d
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", re.ASCII)


def _refuse(kind: str, message: str) -> PydanticCustomError:
    # braces would be read as the message's template fields
    return PydanticCustomError(kind, message.replace("{", "(").replace("}", ")"))


def _show(text: str) -> str:
    return repr(text if len(text) <= 30 else text[:27] + "...")


def to_number(value: Any) -> Any:
    """`value` where a number is expected: the number (an int or a float), or refused.
    Values of other kinds (None, lists, ...) are left for the field's own type to refuse."""
    if isinstance(value, bool):
        raise _refuse("number_bool", "expected a number, got a boolean (true/false)")
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT or not _DECIMAL.fullmatch(value):
            raise _refuse(
                "number_text",
                f"expected a number; text is read as a number only when it is a plain decimal "
                f'such as "5" or "0.75", got {_show(value)}',
            )
        value = float(value) if "." in value else int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse("number_finite", "NaN and Infinity are not accepted; expected a number")
    if isinstance(value, int | float) and abs(value) > MAX_NUMBER:
        raise _refuse(
            "number_range",
            f"out of range: numbers are accepted between -2**53 and 2**53 (±{MAX_NUMBER})",
        )
    return value


def _to_date(value: Any) -> Any:
    if isinstance(value, datetime) or not (
        isinstance(value, date) or (isinstance(value, str) and _DATE.fullmatch(value))
    ):
        raise _refuse("date_text", f"expected a date as YYYY-MM-DD, got {_describe(value)}")
    return value


def timestamp(value: Any) -> Any:
    """`value` where a timestamp is expected: a datetime, or ISO 8601 text (the field's type
    checks the rest: a valid date and time, with a time zone). Numbers are refused: seconds
    or milliseconds since 1970 cannot be told apart."""
    if isinstance(value, datetime) or (isinstance(value, str) and _TIMESTAMP.match(value)):
        return value
    raise _refuse(
        "timestamp_text",
        "expected an ISO 8601 timestamp with a time zone such as 2026-03-01T09:30:00Z, "
        f"got {_describe(value)}",
    )


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return _show(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "a JSON object" if isinstance(value, dict) else type(value).__name__


def _kind(annotation: Any) -> str:
    """ "number", "date" or "" for a payload field's annotation (optional ones included)."""
    if get_origin(annotation) in (Union, UnionType):
        kinds = {_kind(a) for a in get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else ""
    if annotation in (int, float):
        return "number"
    if annotation is date:
        return "date"
    return ""


class Payload(BaseModel):
    """A signal type's payload: its number and date fields follow the rules above."""

    model_config = ConfigDict(extra="forbid")
    _kinds: ClassVar[dict[str, str]] = {}  # field name: "number" or "date"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kinds = {name: _kind(f.annotation) for name, f in cls.model_fields.items()}
        cls._kinds = {name: kind for name, kind in kinds.items() if kind}

    @field_validator("*", mode="before")
    @classmethod
    def _at_the_door(cls, value: Any, info: ValidationInfo) -> Any:
        kind = cls._kinds.get(info.field_name or "")
        if kind is None or value is None:
            return value
        return to_number(value) if kind == "number" else _to_date(value)


def canonical_payload(model: type[BaseModel], raw: dict[str, Any]) -> dict[str, Any]:
    """The payload as it is stored: each given field (defaults are not added) in its
    canonical JSON form. Raises pydantic's ValidationError, its paths starting with
    "payload"."""
    try:
        typed = model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationError.from_exception_data(
            exc.title,
            [
                {
                    "type": _refuse(e["type"], e["msg"]),
                    "loc": ("payload", *e["loc"]),
                    "input": e["input"],
                }
                for e in exc.errors(include_url=False)
            ],
        ) from None
    out: dict[str, Any] = {}
    for name, given in raw.items():
        value = getattr(typed, name)
        if isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, float) and isinstance(given, int | str):
            number = to_number(given)
            if isinstance(number, int):  # 80 for a decimal field stays 80
                value = number
        out[name] = value
    return out


@dataclass(frozen=True)
class TimeWindow:
    """When a signal may have happened, as the door sees it."""

    earliest: date = date(2000, 1, 1)
    ahead: timedelta = timedelta(days=1)

    def check(self, at: datetime, now: datetime) -> None:
        """Refuse `at` when it is outside the window."""
        if at < datetime.combine(self.earliest, time(), tzinfo=UTC):
            raise _refuse(
                "timestamp_window",
                f"before {self.earliest.isoformat()}, the earliest time accepted "
                "(CSAUTO_SIGNAL_EARLIEST)",
            )
        if at > now + self.ahead:
            raise _refuse(
                "timestamp_window",
                f"more than {format_duration(self.ahead)} ahead of now "
                f"({now:%Y-%m-%dT%H:%M:%SZ}; CSAUTO_SIGNAL_MAX_AHEAD)",
            )


_window = TimeWindow()


def set_window(value: TimeWindow) -> None:
    """The process's window (bootstrap sets it from CSAUTO_SIGNAL_EARLIEST and
    CSAUTO_SIGNAL_MAX_AHEAD)."""
    global _window
    _window = value


def window() -> TimeWindow:
    return _window


def door_context(bounds: TimeWindow | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Validation context that makes `Signal` apply a time window: `bounds`, else the
    process's, around `now`, else the clock."""
    return {"window": bounds or _window, "now": now or datetime.now(UTC)}
