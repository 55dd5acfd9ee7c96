"""YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with marks; we build plain Python data from them and keep a
map from each value's path (tuple of keys and indices) to its (line, column), 1-based.
Pydantic error locations are then turned into file:line:column without guessing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from csautomation.errors import Problem

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


class YamlSyntaxError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_text(text: str, file: str) -> Document:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or str(exc)
        raise YamlSyntaxError(Problem(file, line, column, "", f"YAML syntax error: {reason}")) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Problem(file, 1, 1, "", f"YAML syntax error: {exc}")) from None
    doc = Document(file=file, data=None)
    if node is None:
        return doc
    doc.data = _build(node, (), doc)
    return doc


def load_file(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(
            Problem(str(path), 1, 1, "", f"file is not UTF-8 text ({exc.reason})")
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
                    Problem(doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            format_path(path), "YAML merge keys (<<) are not supported")
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
                    Problem(doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            format_path((*path, str(key))),
                            f"duplicate key '{key}' (first defined on line {first[0]})")
                )
            child = (*path, key if isinstance(key, str | int) else str(key))
            doc.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _build(value_node, child, doc)
            # keep the key's own position: it is where a reader looks for the field
            doc.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)


def describe(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _strip_tags(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """Pydantic puts union tags and validator names in `loc`; keep only real data keys."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node:
            # an unknown field (extra_forbidden) or a missing one: keep the name if it is last
            if part is loc[-1]:
                out.append(part)
    return out


def validation_problems(
    doc: Document, exc: ValidationError, prefix: PathKey = (), known_fields: Iterable[str] = ()
) -> list[Problem]:
    known = sorted(set(known_fields))
    problems = []
    for err in exc.errors(include_url=False):
        data_path = [*prefix, *_strip_tags(_at(doc.data, prefix), err["loc"])]
        kind = err["type"]
        found = err.get("input")
        if kind == "extra_forbidden":
            name = str(data_path[-1]) if data_path else "?"
            hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            msg = f"unknown field '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
        elif kind == "missing":
            name = str(err["loc"][-1])
            data_path.append(name)
            msg = f"missing required field '{name}'"
            data_path = data_path[:-1]
            msg_path = [*data_path, name]
            problems.append(Problem(doc.file, *doc.position(data_path), format_path(msg_path), msg))
            continue
        elif kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        else:
            msg = f"{_lower_first(err['msg'])}, found {describe(found)}"
        problems.append(Problem(doc.file, *doc.position(data_path), format_path(data_path), msg))
    return _dedupe(problems)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _at(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, int, str]] = set()
    out = []
    for p in problems:
        key = (p.line, p.column, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def model_fields_of(*models: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for model in models:
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return names
