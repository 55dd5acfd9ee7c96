"""What one configuration file names in another: the playbooks rules start, each problem
located at the naming line with a "did you mean".

Each file is valid on its own before it gets here (rules/ by `load_rules`, workflows/ by
`load_playbooks`); these checks need both, so `rules validate`, `csauto dev`, the worker,
the pipeline and every hot reload run them on the pair they are about to use.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from csautomation.config import Document
from csautomation.errors import Problem
from csautomation.playbooks.spec import Playbook
from csautomation.rules.loader import RuleSet
from csautomation.rules.spec import StartPlaybook

__all__ = ["did_you_mean", "reference_problems"]


def did_you_mean(name: str, known: Collection[str]) -> str:
    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{near[0]}'?" if near else ""


def _known(kind: str, known: Collection[str]) -> str:
    if not known:
        return f"no {kind}s are defined"
    shown = ", ".join(sorted(known)[:8])
    more = f" and {len(known) - 8} more" if len(known) > 8 else ""
    return f"{kind}s defined: {shown}{more}"


def reference_problems(ruleset: RuleSet, playbooks: Mapping[str, Playbook]) -> list[Problem]:
    """Every rule action that names a playbook that is not loaded."""
    problems: list[Problem] = []
    for compiled in ruleset.rules:
        source = ruleset.sources.get(compiled.id)
        for i, action in enumerate(compiled.rule.actions):
            if not isinstance(action, StartPlaybook) or action.start_playbook in playbooks:
                continue
            name = action.start_playbook
            message = (
                f"rule '{compiled.id}' starts playbook '{name}', which is not in workflows/"
                f"{did_you_mean(name, playbooks)} ({_known('playbook', playbooks)})"
            )
            problems.append(_located(source, i, "start_playbook", message))
    return problems


def _located(source: tuple[Document, int] | None, action: int, key: str, message: str) -> Problem:
    if source is None:
        return Problem("rules", 1, 1, "", message)
    doc, index = source
    return doc.problem(("rules", index, "actions", action, key), message)
