"""The csautomation exception tree: every exception class in src/ is in it.

    CsAutomationError
     ├── ConfigError            a configuration file or value cannot be used
     │    ├── ConfigFileError   ... with one or more located problems (file:line:column)
     │    │    └── YamlSyntaxError   a file is not YAML              [config.source]
     │    ├── TemplateProblem     a Jinja template fails (also ValueError)
     │    │                                                      [templates]
     │    ├── UnknownConnectorError   a step names a connector that is not configured,
     │    │                           or one without the capability (also LookupError)
     │    │                                                      [connectors.registry]
     │    ├── UnknownPlaybookError  a rule starts a playbook that is not loaded
     │    │                           (also LookupError)         [pipeline.dispatch]
     │    ├── NoStoreError          a command that only reads found no store (or no
     │    │                           Temporal data) where it looked: nothing was created
     │    └── SweepError            a sweep names an unknown, disabled or unscheduled rule
     │                                                            [scheduling.sweep]
     ├── RuleError              a rule cannot be compiled or evaluated
     │    ├── RuleEngineError   durable_rules refused a ruleset or a fact
     │    └── CompactSyntaxError  a one-line condition does not parse (also
     │                                ValueError, for pydantic)  [rules.compact]
     ├── ConnectorError         a vendor call failed (connector, operation, retryable, ...)
     │    ├── ConnectorValidationError  the vendor refused the request (4xx): never retried
     │    │    └── UnresolvedOwnerError  a task's person has no user at the vendor and
     │    │                              there is no fallback_owner  [connectors.owners]
     │    ├── ConnectorNotFoundError    a record or endpoint does not exist: never retried
     │    ├── ConnectorAuthError        credentials refused (401/403): refreshed once, then
     │    │                             retried; missing credentials are never retried
     │    ├── ConnectorRateLimitedError 429: retried after `retry_after`
     │    └── ConnectorUnavailableError 5xx, timeouts, resets: retried with backoff
     │         └── CircuitOpenError     the connector's breaker is open: no call was made
     │    (`sent` is False when no request reached the vendor: a wait, not an answer)
     ├── EscalationError        an escalation cannot be planned (an unknown severity, say)
     ├── ServiceUnavailableError  Temporal (or another service we need) does not answer
     ├── SchemaError            the database schema is not the code's   [store.migrate]
     ├── NoSchedulerError       a job ran where no scheduler leads      [scheduling.jobs]
     ├── LeaseLostError         a pipeline's pass lost a partition before its commit:
     │                            nothing of it committed               [store.partitions]
     ├── SourceAuthError        an ingest request proves no source (401)  [ingest.sources]
     ├── HistoryFileError       a workflow history file cannot be read  [audit.replay]
     ├── DecisionError          a firing to replay is not in the store  [audit.decisions]
     └── ReviewError            what the review API refuses, with its HTTP status [api.errors]
          ├── InputError, NotSignedInError, NotAllowedError
          ├── EscalationNotFoundError, EscalationClosedError, RuleNotFoundError
          ├── QuarantineNotFoundError                                  [api.quarantine]
          └── TaskNotFoundError                                        [api.my_work]

Not in the tree on purpose: the CLI's private `_Terminated` (cli.common), a SIGTERM
unwinding the main task, not an error.

Every located problem is a `Problem`: file, line, column, the field path inside the
document, and a message written for a CS ops person ("expected a number, found 'forty'").
`raise ... from None` only where the cause could carry a secret (a vendor library's
exception naming a webhook URL, a response echoing a token); elsewhere `from exc`.
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


class NoStoreError(ConfigError):
    """A command that only reads found nothing where it looked (`where`: a SQLite file, a
    PostgreSQL database, a data folder's temporal.db); `hint` names the data folders that
    do have one. Nothing was created: looking never makes a database."""

    def __init__(self, where: str, hint: str = "", what: str = "store") -> None:
        self.where = where
        self.hint = hint
        self.what = what
        super().__init__(f"no {what} at {where}" + (f"; {hint}" if hint else ""))


class RuleError(CsAutomationError):
    """A rule cannot be compiled or evaluated."""


class RuleEngineError(RuleError):
    """durable_rules refused a ruleset or a fact."""


class EscalationError(CsAutomationError):
    """An escalation cannot be planned: an unknown severity, or a matrix that does not
    cover the account."""


class ServiceUnavailableError(CsAutomationError):
    """A service we need (the Temporal server, say) does not answer."""


class ConnectorError(CsAutomationError):
    """A vendor call failed. The message is safe to log and store: it never holds a
    secret (connectors redact what they pass on from the vendor)."""

    retryable = True
    # whether a request reached the vendor: False for a wait at our own breaker or rate
    # limit, which must not spend an action's attempts (activities/playbook.py)
    sent = True

    def __init__(
        self,
        connector: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.connector = connector
        self.operation = operation
        self.message = message
        self.status = status
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{connector} {operation}{code}: {message}")


class ConnectorValidationError(ConnectorError):
    retryable = False


class ConnectorNotFoundError(ConnectorError):
    retryable = False


class ConnectorAuthError(ConnectorError):
    retryable = True


class ConnectorRateLimitedError(ConnectorError):
    retryable = True


class ConnectorUnavailableError(ConnectorError):
    retryable = True


class CircuitOpenError(ConnectorUnavailableError):
    retryable = True
    sent = False
