"""What one configuration file names in another, checked: the playbooks rules start, the
connectors steps name, the escalation severities they raise and the people rules compare
account owners with, each problem located at the naming line with a "did you mean".

Each file is valid on its own before it gets here (rules/ by `load_rules`, workflows/ by
`load_playbooks`); these checks need several, so `rules validate`, `playbooks validate`,
`csauto dev`, the worker, the pipeline and every hot reload run them on what they use.
A `Known` field left None is not checked (its file is not there).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from csautomation.config import Document
from csautomation.errors import Problem
from csautomation.playbooks.spec import Playbook
from csautomation.rules import spec
from csautomation.rules.loader import RuleSet

__all__ = ["SERVES", "Known", "did_you_mean", "reference_problems", "template_problems"]

# what each connector type can do for a step; `local` is always there and does all
SERVES: dict[str, frozenset[str]] = {
    "local": frozenset({"tasks", "notify", "records"}),
    "salesforce": frozenset({"tasks", "records"}),
    "hubspot": frozenset({"tasks"}),
    "zendesk": frozenset({"tasks"}),
    "slack": frozenset({"notify"}),
    "webhook": frozenset({"notify"}),
}
_WORDS = {"tasks": "tasks", "notify": "notifications", "records": "account updates"}


@dataclass(frozen=True)
class Known:
    """The names other files define: connector id -> type, severities, person ids."""

    connectors: Mapping[str, str] | None = None
    severities: Collection[str] | None = None
    people: Collection[str] | None = None


def did_you_mean(name: str, known: Collection[str]) -> str:
    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{near[0]}'?" if near else ""


def _listed(kinds: str, known: Collection[str]) -> str:
    if not known:
        return f"no {kinds} are defined"
    shown = ", ".join(sorted(known)[:8])
    more = f" and {len(known) - 8} more" if len(known) > 8 else ""
    return f"{kinds}: {shown}{more}"


def reference_problems(
    ruleset: RuleSet | None, playbooks: Mapping[str, Playbook] | None, known: Known | None = None
) -> list[Problem]:
    """Every name in rules and playbooks that does not resolve; None: not checked."""
    known = known or Known()
    problems: list[Problem] = []
    for compiled in ruleset.rules if ruleset else ():
        source = ruleset.sources.get(compiled.id) if ruleset else None
        doc, index = source if source else (None, 0)
        for path, message in _rule_problems(compiled.rule, playbooks, known):
            problems.append(_at(doc, ("rules", index, *path), message))
    sources: Mapping[str, Document] = getattr(playbooks, "sources", {})
    for pb in (playbooks or {}).values():
        for path, message in _playbook_problems(pb, known):
            problems.append(_at(sources.get(pb.id), ("playbook", *path), message))
    return problems


Found = Iterator[tuple[tuple[str | int, ...], str]]


def _rule_problems(
    rule: spec.Rule, playbooks: Mapping[str, Playbook] | None, known: Known
) -> Found:
    for i, action in enumerate(rule.actions):
        if isinstance(action, spec.StartPlaybook):
            if playbooks is None or action.start_playbook in playbooks:
                continue
            name = action.start_playbook
            yield (
                ("actions", i, "start_playbook"),
                f"rule '{rule.id}' starts playbook '{name}', which is not in workflows/"
                f"{did_you_mean(name, playbooks)} ({_listed('playbooks', playbooks)})",
            )
        elif isinstance(action, spec.Escalate):
            yield from _severity(("actions", i, "escalate", "severity"), action.escalate, known)
        elif isinstance(action, spec.CreateTask):
            where = ("actions", i, "create_task", "connector")
            yield from _connector(where, action.create_task.connector, "tasks", known)
    yield from _owners(("conditions",), rule.conditions, known)


def _playbook_problems(pb: Playbook, known: Known) -> Found:
    for i, step in enumerate(pb.steps):
        at: tuple[str | int, ...] = ("steps", i)
        if step.create_task is not None:
            yield from _connector(
                (*at, "create_task", "connector"), step.create_task.connector, "tasks", known
            )
        elif step.notify is not None:
            yield from _connector((*at, "notify", "channel"), step.notify.channel, "notify", known)
        elif step.update_account is not None:
            yield from _connector(
                (*at, "update_account", "connector"),
                step.update_account.connector,
                "records",
                known,
            )
        elif step.escalate is not None:
            yield from _severity((*at, "escalate", "severity"), step.escalate, known)


def _connector(path: tuple[str | int, ...], name: str | None, need: str, known: Known) -> Found:
    configured = known.connectors
    if name is None or configured is None or name == "local":
        return
    if name not in configured:
        yield (
            path,
            f"no connector '{name}' in connectors/{did_you_mean(name, configured)} "
            f"({_listed('connectors', configured)})",
        )
        return
    kind = configured[name]
    if need not in SERVES.get(kind, frozenset({need})):
        able = sorted(c for c, t in configured.items() if need in SERVES.get(t, ()))
        yield (
            path,
            f"connector '{name}' ({kind}) does not send {_WORDS[need]}; "
            f"{_listed('connectors that do', able) if able else 'local does'}",
        )


def _severity(path: tuple[str | int, ...], escalate: Any, known: Known) -> Found:
    levels = known.severities
    if levels is None or escalate.severity in levels:
        return
    yield (
        path,
        f"severity '{escalate.severity}' is not in escalation_matrix.yaml"
        f"{did_you_mean(escalate.severity, levels)} ({_listed('severities', levels)})",
    )


def _owners(path: tuple[str | int, ...], cond: Any, known: Known) -> Found:
    """`account.owner == someone`: someone must be in people.yaml."""
    if known.people is None:
        return
    if isinstance(cond, spec.AllCondition | spec.AnyCondition):
        items: Sequence[Any] = cond.all if isinstance(cond, spec.AllCondition) else cond.any
        key = "all" if isinstance(cond, spec.AllCondition) else "any"
        for i, child in enumerate(items):
            yield from _owners((*path, key, i), child, known)
    elif isinstance(cond, spec.NotCondition):
        yield from _owners((*path, "not"), cond.not_, known)
    elif isinstance(cond, spec.Comparison) and cond.fact == "account.owner":
        if cond.op not in ("eq", "ne", "in", "not_in"):
            return
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        for value in values:
            if str(value) not in known.people:
                yield (
                    path,
                    f"'{value}' is not a person in people.yaml (account.owner is a person "
                    f"id){did_you_mean(str(value), known.people)}",
                )


def _at(doc: Document | None, path: tuple[str | int, ...], message: str) -> Problem:
    if doc is None:
        return Problem("", 1, 1, "", message)
    return doc.problem(path, message)


def _sample_context(params: Mapping[str, Any]) -> dict[str, Any]:
    """A made-up account with every field and every fact given, as templates see one."""
    from csautomation.facts.catalog import FACTS, FactType
    from csautomation.templates import context

    account = {
        **{name: f"example {name}" for name in ("id", "name", "segment", "region", "tenant")},
        "tier": "enterprise",
        "arr": 120000.0,
        "seats": 80,
        "owner": "csm-01",
        "manager": "mgr-01",
        "renewal_date": "2027-03-31",
        "customer_since": "2024-01-15",
        "tags": ["strategic"],
        "crm_ids": {"salesforce": "001000000000001"},
    }
    sample = {FactType.number: 42, FactType.boolean: True, FactType.string: "example"}
    facts = {p: sample.get(d.type, ["example"]) for p, d in FACTS.items()}
    return context(
        account,
        facts,
        rule={"id": "example-rule", "version": "0" * 12},
        params=dict(params),
        explain={},
    )


def template_problems(
    ruleset: RuleSet | None, playbooks: Mapping[str, Playbook] | None
) -> list[Problem]:
    """Every template rendered for a made-up account: an unknown variable, attribute or
    filter is found here, at its file and line, not when a task is created."""
    from csautomation.templates import TemplateProblem, render

    problems: list[Problem] = []

    def attempt(doc: Document | None, path: tuple[str | int, ...], source: str, seen: Any) -> None:
        if "{" not in source:
            return
        try:
            render(source, seen)
        except TemplateProblem as exc:
            problems.append(_at(doc, path, _explained(str(exc), seen)))

    for compiled in ruleset.rules if ruleset else ():
        doc, index = (ruleset.sources.get(compiled.id) if ruleset else None) or (None, 0)
        seen = _sample_context({})
        for i, action in enumerate(compiled.rule.actions):
            at = ("rules", index, "actions", i)
            if isinstance(action, spec.Escalate):
                attempt(doc, (*at, "escalate", "reason"), action.escalate.reason, seen)
            elif isinstance(action, spec.CreateTask):
                for name in ("subject", "description"):
                    text = getattr(action.create_task, name)
                    attempt(doc, (*at, "create_task", name), text, seen)
    sources: Mapping[str, Document] = getattr(playbooks, "sources", {})
    for pb in (playbooks or {}).values():
        seen = _sample_context(pb.parameters)
        for i, step in enumerate(pb.steps):
            for where, text in _step_templates(step):
                attempt(sources.get(pb.id), ("playbook", "steps", i, *where), text, seen)
    return problems


def _explained(message: str, seen: Mapping[str, Any]) -> str:
    """Jinja's "'dict object' has no attribute 'nmae'" in our words, with a suggestion."""
    missing = re.search(r"has no attribute '([^']+)'", message)
    if missing and "." in missing.group(1):  # facts['health.scor']
        name = missing.group(1)
        return f"no fact '{name}'{did_you_mean(name, list(seen['facts']))}"
    if missing:
        name = missing.group(1)
        fields = [f"account.{k}" for k in seen["account"]] + [
            f"{k}" for k in seen if k != "account"
        ]
        hint = did_you_mean(f"account.{name}", fields)
        return f"the template names '{name}', which is not there{hint} (account fields: " + (
            ", ".join(sorted(seen["account"])) + "; facts as facts['health.score'])"
        )
    undefined = re.search(r"'([^']+)' is undefined", message)
    if undefined:
        name = undefined.group(1)
        return (
            f"the template names '{name}', which is not there"
            f"{did_you_mean(name, list(seen))} (a template sees {', '.join(sorted(seen))})"
        )
    return f"{message} (rendered for a sample account)"


def _step_templates(step: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    if step.create_task is not None:
        yield ("create_task", "subject"), step.create_task.subject
        yield ("create_task", "description"), step.create_task.description
    elif step.notify is not None:
        yield ("notify", "template"), step.notify.template
    elif step.escalate is not None:
        yield ("escalate", "reason"), step.escalate.reason
