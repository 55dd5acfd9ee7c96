"""The schema of schedules.yaml: what the scheduler runs, and its misfire policy.

    pulls:                      # named jobs that pull data in (see csautomation.ingest.pulls)
      salesforce-accounts:
        kind: salesforce_accounts
        every: 15m              # or cron: "*/15 * * * *" (UTC)
        misfire_grace: 10m      # a run missed by more than this is skipped (and logged)
        coalesce: true          # several missed runs run once
        options: {since: 7d}    # checked by the pull itself when it runs
    sweeps:                     # rules with a trigger.schedule cron, over all accounts
      misfire_grace: 1h
    completion_sync:            # tasks completed in the CRM move their playbooks on
      every: 1m
    redrive:                    # dead letters of transient failures re-driven automatically
      every: 1m                 # how often due entries are looked for
      first: 1m                 # the first re-drive after the failure, then 2m, 4m, ...
      maximum: 1h               # ... up to this between two re-drives
      max_age: 24h              # older than this (since the first failure): a person decides
      concurrency: 4            # re-drives at once

A missing file means the defaults: sweeps and completion sync on, no pulls.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from csautomation.config import Interval, YamlSyntaxError, load_file, validation_problems
from csautomation.errors import ConfigFileError, Problem
from csautomation.rules.spec import Cron

DEFAULT_PATH = Path("schedules.yaml")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "a pull's name uses lower-case letters, digits, '-' and '_' only (at most 64), "
            f"e.g. 'salesforce-accounts'; found {value!r}"
        )
    return value


PullName = Annotated[str, AfterValidator(_check_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pull(Strict):
    kind: str = Field(min_length=1, description="which pull: e.g. salesforce_accounts")
    every: Interval | None = None
    cron: Cron | None = Field(default=None, description="cron expression, UTC")
    misfire_grace: Interval = Field(
        default=timedelta(minutes=10),
        description="a run missed (everything down) by more than this is skipped",
    )
    coalesce: bool = Field(default=True, description="several missed runs run once")
    enabled: bool = True
    options: dict[str, Any] = Field(
        default_factory=dict, description="the pull's own settings, checked when it runs"
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> Pull:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a pull needs exactly one of 'every' (e.g. 15m) or 'cron'")
        return self


class Sweeps(Strict):
    enabled: bool = True
    misfire_grace: Interval = Field(
        default=timedelta(hours=1),
        description="a sweep missed by more than this is skipped until its next time",
    )


class CompletionSync(Strict):
    enabled: bool = True
    every: Interval = timedelta(minutes=1)
    misfire_grace: Interval = timedelta(minutes=1)


class Redrive(Strict):
    """Automatic re-drive of dead letters whose failure was transient (5xx, 429, timeouts,
    resets, an open breaker), once the connector's breaker is closed: the n-th re-drive
    `first * 2**(n-1)` after the last failure, at most `maximum`, until `max_age` after the
    first failure. Permanent refusals (validation, auth, not found) wait for a person."""

    enabled: bool = True
    every: Interval = timedelta(minutes=1)
    misfire_grace: Interval = timedelta(minutes=1)
    first: Interval = Field(
        default=timedelta(minutes=1), description="the first re-drive after the failure"
    )
    maximum: Interval = Field(
        default=timedelta(hours=1), description="the longest wait between two re-drives"
    )
    max_age: Interval = Field(
        default=timedelta(hours=24),
        description="no automatic re-drive this long after the first failure",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="re-drives at once")

    @model_validator(mode="after")
    def _ordered(self) -> Redrive:
        if self.maximum < self.first:
            raise ValueError("'maximum' must be at least 'first'")
        if self.max_age < self.first:
            raise ValueError("'max_age' must be at least 'first'")
        return self

    def delay(self, redrives: int) -> timedelta:
        """The wait after the failure of `redrives` re-drives (0: the dead letter's own)."""
        grown: timedelta = self.first * 2 ** min(redrives, 30)
        return min(grown, self.maximum)


class Schedules(Strict):
    pulls: dict[PullName, Pull] = Field(default_factory=dict)
    sweeps: Sweeps = Field(default_factory=Sweeps)
    completion_sync: CompletionSync = Field(default_factory=CompletionSync)
    redrive: Redrive = Field(default_factory=Redrive)


def load_schedules(
    path: Path = DEFAULT_PATH, *, required: bool = False, pull_options: bool = False
) -> Schedules:
    """schedules.yaml, validated; every problem located (file:line:column field).

    A missing file gives the defaults, unless `required` (a path the user named).
    `pull_options`: each pull's options checked by its kind too (this imports the pulls,
    and with them the vendors' libraries: the commands ask for it, not every process)."""
    if not path.exists():
        if required:
            raise ConfigFileError([Problem(str(path), 1, 1, "", "no such file")])
        return Schedules()
    try:
        doc = load_file(path)
    except YamlSyntaxError as exc:
        raise ConfigFileError([exc.problem]) from None
    if doc.data is None:  # only comments
        return Schedules()
    if not isinstance(doc.data, dict):
        raise ConfigFileError(
            [
                doc.problem(
                    (), "expected a mapping with pulls:, sweeps:, completion_sync: or redrive:"
                )
            ]
        )
    try:
        schedules = Schedules.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigFileError(validation_problems(doc, exc, model=Schedules)) from None
    if pull_options and (problems := _option_problems(doc, schedules)):
        raise ConfigFileError(problems)
    return schedules


def _option_problems(doc: Any, schedules: Schedules) -> list[Problem]:
    """Each pull's options checked by its kind's model now, located in the file, rather
    than when it first runs (a kind this code does not know is left to the pull)."""
    from csautomation.ingest.pulls.run import PULL_KINDS  # the pulls import the connectors

    problems: list[Problem] = []
    for name, pull in schedules.pulls.items():
        model = PULL_KINDS.get(pull.kind)
        if model is None:
            continue
        try:
            model.model_validate(dict(pull.options))
        except ValidationError as exc:
            prefix = ("pulls", name, "options")
            problems += validation_problems(doc, exc, prefix=prefix, model=model)
    return problems
