"""Sandboxed Jinja2 templates for task subjects, descriptions, notifications and
escalation reasons, in playbooks and in rules' own actions.

Templates are data: they render in Jinja2's SandboxedEnvironment with StrictUndefined, so a
template cannot reach Python internals and a misspelt variable is an error, not a blank. A
value that is known to be missing (an account with no owner yet, a fact with no data) reads
"not known", never "None".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

import jinja2
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator

from csautomation.errors import ConfigError
from csautomation.facts.catalog import FACTS

MISSING = "not known"


def _shown(value: Any) -> Any:
    return MISSING if value is None else value


_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False, finalize=_shown
)


class TemplateProblem(ConfigError, ValueError):
    """A template that does not parse or render (a ValueError, for pydantic validators)."""


def check(source: str) -> str:
    """Parse a template; raise TemplateProblem with Jinja's reason and line."""
    try:
        _ENV.parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (template line {line})" if line else ""
        raise TemplateProblem(f"template does not parse{where}: {exc.message}") from None
    return source


# a field of a YAML file that holds a template: checked when the file loads
Template = Annotated[str, AfterValidator(check)]


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    """Compiling costs ten times rendering; a playbook's few templates are compiled once."""
    return _ENV.from_string(source)


def context(account: Mapping[str, Any], facts: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """What a template sees: `account` (its fields), `facts` (every fact of the catalog,
    None, shown "not known", where the account has no value) and, from a firing, `rule`,
    `params` and `explain`. A misspelt name still fails the template."""
    return {"account": dict(account), "facts": dict.fromkeys(FACTS, None) | dict(facts), **extra}


def render(source: str, context: dict[str, Any]) -> str:
    try:
        return _compiled(source).render(context)
    except TemplateError as exc:
        raise TemplateProblem(f"template failed: {exc.message}") from None
