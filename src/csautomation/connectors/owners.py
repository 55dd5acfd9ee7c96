"""Whom a vendor task goes to: our person id -> the vendor's user id, and where it came from.

The first that answers wins:

    owners    the connector's own `owners:` map (connectors/*.yaml): it keeps working as it
              did and wins over people.yaml
    crm_ids   the person's `crm_ids.<connector id>` in people.yaml
    email     the person's `email` in people.yaml, looked up through the vendor's user API
              (Salesforce: User by Email; Zendesk: users/search; HubSpot: owners?email=)

A person none of them resolves is never handed to the integration user in silence: the
task goes to the connector's `fallback_owner` (counted in csauto_owner_unresolved_total,
logged as a warning, and its description says whom it was meant for), or, with no
fallback, the action fails for good with an error naming the person and the vendor (a
dead letter).

The e-mail cache is per connector and in memory: a restarted worker asks the vendor again,
once per person as their first task comes (never once per task), and `crm_ids` in
people.yaml avoids the look-up altogether. A miss is kept for less time than a hit, so a
user added at the vendor is found soon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from csautomation import metrics
from csautomation.connectors.base import TaskRequest
from csautomation.errors import ConnectorValidationError
from csautomation.escalation.people import People

__all__ = [
    "FOUND_TTL",
    "MISSING_TTL",
    "SOURCES",
    "Lookup",
    "Owner",
    "Owners",
    "Resolution",
    "Survey",
    "UnresolvedOwnerError",
    "UserMatch",
    "attach",
    "pick",
    "survey",
]

log = logging.getLogger(__name__)

FOUND_TTL = 3600.0  # seconds a user found by e-mail is kept
MISSING_TTL = 300.0  # seconds "the vendor has no such user" is kept

# where a user id came from, as `csauto connectors check` says it
SOURCES = {
    "owners": "owners: in the connector's file",
    "crm_ids": "crm_ids in people.yaml",
    "email": "e-mail looked up",
    "fallback_owner": "the connector's fallback_owner",
}


class UnresolvedOwnerError(ConnectorValidationError):
    """A task's person has no user at the vendor and the connector has no fallback_owner:
    never retried, a dead letter that names the person and the vendor."""


@dataclass(frozen=True)
class UserMatch:
    """What a vendor's user look-up by e-mail found: a user id, or why there is none."""

    user_id: str | None
    why: str = ""


Lookup = Callable[[str], UserMatch]


def pick(vendor: str, email: str, users: Sequence[tuple[str, str]]) -> UserMatch:
    """The one usable user among those the vendor has with `email`: (user id, "" when
    usable, else why not, e.g. "is inactive"). Two usable ones are a question only a
    person can answer (crm_ids), never a guess."""
    usable = [uid for uid, why_not in users if not why_not]
    if len(usable) == 1:
        return UserMatch(usable[0])
    if usable:
        return UserMatch(
            None, f"{len(usable)} {vendor} users have the e-mail {email}; crm_ids names one"
        )
    if users:
        return UserMatch(None, f"the {vendor} user with the e-mail {email} {users[0][1]}")
    return UserMatch(None, f"no {vendor} user has the e-mail {email}")


@dataclass(frozen=True)
class Resolution:
    """One person, resolved or not."""

    person: str  # our id; "" for an account with no owner and no manager
    name: str  # as people.yaml names them; "" when they are not in it
    user_id: str | None
    source: str = ""  # a key of SOURCES; "" when unresolved
    reason: str = ""  # why unresolved, for people to read

    @property
    def who(self) -> str:
        """ "csm-07 (Sofia Rossi)", as errors and `connectors check` name a person."""
        return f"{self.person} ({self.name})" if self.name else self.person


@dataclass(frozen=True)
class Owner:
    """Whom the vendor's task goes to. `meant_for` is set when that is the fallback: a
    sentence for the top of the task's description."""

    user_id: str
    source: str
    meant_for: str = ""

    def description(self, text: str) -> str:
        if not self.meant_for:
            return text
        return f"{self.meant_for}\n\n{text}" if text else self.meant_for


class Owners:
    """One connector's resolution. `people` is set by `attach` where the process loads
    people.yaml (None: only the connector's own `owners:` map)."""

    def __init__(
        self,
        connector: str,
        vendor: str,
        owners: Mapping[str, str],
        fallback: str | None,
        lookup: Lookup,
        is_user_id: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector = connector
        self.vendor = vendor  # "Salesforce": how people read it
        self.owners = dict(owners)
        self.fallback = fallback
        self.people: People | None = None
        self._lookup = lookup
        self._is_user_id = is_user_id
        self._clock = clock
        self._cache: dict[str, tuple[UserMatch, float]] = {}
        self._asking: dict[str, threading.Lock] = {}  # one look-up per e-mail at a time
        self._lock = threading.Lock()

    # -- resolution ----------------------------------------------------------------------
    def resolve(self, person_id: str) -> Resolution:
        """The person's user id at the vendor, and where it came from; never the fallback.
        A vendor that cannot answer raises its ConnectorError (retried, not a miss)."""
        person = self.people.get(person_id) if self.people is not None else None
        name = person.name if person is not None else ""
        if not person_id:
            return Resolution("", "", None, reason="the account has no owner and no manager")
        if person_id in self.owners:
            return Resolution(person_id, name, self.owners[person_id], "owners")
        if person is None:
            where = "people.yaml" if self.people is not None else "owners: (no people.yaml)"
            return Resolution(person_id, "", None, reason=f"{person_id} is not in {where}")
        if person.crm_ids.get(self.connector):
            return Resolution(person_id, name, person.crm_ids[self.connector], "crm_ids")
        if not person.email:
            return Resolution(
                person_id, name, None, reason="people.yaml gives them no email and no crm_ids"
            )
        match = self.by_email(person.email)
        if match.user_id is None:
            return Resolution(person_id, name, None, reason=match.why)
        return Resolution(person_id, name, match.user_id, "email")

    def by_email(self, email: str) -> UserMatch:
        key = email.strip().lower()
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._lock:
            asking = self._asking.setdefault(key, threading.Lock())
        with asking:  # a second thread waits for the first one's answer
            cached = self._cached(key)
            if cached is not None:
                return cached
            match = self._lookup(email.strip())
            found = match.user_id or f"nobody ({match.why})"
            log.info("%s: the user with the e-mail %s is %s", self.connector, email, found)
            ttl = FOUND_TTL if match.user_id is not None else MISSING_TTL
            with self._lock:
                self._cache[key] = (match, self._clock() + ttl)
            return match

    def _cached(self, key: str) -> UserMatch | None:
        with self._lock:
            found = self._cache.get(key)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def fallback_owner(self) -> Resolution | None:
        """The configured fallback: a person (resolved as any person is), else a user id
        of the vendor's own; None when none is configured."""
        value = self.fallback
        if value is None:
            return None
        if value in self.owners or (self.people is not None and self.people.get(value)):
            return self.resolve(value)
        if self._is_user_id(value):
            return Resolution(value, "", value, "fallback_owner")
        return Resolution(
            value,
            "",
            None,
            reason=f"fallback_owner '{value}' is neither a person in people.yaml nor a "
            f"{self.vendor} user id",
        )

    # -- at run time ---------------------------------------------------------------------
    def assign(self, request: TaskRequest, operation: str = "create_task") -> Owner:
        """Whom `request`'s task goes to; UnresolvedOwnerError (a dead letter) when nobody
        can take it."""
        found = self.resolve(request.assignee)
        if found.user_id is not None:
            return Owner(found.user_id, found.source)
        fallback = self.fallback_owner()
        if fallback is None or fallback.user_id is None:
            metrics.OWNER_UNRESOLVED.labels(self.connector, "refused").inc()
            raise UnresolvedOwnerError(
                self.connector, operation, self._problem(found, request, fallback)
            )
        metrics.OWNER_UNRESOLVED.labels(self.connector, "fallback").inc()
        meant = self._meant_for(found, request)
        target = fallback.name or f"{self.vendor} user {fallback.user_id}"
        log.warning(
            "%s: %s; task %s goes to the fallback owner %s",
            self.connector,
            meant,
            request.idempotency_key,
            target,
        )
        note = f"{meant}. Assigned to {target}, the fallback owner of this connector."
        return Owner(fallback.user_id, "fallback_owner", meant_for=note)

    def _meant_for(self, found: Resolution, request: TaskRequest) -> str:
        if not found.person:
            return f"Meant for the owner of {request.account.name}, who has none"
        who = f"{found.name} ({found.person})" if found.name else found.person
        return f"Meant for {who}, who has no {self.vendor} user: {found.reason}"

    def _problem(self, found: Resolution, request: TaskRequest, fallback: Resolution | None) -> str:
        if not found.person:
            said = (
                f"account {request.account.name} has no owner and no manager to give the "
                "task to: set its owner"
            )
        else:
            ids = f"crm_ids.{self.connector} or an email {self.vendor} knows"
            add = (
                f"add {ids} to people.yaml" if found.name else f"add them to people.yaml with {ids}"
            )
            said = f"{found.who} has no {self.vendor} user: {found.reason}; {add}"
        if fallback is None:
            return said + ", or set fallback_owner in the connector's file"
        return said + f"; the fallback owner cannot take it either ({fallback.reason})"


def attach(connector: object, people: People | None) -> None:
    """Give a connector that assigns tasks (Salesforce, Zendesk, HubSpot) the people
    directory its `owners` resolve through."""
    found = getattr(connector, "owners", None)
    if isinstance(found, Owners):
        found.people = people


@dataclass(frozen=True)
class Survey:
    """`csauto connectors check`: every person of people.yaml, resolved or not, and the
    fallback owner (None when none is configured)."""

    people: list[Resolution]
    fallback: Resolution | None


def survey(owners: Owners, people: People | None) -> Survey:
    """Resolve everyone in `people` (a vendor that cannot answer raises ConnectorError)."""
    everyone = people.people if people is not None else []
    return Survey([owners.resolve(p.id) for p in everyone], owners.fallback_owner())
