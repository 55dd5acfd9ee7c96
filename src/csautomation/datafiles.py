"""Reading account and signal files (JSONL), each bad line reported with file:line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from csautomation.errors import ConfigFileError, Problem

M = TypeVar("M", bound=BaseModel)
MAX_PROBLEMS = 20


def read_jsonl(path: Path, model: type[M]) -> list[M]:
    if not path.exists():
        raise ConfigFileError([Problem(str(path), 1, 1, "", "no such file")])
    out: list[M] = []
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(model.model_validate(json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(Problem(str(path), lineno, exc.colno, "", f"not JSON: {exc.msg}"))
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    field = ".".join(str(p) for p in err["loc"])
                    problems.append(Problem(str(path), lineno, 1, field, err["msg"]))
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise ConfigFileError(problems)
    return out
