"""YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with marks; we build plain Python data from them and keep a
map from each value's path (tuple of keys and indices) to its (line, column), 1-based.
Pydantic error locations are then turned into file:line:column without guessing.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError

from csautomation.errors import ConfigFileError, Problem

PathKey = tuple[str | int, ...]


@dataclass
class Document:
    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Sequence[str | int]) -> tuple[int, int]:
        """Position of the deepest existing prefix of `path`."""
        key = tuple(path)
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        line, column = self.position(path)
        return Problem(self.file, line, column, format_path(path), message)


class YamlSyntaxError(ConfigFileError):
    """A file that is not YAML: one located problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__([problem])


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# PyYAML's wording for the usual slips, with what a person should look at.
_YAML_HINTS = {
    "mapping values are not allowed here": (
        "check the indentation, and put quotes around a value that contains ': '"
    ),
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "expected <block end>": "check the indentation",
}


def _yaml_reason(reason: str) -> str:
    for start, hint in _YAML_HINTS.items():
        if reason.startswith(start):
            return f"{reason} ({hint})"
    return reason


# libyaml's C parser, where PyYAML was built with it, composes about ten times faster; its
# nodes carry the same marks. Its error messages are worded differently, so a file it
# refuses is parsed again by the pure-Python parser, whose messages are the ones we report.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)  # None without libyaml


def _compose(text: str) -> yaml.Node | None:
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def load_text(text: str, file: str) -> Document:
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or str(exc)
        if exc.problem and exc.context and not exc.context.startswith("while "):
            reason = f"{exc.context}, {exc.problem}"  # "expected a single document, but found..."
        reason = _yaml_reason(reason)
        raise YamlSyntaxError(
            Problem(file, line, column, "", f"YAML syntax error: {reason}")
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Problem(file, 1, 1, "", f"YAML syntax error: {exc}")) from None
    doc = Document(file=file, data=None)
    if node is None:
        return doc
    doc.data = _build(node, (), doc)
    return doc


def load_file(path: Path) -> Document:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        raise YamlSyntaxError(
            Problem(
                str(path),
                line,
                column,
                "",
                f"file is not UTF-8 text ({exc.reason}); save it with UTF-8 encoding",
            )
        ) from None
    return load_text(text, str(path))


_constructor = yaml.SafeLoader(" ")


def _build(node: yaml.Node, path: PathKey, doc: Document) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlSyntaxError(
                    Problem(
                        doc.file,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        format_path(path),
                        "YAML merge keys (<<) are not supported",
                    )
                )
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
                key = key_node.value  # YAML 1.1 reads `on:` as True; as a key it is a name
            else:
                key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                key = str(key)
            if key in out:
                first = doc.positions.get((*path, key), (0, 0))
                raise YamlSyntaxError(
                    Problem(
                        doc.file,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        format_path((*path, str(key))),
                        f"duplicate key '{key}' (first defined on line {first[0]})",
                    )
                )
            child = (*path, key if isinstance(key, str | int) else str(key))
            doc.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _build(value_node, child, doc)
            # keep the key's own position: it is where a reader looks for the field
            doc.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc) for i, item in enumerate(node.value)]
    try:
        return _constructor.construct_object(node, deep=True)
    except ValueError:  # a scalar that looks like a date or time but is none: 2026-02-30
        raise YamlSyntaxError(
            Problem(
                doc.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                format_path(path),
                f"'{node.value}' is not a valid date or time",
            )
        ) from None


def describe(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        keys = ", ".join(f"'{k}'" for k in list(value)[:3]) + (", ..." if len(value) > 3 else "")
        return f"a mapping with {keys}" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return repr(value)


def _strip_tags(data: Any, loc: Sequence[str | int], keep_last: bool = False) -> list[str | int]:
    """Pydantic puts union tags and validator names in `loc`; keep only real data keys.

    With `keep_last`, the last part is a field name (unknown or missing) and is kept even
    though the data has no value for it.
    """
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        present = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if present:
            out.append(part)
            node = node[part]
        elif keep_last and i == len(loc) - 1 and isinstance(node, dict):
            out.append(part)
    return out


def _step(tp: Any, part: str | int) -> Any:
    """The type found at `part` inside `tp`, following pydantic's error locations."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _step(get_args(tp)[0], part)
    if origin in (Union, types.UnionType):
        members = get_args(tp)
        for member in members:
            if get_origin(member) is Annotated and any(
                isinstance(m, Tag) and m.tag == part for m in get_args(member)[1:]
            ):
                return get_args(member)[0]
        found = [t for t in (_step(m, part) for m in members) if t is not None]
        return found[0] if len(found) == 1 else None
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(part, str):
        return get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
    return None


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        classes = [t for t in get_args(tp) if t is not type(None)]
        tp = classes[0] if len(classes) == 1 else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _message(err: Any) -> str:
    """Pydantic's message in words for a CS ops person, without type or class names."""
    kind, ctx, found = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping (field: value), found {describe(found)}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, found {describe(found)}"
    if kind == "too_short" and "min_length" in ctx:
        n = ctx["min_length"]
        return f"needs at least {n} item{'s' if n != 1 else ''}, found {describe(found)}"
    if kind == "too_long" and "max_length" in ctx:
        return f"takes at most {ctx['max_length']} items, found {len(found)}"
    if kind in ("enum", "literal_error") and "expected" in ctx:
        expected = re.sub(r"\b(True|False|None)\b", lambda m: m[1].lower(), str(ctx["expected"]))
        options = re.findall(r"'([^']*)'", expected)
        either = "one of " if " or " in expected else ""
        msg = f"expected {either}{expected}, found {describe(found)}"
        hint = (
            difflib.get_close_matches(found, options, n=1, cutoff=0.6)
            if isinstance(found, str)
            else []
        )
        return msg + (f"; did you mean '{hint[0]}'?" if hint else "")
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, found {describe(found)}"
    if kind in ("int_from_float", "int_parsing_size"):
        return f"expected a whole number, found {describe(found)}"
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing"):
        return f"expected a number, found {describe(found)}"
    if kind in ("string_type", "string_unicode"):
        return f"expected text, found {describe(found)}"
    if kind == "string_too_short":
        return "must not be empty" if found == "" else f"is too short, found {describe(found)}"
    text = str(err["msg"])
    text = re.sub(r"^Input should be ", "must be ", text)
    return f"{_lower_first(text)}, found {describe(found)}"


def validation_problems(
    doc: Document,
    exc: ValidationError,
    prefix: PathKey = (),
    known_fields: Iterable[str] = (),
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """Located problems for `exc`. With `model` (the validated class), an unknown field is
    matched against the fields allowed where it stands; else against `known_fields`."""
    known = sorted(set(known_fields))
    errors = exc.errors(include_url=False)
    # a misspelt field is reported once, as "did you mean", not also as a missing field
    misspelt: set[tuple[tuple[str | int, ...], str]] = set()
    problems = []
    for err in errors:
        kind, loc = err["type"], err["loc"]
        data_path = [
            *prefix,
            *_strip_tags(
                _at(doc.data, prefix), loc, keep_last=kind in ("extra_forbidden", "missing")
            ),
        ]
        if kind == "extra_forbidden":
            name = str(loc[-1])
            here = _model_at(model, loc[:-1]) if model else None
            choices = sorted(model_fields_of(here)) if here else known
            hint = difflib.get_close_matches(
                name, [c for c in choices if c != name], n=1, cutoff=0.6
            )
            if here and not hint and choices:
                msg = f"unknown field '{name}'; expected one of: {', '.join(choices)}"
            else:
                msg = f"unknown field '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
            if hint:
                misspelt.add((tuple(data_path[:-1]), hint[0]))
        elif kind == "missing":
            msg = f"missing required field '{loc[-1]}'"
            # located at the mapping that lacks it
            named = bool(data_path) and data_path[-1] == loc[-1]
            parent = data_path[:-1] if named else data_path
            problems.append(
                Problem(doc.file, *doc.position(parent), format_path([*parent, loc[-1]]), msg)
            )
            continue
        else:
            msg = _message(err)
        problems.append(Problem(doc.file, *doc.position(data_path), format_path(data_path), msg))
    problems = [
        p
        for p in problems
        if not (
            p.message.startswith("missing required field ")
            and any(p.field == format_path((*parent, name)) for parent, name in misspelt)
        )
    ]
    return _dedupe(problems)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _at(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


_EXPECTED = re.compile(r"^expected (.+), found (.+)$")


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, int, str]] = set()
    out: list[Problem] = []
    wanted: dict[int, list[str]] = {}
    for p in problems:
        key = (p.line, p.column, p.message)
        if key in seen:
            continue
        seen.add(key)
        # a value that fits none of several types ("a number or text") is one problem
        m = _EXPECTED.match(p.message)
        for i, q in enumerate(out):
            n = _EXPECTED.match(q.message)
            if (
                m
                and n
                and (q.line, q.column, q.field) == (p.line, p.column, p.field)
                and (m.group(2) == n.group(2))
            ):
                parts = wanted.setdefault(i, [n.group(1)])
                parts.append(m.group(1))
                either = (
                    " or ".join(parts)
                    if len(parts) == 2
                    else (f"{', '.join(parts[:-1])}, or {parts[-1]}")
                )
                out[i] = Problem(
                    q.file, q.line, q.column, q.field, f"expected {either}, found {m.group(2)}"
                )
                break
        else:
            out.append(p)
    return out


def model_fields_of(*models: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for model in models:
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return names
