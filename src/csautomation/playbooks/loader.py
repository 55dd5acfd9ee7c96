"""Load playbooks from workflows/: every problem with file:line:column, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from csautomation.config import Document, load_yaml_files, validation_problems
from csautomation.config.files import fingerprint
from csautomation.errors import ConfigFileError, Problem
from csautomation.playbooks.spec import Playbook, PlaybookFile, reference_problems


def parse_playbook(doc: Document) -> tuple[list[Playbook], list[Problem]]:
    """The file's playbook, or the problems that keep it out."""
    if not isinstance(doc.data, dict):
        return [], [doc.problem((), "expected a mapping with 'playbook:' at the top")]
    try:
        playbook = PlaybookFile.model_validate(doc.data).playbook
    except ValidationError as exc:
        return [], validation_problems(doc, exc, model=PlaybookFile)
    broken = reference_problems(playbook)
    if broken:
        return [], [doc.problem(path, message) for path, message in broken]
    return [playbook], []


class Playbooks(dict[str, Playbook]):
    """Playbooks by id, with the document each came from (to locate later checks) and a
    fingerprint of the files they were read from (to notice an edit)."""

    def __init__(self, files: Sequence[Path] = ()) -> None:
        super().__init__()
        self.sources: dict[str, Document] = {}
        self.files = tuple(str(f) for f in files)
        self.fingerprint = fingerprint(files)


def load_playbooks(paths: Sequence[Path]) -> Playbooks:
    """Playbooks by id; raise ConfigFileError listing every problem in every file."""
    loaded = load_yaml_files(paths, parse_playbook, none_found="no playbook files found")
    problems = loaded.problems
    out = Playbooks(loaded.files)
    where: dict[str, str] = {}
    for found in loaded.parsed:
        doc, playbook = found.doc, found.value
        if playbook.id in out:
            problems.append(
                doc.problem(
                    ("playbook", "id"),
                    f"duplicate playbook id '{playbook.id}' (also in {where[playbook.id]})",
                )
            )
            continue
        out[playbook.id] = playbook
        out.sources[playbook.id] = doc
        where[playbook.id] = doc.file
    if problems:
        raise ConfigFileError(problems)
    return out
