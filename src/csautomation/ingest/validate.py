"""One signal's validation, shared by the API, the batch import and re-processing: a
`Signal`, or every field error with its dotted path (`payload.logins`); and the reading of
JSON text at the door, bounded so that no text can exhaust the stack or the CPU.

What is accepted (README, "What is accepted"): facts/canonical.py's rules for numbers,
dates and timestamps, the time window (`check` applies the process's), and here: JSON
nested at most `MAX_DEPTH` levels, numbers at most `MAX_NUMBER_LENGTH` characters long.
Text beyond those bounds is unreadable as a whole, like text that is not JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from csautomation.facts.canonical import TimeWindow, door_context
from csautomation.facts.model import Signal


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. payload.logins; empty for the whole item
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE = "holds a character no database column can store (NUL or an unpaired surrogate)"


def unstorable(data: Any, path: str = "") -> list[FieldError]:
    """Strings JSON can carry but a text column cannot (PostgreSQL refuses NUL; UTF-8 has
    no unpaired surrogates): a field error each, instead of a failed transaction."""
    if isinstance(data, str):
        return [FieldError(path, UNSTORABLE)] if _UNSTORABLE.search(data) else []
    if isinstance(data, dict):
        out = []
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            out += unstorable(key, where) or unstorable(value, where)
        return out
    if isinstance(data, list):
        return [e for i, v in enumerate(data) for e in unstorable(v, f"{path}.{i}")]
    return []


# What a JSON text must hold for a string in it to hold NUL or an unpaired surrogate: the
# escapes, or the raw bytes (json.loads decodes bytes with "surrogatepass")
_MAYBE_UNSTORABLE = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|\x00|\xed[\xa0-\xbf]")


def clean_json(raw: bytes) -> bool:
    """True when no string decoded from this JSON text can hold what `unstorable` looks
    for, so the (costlier) walk over the decoded data can be skipped."""
    return _MAYBE_UNSTORABLE.search(raw) is None


MAX_DEPTH = 32  # a batch of signals is 4 deep
MAX_NUMBER_LENGTH = 1000  # characters; Python refuses integers over 4,300 digits


def _number(parse: Any) -> Any:
    def read(text: str) -> Any:
        if len(text) > MAX_NUMBER_LENGTH:
            raise ValueError(
                f"a number {len(text):,} characters long; at most {MAX_NUMBER_LENGTH:,} are read"
            )
        return parse(text)

    return read


_INT, _FLOAT = _number(int), _number(float)


def read_json(text: bytes | str) -> tuple[Any, str]:
    """(the JSON value, "") or (None, why the text cannot be read): not JSON, not UTF-8,
    nested deeper than `MAX_DEPTH` or holding a number longer than `MAX_NUMBER_LENGTH`."""
    try:
        data = json.loads(text, parse_int=_INT, parse_float=_FLOAT)
    except json.JSONDecodeError as exc:
        where = (
            f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno}, column {exc.colno}"
        )
        return None, f"not JSON: {exc.msg} ({where})"
    except UnicodeDecodeError:
        return None, "not JSON: not UTF-8"
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    except ValueError as exc:  # a number too long (_number, or Python's own digit limit)
        return None, str(exc)
    opening = (
        text.count(b"{") + text.count(b"[")
        if isinstance(text, bytes)
        else (text.count("{") + text.count("["))
    )
    if opening > MAX_DEPTH and not _within_depth(data):  # few brackets: cannot be that deep
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return data, ""


def _within_depth(data: Any) -> bool:
    stack = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        values = node.values() if isinstance(node, dict) else node
        stack.extend((v, depth + 1) for v in values if isinstance(v, dict | list))
    return True


def check(
    data: Any, clean: bool = False, window: TimeWindow | None = None, now: datetime | None = None
) -> Signal | list[FieldError]:
    """The signal, or every field error. `clean`: the JSON text it came from passed
    `clean_json`. `window`: when it may have happened (default: the process's, which
    bootstrap sets from the settings), relative to `now` (default: the clock)."""
    if not isinstance(data, dict):
        return [FieldError("", "expected a JSON object (a signal)")]
    if not clean and (problems := unstorable(data)):
        return problems
    try:
        return Signal.model_validate(data, context=door_context(window, now))
    except ValidationError as exc:
        return [
            FieldError(".".join(str(p) for p in e["loc"]), e["msg"])
            for e in exc.errors(include_url=False)
        ]
