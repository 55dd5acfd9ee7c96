"""One signal's validation, shared by the API, the batch import and re-processing: a
`Signal`, or every field error with its dotted path (`payload.logins`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from csautomation.facts.model import Signal

TOP = frozenset(Signal.model_fields)


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


def check(data: Any, clean: bool = False) -> Signal | list[FieldError]:
    """The signal, or every field error. `clean`: the JSON text it came from passed
    `clean_json`."""
    if not isinstance(data, dict):
        return [FieldError("", "expected a JSON object (a signal)")]
    if not clean and (problems := unstorable(data)):
        return problems
    try:
        return Signal.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # the payload is checked against its type only once the envelope is valid, and its
        # errors come with paths inside the payload
        inside = all(e["loc"] and e["loc"][0] not in TOP for e in errors)
        return [
            FieldError(
                ".".join(str(p) for p in (("payload", *e["loc"]) if inside else e["loc"])),
                e["msg"],
            )
            for e in errors
        ]
