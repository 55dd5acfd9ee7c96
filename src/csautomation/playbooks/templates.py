"""Sandboxed Jinja2 templates for task subjects, descriptions and notifications.

Templates are data: they render in Jinja2's SandboxedEnvironment with StrictUndefined, so a
template cannot reach Python internals and a misspelt variable is an error, not a blank. A
value that is known to be missing (an account with no owner yet, a fact with no data) reads
"not known", never "None".
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from csautomation.errors import ConfigError

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


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Template:
    """Compiling costs ten times rendering; a playbook's few templates are compiled once."""
    return _ENV.from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    try:
        return _compiled(source).render(context)
    except TemplateError as exc:
        raise TemplateProblem(f"template failed: {exc.message}") from None
