"""The csautomation exception tree.

    CsAutomationError
     ├── ConfigError            a configuration file cannot be used
     │    └── ConfigFileError   ... with one or more located problems (file:line:column)
     ├── RuleError              a rule cannot be evaluated
     │    └── RuleEngineError   durable_rules refused a ruleset or a fact
     └── ServiceUnavailableError  Temporal (or another service we need) does not answer

Every located problem is a `Problem`: file, line, column, the field path inside the
document, and a message written for a CS ops person ("expected a number, found 'forty'").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class CsAutomationError(Exception):
    """Base of every error csautomation raises on purpose."""


class ConfigError(CsAutomationError):
    """A configuration file or value cannot be used."""


class ConfigFileError(ConfigError):
    """One or more located problems in configuration files."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column))
        super().__init__("\n".join(str(p) for p in self.problems))


class RuleError(CsAutomationError):
    """A rule cannot be compiled or evaluated."""


class RuleEngineError(RuleError):
    """durable_rules refused a ruleset or a fact."""


class ServiceUnavailableError(CsAutomationError):
    """A service we need (the Temporal server, say) does not answer."""
