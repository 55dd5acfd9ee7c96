"""Another version of the rules, to preview a change against: a folder, or a git ref.

A ref's rules are read with `git archive` into a temporary folder (git run with an argument
list, never a shell) and loaded as any rules are; the folder is gone once they are loaded.
Problems in that version are reported at `REF:path/in/the/repo.yaml:line:column`, so they
are never mistaken for problems in the files on disk.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csautomation.errors import ConfigError, ConfigFileError, Problem
from csautomation.rules.loader import RuleSet, load_rules

__all__ = ["OtherVersion", "load_other_version"]


@dataclass(frozen=True)
class OtherVersion:
    label: str  # the ref as given, or the folder
    ruleset: RuleSet


def load_other_version(ref: str, paths: Sequence[Path]) -> OtherVersion:
    """The rules at `ref`: a folder if one exists there, else a git ref of the repository
    holding `paths` (the rules the command reads now), read at the same places."""
    folder = Path(ref)
    if folder.is_dir():
        return OtherVersion(ref, load_rules([folder]))
    top = _repo_top(ref, paths)
    commit = _resolve(top, ref)
    rels = [_in_repo(top, path) for path in paths]
    for rel in rels:
        if _git(top, "cat-file", "-e", f"{commit}:{'' if rel == '.' else rel}").returncode:
            raise ConfigError(f"{rel} does not exist at {ref} (commit {commit[:12]})")
    with tempfile.TemporaryDirectory(prefix="csauto-rules-") as tmp:
        archive = _git(top, "archive", "--format=tar", commit, "--", *rels)
        if archive.returncode != 0:
            raise ConfigError(f"git archive {ref} failed: {_stderr(archive)}")
        try:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.TarError as exc:
            raise ConfigError(f"the rules at {ref} cannot be unpacked: {exc}") from exc
        try:
            ruleset = load_rules([Path(tmp, rel) for rel in rels])
        except ConfigFileError as exc:
            raise ConfigFileError([_at_ref(p, tmp, ref) for p in exc.problems]) from exc
    return OtherVersion(ref, ruleset)


def _at_ref(problem: Problem, tmp: str, ref: str) -> Problem:
    try:
        rel = Path(problem.file).relative_to(tmp).as_posix()
    except ValueError:
        return problem
    return Problem(f"{ref}:{rel}", problem.line, problem.column, problem.field, problem.message)


def _git(top: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(top), *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"git is not installed, so '{args[-1]}' cannot be read as a git ref"
        ) from exc


def _stderr(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stderr.decode(errors="replace").strip()


def _repo_top(ref: str, paths: Sequence[Path]) -> Path:
    start = paths[0] if paths else Path()
    where = start if start.is_dir() else start.parent
    if not where.is_dir():
        raise ConfigError(f"no commit or folder '{ref}' ({start} does not exist)")
    done = _git(where.resolve(), "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise ConfigError(
            f"no folder '{ref}', and {where.resolve()} is not in a git repository, "
            "so it is not a git ref either"
        )
    return Path(done.stdout.decode().strip())


def _resolve(top: Path, ref: str) -> str:
    if ref.startswith("-"):  # never an option to git
        raise ConfigError(f"no commit or folder '{ref}'")
    done = _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if done.returncode != 0:
        raise ConfigError(f"no commit or folder '{ref}' (in the git repository {top})")
    return done.stdout.decode().strip()


def _in_repo(top: Path, path: Path) -> str:
    try:
        rel = path.resolve().relative_to(top.resolve())
    except ValueError as exc:
        raise ConfigError(f"{path} is outside the git repository {top}") from exc
    return rel.as_posix() if rel.parts else "."
