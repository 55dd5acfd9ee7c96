"""Load playbooks from workflows/: every problem with file:line:column, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from csautomation.errors import ConfigFileError, Problem
from csautomation.playbooks.spec import Playbook, PlaybookFile, reference_problems
from csautomation.rules.loader import rule_files
from csautomation.yamlsource import YamlSyntaxError, load_file, validation_problems


def load_playbooks(paths: Sequence[Path]) -> dict[str, Playbook]:
    """Playbooks by id; raise ConfigFileError listing every problem in every file."""
    problems: list[Problem] = []
    out: dict[str, Playbook] = {}
    where: dict[str, str] = {}
    files = rule_files(paths)
    for path in files:
        if not path.exists():
            problems.append(Problem(str(path), 1, 1, "", "no such file or directory"))
            continue
        try:
            doc = load_file(path)
        except YamlSyntaxError as exc:
            problems.append(exc.problem)
            continue
        if not isinstance(doc.data, dict):
            problems.append(doc.problem((), "expected a mapping with 'playbook:' at the top"))
            continue
        try:
            playbook = PlaybookFile.model_validate(doc.data).playbook
        except ValidationError as exc:
            problems.extend(validation_problems(doc, exc, model=PlaybookFile))
            continue
        broken = reference_problems(playbook)
        if broken:
            problems.extend(doc.problem(path, message) for path, message in broken)
            continue
        if playbook.id in out:
            problems.append(
                doc.problem(
                    ("playbook", "id"),
                    f"duplicate playbook id '{playbook.id}' (also in {where[playbook.id]})",
                )
            )
            continue
        out[playbook.id] = playbook
        where[playbook.id] = str(path)
    if not files:
        problems.append(Problem(", ".join(map(str, paths)), 1, 1, "", "no playbook files found"))
    if problems:
        raise ConfigFileError(problems)
    return out
