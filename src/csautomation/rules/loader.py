"""Load rule files: every problem reported with file:line:column, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pydantic import ValidationError

from csautomation.config import Document, load_yaml_files, model_fields_of, validation_problems
from csautomation.config.files import fingerprint
from csautomation.errors import ConfigFileError, Problem
from csautomation.rules import spec
from csautomation.rules.ir import CompiledRule, compile_rule

KNOWN_FIELDS = model_fields_of(
    spec.RuleFile,
    spec.Rule,
    spec.Trigger,
    spec.Scope,
    spec.Comparison,
    spec.WindowSpec,
    spec.SignalsSpec,
    spec.StartPlaybook,
    spec.EscalateSpec,
    spec.TaskSpec,
) | {"all", "any", "not", "window", "signals", "escalate", "create_task", "in"}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    files: tuple[str, ...]
    fingerprint: str
    locations: dict[str, tuple[str, int]] = field(default_factory=dict)
    # rule id -> the document it came from and its index under 'rules', to locate later
    # checks (references to playbooks, people, connectors) at the offending line
    sources: dict[str, tuple[Document, int]] = field(default_factory=dict, compare=False)

    def by_id(self, rule_id: str) -> CompiledRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    @cached_property
    def enabled(self) -> tuple[CompiledRule, ...]:
        # cached: the runtime reads it on every evaluation, and a rule set never changes
        return tuple(r for r in self.rules if r.rule.enabled)


def parse_document(doc: Document) -> tuple[list[spec.Rule], list[Problem]]:
    if doc.data is None:
        return [], [doc.problem((), "the file is empty; expected 'rules:' with a list of rules")]
    if not isinstance(doc.data, dict):
        return [], [doc.problem((), "expected a mapping with 'rules:' at the top of the file")]
    try:
        parsed = spec.RuleFile.model_validate(doc.data)
    except ValidationError as exc:
        return [], validation_problems(doc, exc, known_fields=KNOWN_FIELDS, model=spec.RuleFile)
    return list(parsed.rules), []


def load_rules(paths: Sequence[Path]) -> RuleSet:
    """Load and compile; raise ConfigFileError with every problem found in every file."""
    loaded = load_yaml_files(paths, parse_document, none_found="no rule files (*.yaml) found")
    problems = loaded.problems
    rules: list[CompiledRule] = []
    seen: dict[str, tuple[str, int]] = {}
    sources: dict[str, tuple[Document, int]] = {}
    for found in loaded.parsed:
        doc, index, rule = found.doc, found.index, found.value
        line, _ = doc.position(("rules", index, "id"))
        if rule.id in seen:
            first_file, first_line = seen[rule.id]
            problems.append(
                doc.problem(
                    ("rules", index, "id"),
                    f"duplicate rule id '{rule.id}' (also defined at {first_file}:{first_line})",
                )
            )
            continue
        seen[rule.id] = (doc.file, line)
        sources[rule.id] = (doc, index)
        rules.append(compile_rule(rule))
    if problems:
        raise ConfigFileError(problems)
    files = loaded.files
    return RuleSet(tuple(rules), tuple(str(f) for f in files), fingerprint(files), seen, sources)
