"""people.yaml: the people directory. Who is on which team, who manages whom, how to
reach them (email, Slack member id, their user id in each CRM), and who may sign in to
the manager's review page and API.

Sign-in keeps no secret in the file: a password is stored as an argon2 hash (`csauto
people hash-password`), an API token as its SHA-256 (tokens are long random strings, so a
fast hash is enough to compare them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from csautomation.config import YamlSyntaxError, load_file, validation_problems
from csautomation.errors import ConfigFileError, Problem

Role = Literal["csm", "manager", "director", "vp", "admin", "ops"]
Slug = str


def _user_id(value: object) -> object:
    """A vendor's numeric user id (Zendesk, HubSpot) written without quotes is still an id."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


UserId = Annotated[str, BeforeValidator(_user_id), Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignIn(Strict):
    password_hash: str = Field(default="", description="argon2 hash of the password")
    api_token_sha256: list[str] = Field(
        default_factory=list, description="SHA-256 hex digests of this person's API tokens"
    )


class Person(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
    name: str = Field(min_length=1)
    role: Role
    team: str = Field(default="", description="the team whose escalations they see")
    teams: list[str] = Field(
        default_factory=list, description="further teams a manager or director oversees"
    )
    manager: str | None = Field(default=None, description="person id of their manager")
    email: str = ""
    slack: str = Field(default="", description="Slack member id, for mentions")
    crm_ids: dict[str, UserId] = Field(
        default_factory=dict,
        description="connector id -> this person's user id there; a connector without one "
        "looks their email up (connectors/owners.py)",
    )
    sign_in: SignIn | None = None

    @property
    def all_teams(self) -> list[str]:
        return [t for t in [self.team, *self.teams] if t]


class Team(Strict):
    name: str = ""
    director: str | None = Field(default=None, description="person id")
    vp: str | None = Field(default=None, description="person id")


class People(Strict):
    teams: dict[str, Team] = Field(default_factory=dict)
    people: list[Person] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> People:
        ids = [p.id for p in self.people]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate person id: {', '.join(dupes)}")
        known = set(ids)
        for p in self.people:
            if p.manager is not None and p.manager not in known:
                raise ValueError(f"{p.id}: manager '{p.manager}' is not in people")
            for name in p.all_teams:
                if name not in self.teams:
                    raise ValueError(f"{p.id}: team '{name}' is not in teams")
        for tid, team in self.teams.items():
            for who in (team.director, team.vp):
                if who is not None and who not in known:
                    raise ValueError(f"team {tid}: '{who}' is not in people")
        return self

    def get(self, person_id: str | None) -> Person | None:
        if not person_id:
            return None
        return next((p for p in self.people if p.id == person_id), None)


class PeopleFile(Strict):
    teams: dict[str, Team] = Field(default_factory=dict)
    people: list[Person] = Field(default_factory=list)


def load_people(path: Path) -> People:
    """The directory; ConfigFileError with file:line:column for every problem."""
    if not path.exists():
        raise ConfigFileError([Problem(str(path), 1, 1, "", "no such file")])
    try:
        doc = load_file(path)
    except YamlSyntaxError as exc:
        raise ConfigFileError([exc.problem]) from None
    if not isinstance(doc.data, dict):
        raise ConfigFileError([doc.problem((), "expected a mapping with 'people:' at the top")])
    try:
        return People.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigFileError(validation_problems(doc, exc, model=PeopleFile)) from None
