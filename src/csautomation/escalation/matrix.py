"""escalation_matrix.yaml: for each severity, who is reached, through what, and how long
they have to acknowledge before the next level is.

    calendars:                      working hours that deadlines count in (by name)
      emea-business: {timezone: Europe/London, hours: {mon: ["09:00-17:30"], ...},
                      holidays: [2026-12-25]}
    severities:
      critical:                     a severity: its entries, the first match wins
        - match: {tier: [enterprise]}
          calendar: null            null or left out: around the clock
          levels:
            - reach: [owner]        owner, manager, director, vp, person:<id>
              channels: [local, slack]
              ack_within: 30m
              repeat: 1             tell the same level again once before climbing
        - match: {}                 the catch-all: every severity ends with one

The structure is checked by pydantic; names that refer elsewhere (calendars, people, the
catch-all) are checked by the loader, so every problem is reported with file:line:column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from csautomation.config import (
    Document,
    ShortDuration,
    YamlSyntaxError,
    format_path,
    load_file,
    validation_problems,
)
from csautomation.errors import ConfigFileError, Problem
from csautomation.escalation.calendar import Calendar
from csautomation.escalation.people import People, load_people
from csautomation.facts.model import Account, Tier

ROLES = ("owner", "manager", "director", "vp")
_SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PERSON = re.compile(r"^person:([A-Za-z0-9][A-Za-z0-9._@-]{0,127})$")


def _slug(what: str, example: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                f"{what} '{value}' must be lower-case letters, digits, - and _, "
                f"starting with a letter (e.g. {example})"
            )
        return value

    return check


Channel = Annotated[
    str,
    AfterValidator(_slug("a channel", "slack")),
    Field(description="a connector id: local (the built-in CRM), slack, webhook, salesforce..."),
]
Name = Annotated[str, AfterValidator(_slug("a name", "emea-business"))]


def _role(value: str) -> str:
    if value in ROLES or _PERSON.match(value):
        return value
    hint = difflib.get_close_matches(value, [*ROLES, "person:"], n=1, cutoff=0.6)
    raise ValueError(
        f"unknown role '{value}'; expected owner, manager, director, vp or person:<id>"
        + (f"; did you mean '{hint[0]}'?" if hint else "")
    )


RoleRef = Annotated[
    str,
    AfterValidator(_role),
    Field(
        description=(
            "owner (the account's CSM), manager (the CSM's manager), director or vp (of the "
            "CSM's team), or person:<id> from people.yaml"
        ),
        json_schema_extra={
            "pattern": r"^(owner|manager|director|vp|person:[A-Za-z0-9][A-Za-z0-9._@-]*)$"
        },
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(Strict):
    """Which accounts an entry covers: every condition given must hold; within a list,
    any value will do. An empty match covers every account."""

    tier: list[Tier] | None = Field(default=None, min_length=1)
    arr_min: float | None = Field(default=None, ge=0, description="ARR at least this")
    arr_max: float | None = Field(default=None, gt=0, description="ARR below this")
    segment: list[str] | None = Field(default=None, min_length=1)
    region: list[str] | None = Field(default=None, min_length=1)
    tenant: list[str] | None = Field(default=None, min_length=1)
    tags: list[str] | None = Field(
        default=None, min_length=1, description="the account has at least one of these tags"
    )

    @model_validator(mode="after")
    def _range(self) -> Match:
        if self.arr_min is not None and self.arr_max is not None and self.arr_min >= self.arr_max:
            raise ValueError(
                f"arr_min ({self.arr_min:g}) must be below arr_max ({self.arr_max:g}): "
                "no account could match"
            )
        return self

    @property
    def catch_all(self) -> bool:
        return self == Match()

    def matches(self, account: Account) -> bool:
        return (
            (self.tier is None or account.tier in self.tier)
            # an account whose ARR is not known yet counts as 0 (the smallest band)
            and (self.arr_min is None or (account.arr or 0.0) >= self.arr_min)
            and (self.arr_max is None or (account.arr or 0.0) < self.arr_max)
            and (self.segment is None or account.segment in self.segment)
            and (self.region is None or account.region in self.region)
            and (self.tenant is None or account.tenant in self.tenant)
            and (self.tags is None or any(t in account.tags for t in self.tags))
        )

    def describe(self) -> str:
        """In words: "tier enterprise and ARR >= 100000"."""
        parts = []
        for name, values in (
            ("tier", self.tier),
            ("segment", self.segment),
            ("region", self.region),
            ("tenant", self.tenant),
            ("tag", self.tags),
        ):
            if values is not None:
                parts.append(f"{name} {' or '.join(str(v) for v in values)}")
        if self.arr_min is not None:
            parts.append(f"ARR >= {self.arr_min:g}")
        if self.arr_max is not None:
            parts.append(f"ARR < {self.arr_max:g}")
        return " and ".join(parts) or "any account"


class Level(Strict):
    reach: list[RoleRef] = Field(min_length=1, description="who is told at this level")
    channels: list[Channel] = Field(min_length=1, description="connector ids to tell them by")
    ack_within: ShortDuration = Field(
        description="time to acknowledge before the next round, in the entry's calendar"
    )
    repeat: int = Field(
        default=0, ge=0, le=10, description="tell this level again this many times first"
    )


class Entry(Strict):
    match: Match = Field(description="which accounts; {} (the catch-all) matches every one")
    name: str = Field(default="", description="a short name shown in plans")
    calendar: Name | None = Field(
        default=None, description="a name under calendars:, or null for around the clock"
    )
    levels: list[Level] = Field(min_length=1)

    _line: int = PrivateAttr(default=0)

    def describe(self, severity: str, file: str = "") -> str:
        """In words, with where it is: critical, tier enterprise (escalation_matrix.yaml:4)."""
        what = self.match.describe()
        if self.name:
            what = f"{self.name}: {what}"
        where = f" ({file}:{self._line})" if file and self._line else ""
        return f"{severity}, {what}{where}"


class EscalationMatrix(Strict):
    calendars: dict[Name, Calendar] = Field(default_factory=dict)
    severities: dict[Name, list[Entry]] = Field(
        min_length=1, description="each severity's entries, in order: the first match wins"
    )

    _file: str = PrivateAttr(default="")

    @property
    def file(self) -> str:
        """The file's name (no folder), for "escalation_matrix.yaml:4"."""
        return Path(self._file).name if self._file else ""

    def entry_for(self, severity: str, account: Account) -> Entry | None:
        """The first entry of `severity` that covers the account."""
        entries = self.severities.get(severity, [])
        return next((e for e in entries if e.match.matches(account)), None)

    def calendar_of(self, entry: Entry) -> Calendar | None:
        return None if entry.calendar is None else self.calendars[entry.calendar]


def reference_problems(
    matrix: EscalationMatrix, data: Any = None, people: People | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """Names that do not resolve and severities that do not cover every account, each with
    its path inside the file. `data` is the raw YAML (to see how durations were written);
    with `people`, person:<id> references are checked too."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    calendars = sorted(matrix.calendars)
    for severity, entries in matrix.severities.items():
        catch_all: int | None = None
        for i, entry in enumerate(entries):
            at: tuple[str | int, ...] = ("severities", severity, i)
            if catch_all is not None:
                found.append(
                    (
                        (*at, "match"),
                        f"this entry can never match: entry {catch_all + 1} of '{severity}' "
                        "matches every account and comes before it",
                    )
                )
            elif entry.match.catch_all:
                catch_all = i
            if entry.calendar is not None and entry.calendar not in matrix.calendars:
                found.append(((*at, "calendar"), _unknown("calendar", entry.calendar, calendars)))
            for j, level in enumerate(entry.levels):
                here = (*at, "levels", j)
                if entry.calendar is not None and _in_days(_get(data, (*here, "ack_within"))):
                    found.append(
                        (
                            (*here, "ack_within"),
                            "under a calendar, write working hours (16h for two 8-hour days), "
                            "not days: 1d would be 24 working hours",
                        )
                    )
                for k, role in enumerate(level.reach):
                    m = _PERSON.match(role)
                    if m and people is not None and people.get(m.group(1)) is None:
                        ids = [p.id for p in people.people]
                        message = _unknown("person", m.group(1), ids, "people.yaml")
                        found.append(((*here, "reach", k), message))
        if catch_all is None:
            found.append(
                (
                    ("severities", severity),
                    f"severity '{severity}' is incomplete: its last entry must be the "
                    "catch-all (match: {}), so that every account is covered",
                )
            )
    return found


def _unknown(what: str, name: str, known: Sequence[str], where: str = "") -> str:
    hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if hint:
        return f"unknown {what} '{name}'; did you mean '{hint[0]}'?"
    if not known:
        return f"unknown {what} '{name}'; none is defined" + (f" in {where}" if where else "")
    listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return f"unknown {what} '{name}'; expected one of: {listed}"


def _get(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return None
        data = data[part]
    return data


def _in_days(raw: Any) -> bool:
    return isinstance(raw, str) and raw.strip().endswith(("d", "w"))  # 2w is days too


def load_matrix(path: Path, people: People | None = None) -> EscalationMatrix:
    """The matrix; ConfigFileError with file:line:column for every problem. With `people`,
    person:<id> references must name someone in it."""
    if not path.exists():
        raise ConfigFileError([Problem(str(path), 1, 1, "", "no such file")])
    try:
        doc = load_file(path)
    except YamlSyntaxError as exc:
        raise ConfigFileError([exc.problem]) from None
    except ValueError as exc:  # PyYAML cannot build a value, e.g. the date 2026-02-30
        raise ConfigFileError([_unbuildable(path, exc)]) from None
    return matrix_from_document(doc, people)


def _unbuildable(path: Path, exc: ValueError) -> Problem:
    """Where PyYAML failed to build a scalar (config.source reports no position for it)."""
    constructor = yaml.SafeLoader("")
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [] if root is None else [(root, ())]
    while stack:
        node, at = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                constructor.construct_object(node, deep=True)
            except ValueError:
                what = "date" if node.tag.endswith(":timestamp") else "value"
                line, column = node.start_mark.line + 1, node.start_mark.column + 1
                message = f"'{node.value}' is not a valid {what}: {exc}"
                return Problem(str(path), line, column, format_path(at), message)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((v, (*at, str(k.value))) for k, v in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*at, i)) for i, v in reversed(list(enumerate(node.value))))
    return Problem(str(path), 1, 1, "", str(exc))


def matrix_from_document(doc: Document, people: People | None = None) -> EscalationMatrix:
    if not isinstance(doc.data, dict):
        raise ConfigFileError(
            [doc.problem((), "expected a mapping with 'severities:' (and 'calendars:') at the top")]
        )
    try:
        matrix = EscalationMatrix.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigFileError(validation_problems(doc, exc, model=EscalationMatrix)) from None
    broken = reference_problems(matrix, doc.data, people)
    if broken:
        raise ConfigFileError([doc.problem(p, message) for p, message in broken])
    matrix._file = doc.file
    for severity, entries in matrix.severities.items():
        for i, entry in enumerate(entries):
            entry._line = doc.position(("severities", severity, i))[0]
    return matrix


def matrix_json_schema() -> dict[str, Any]:
    """JSON Schema of escalation_matrix.yaml, for editors (YAML language servers)."""
    schema = EscalationMatrix.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "csautomation escalation matrix"
    return schema


def load_escalation_config(matrix_path: Path, people_path: Path) -> tuple[EscalationMatrix, People]:
    """The matrix and the people directory, checked against each other; one
    ConfigFileError with the problems of both files."""
    problems: list[Problem] = []
    people: People | None = None
    try:
        people = load_people(people_path)
    except ConfigFileError as exc:
        problems.extend(exc.problems)
    try:
        matrix = load_matrix(matrix_path, people)
    except ConfigFileError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigFileError(problems)
    assert people is not None
    return matrix, people
