"""The compact comparison form: `health.score < 40`, `account.tier in [enterprise, smb]`.

A strict tokenizer and a fixed grammar, never eval:

    comparison := PATH OP VALUE | PATH 'between' NUMBER 'and' NUMBER | PATH 'exists'
    OP         := '<' | '<=' | '>' | '>=' | '==' | '!=' | 'in' | 'not in' | 'contains'
    VALUE      := NUMBER | 'quoted' | "quoted" | WORD | true | false | '[' VALUE (',' VALUE)* ']'
"""

from __future__ import annotations

import re
from typing import Any

from csautomation.errors import RuleError
from csautomation.facts.catalog import FACTS
from csautomation.rules.domain import percent_fix

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op><=|>=|==|!=|<|>)
      | (?P<punct>[\[\],])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)

SYMBOLS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "==": "eq", "!=": "ne"}
_OPERATORS = "< <= > >= == != in, not in, between, contains, exists"


class CompactSyntaxError(RuleError, ValueError):
    """A one-line condition that does not parse (a ValueError, for pydantic validators)."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    pos, out = 0, list[tuple[str, str, int]]()
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if (not m or m.end() == pos) and len(out) == 1 and out[0][0] == "word":
            # right after the fact path: an operator we do not know, such as '~' or '=<'
            start = len(text) - len(text[pos:].lstrip())
            bad = re.match(r"[^\s\w'\"\[\]]+|\S+", text[start:])
            raise CompactSyntaxError(
                f"unknown operator '{bad.group() if bad else text[start:]}' at character "
                f"{start + 1} of '{text}'; use one of {_OPERATORS}"
            )
        if text[pos:].lstrip().startswith("%") and out and out[-1][0] == "number":
            fd = FACTS.get(out[0][1])
            raise CompactSyntaxError(f"'{out[-1][1]}%' in '{text}': {percent_fix(fd, out[-1][1])}")
        if not m or m.end() == pos:
            raise CompactSyntaxError(
                f"cannot read {text[pos:].strip()[:20]!r} at character {pos + 1} of '{text}'"
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


def _scalar(kind: str, value: str) -> Any:
    if kind == "number":
        return float(value) if "." in value else int(value)
    if kind == "string":
        return value[1:-1]
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        raise CompactSyntaxError("null is not a value to compare with; use 'exists'")
    return value


def parse_compact(text: str) -> dict[str, Any]:
    """Return the mapping form: {"fact": path, op: value}."""
    toks = _tokens(text)
    usage = "expected 'FACT OPERATOR VALUE', e.g. 'health.score < 40'"
    if not toks or toks[0][0] != "word":
        raise CompactSyntaxError(f"{usage}; found '{text}'")
    path = toks[0][1]
    rest = toks[1:]
    if not rest:
        raise CompactSyntaxError(f"{usage}; '{text}' has no operator")
    kind, tok, col = rest[0]
    if kind == "word" and tok == "exists" and len(rest) == 1:
        return {"fact": path, "exists": True}
    if kind == "word" and tok == "not" and len(rest) > 1 and rest[1][1] == "in":
        op, values = "not_in", rest[2:]
    elif kind == "op":
        op, values = SYMBOLS[tok], rest[1:]
    elif kind == "word" and tok in ("in", "between", "contains"):
        op, values = tok, rest[1:]
    else:
        raise CompactSyntaxError(
            f"unknown operator '{tok}' at character {col} of '{text}'; use one of {_OPERATORS}"
        )
    if not values:
        raise CompactSyntaxError(f"'{text}' has no value after '{op}'")
    if op == "between":
        if (
            len(values) != 3
            or values[1][1] != "and"
            or values[0][0] != "number"
            or values[2][0] != "number"
        ):
            raise CompactSyntaxError(f"expected 'FACT between LOW and HIGH'; found '{text}'")
        return {
            "fact": path,
            "between": [_scalar("number", values[0][1]), _scalar("number", values[2][1])],
        }
    if op in ("in", "not_in"):
        if values[0][1] != "[" or values[-1][1] != "]":
            raise CompactSyntaxError(f"expected a list in brackets after '{op}'; found '{text}'")
        items, expect_value = [], True
        for k, v, c in values[1:-1]:
            if expect_value and k in ("number", "string", "word"):
                items.append(_scalar(k, v))
            elif not expect_value and v == ",":
                pass
            else:
                raise CompactSyntaxError(f"unexpected '{v}' at character {c} of '{text}'")
            expect_value = not expect_value
        if not items or expect_value:
            raise CompactSyntaxError(f"the list after '{op}' is empty or ends with ','")
        return {"fact": path, op: items}
    if len(values) != 1 or values[0][0] not in ("number", "string", "word"):
        raise CompactSyntaxError(f"expected one value after the operator; found '{text}'")
    return {"fact": path, op: _scalar(values[0][0], values[0][1])}
