"""The one loop over a folder of YAML files (rules/, workflows/, connectors/): each file read
with its positions and parsed, and every problem of every file collected, never only the
first, so that one run of a validate command lists them all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from csautomation.config.source import Document, YamlSyntaxError, load_file
from csautomation.errors import Problem

T = TypeVar("T")

TEST_DIR = "tests"


def yaml_files(paths: Sequence[Path]) -> list[Path]:
    """YAML files under the given paths, skipping the `tests/` folders of rule test cases."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*.y*ml"))
                if p.suffix in (".yaml", ".yml") and TEST_DIR not in p.relative_to(path).parts
            )
        else:
            out.append(path)
    return out


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """One value a file gave: the document it came from and its place in the file's list."""

    doc: Document
    index: int
    value: T


@dataclass(frozen=True)
class Loaded(Generic[T]):
    files: list[Path]
    parsed: list[Parsed[T]]
    problems: list[Problem]


def load_yaml_files(
    paths: Sequence[Path],
    parse: Callable[[Document], tuple[list[T], list[Problem]]],
    none_found: str = "",
) -> Loaded[T]:
    """Every file under `paths` read and `parse`d, and the problems of all of them.

    `none_found`: the problem when there are no files at all ("" when that is fine).
    """
    files = yaml_files(paths)
    problems: list[Problem] = []
    parsed: list[Parsed[T]] = []
    for path in files:
        if not path.exists():
            problems.append(Problem(str(path), 1, 1, "", "no such file or directory"))
            continue
        try:
            doc = load_file(path)
        except YamlSyntaxError as exc:
            problems.append(exc.problem)
            continue
        values, found = parse(doc)
        problems.extend(found)
        parsed.extend(Parsed(doc, index, value) for index, value in enumerate(values))
    if not files and none_found:
        problems.append(Problem(", ".join(str(p) for p in paths), 1, 1, "", none_found))
    return Loaded(files, parsed, problems)


def fingerprint(files: Iterable[Path]) -> str:
    """Changes when a file is added, removed or edited (by mtime and size)."""
    digest = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
            digest.update(f"{f}|{st.st_mtime_ns}|{st.st_size}\n".encode())
        except OSError:
            digest.update(f"{f}|gone\n".encode())
    return digest.hexdigest()
