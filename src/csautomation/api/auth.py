"""Who may sign in to the review pages and API, and what each person sees and does.

Sign-in comes from the people directory (people.yaml): only people with `sign_in` can.
  - pages: person id (or email) and password, checked against the argon2 hash; the
    session is a cookie signed with CSAUTO_SESSION_SECRET (unset: a random key for this
    process, so sessions end when it stops). The cookie carries a stamp of the password
    hash and of the person's session generation (in the store), compared on every
    request: a new password, signing out and `csauto people revoke` end every session of
    that person at once, copies of the cookie included.
  - failed sign-ins make that person at that address, and (after many more) that address,
    wait longer each time (`Throttle`); an id and its email are one person. Never a lock:
    the right password from another address is not held by someone else's guesses.
  - API: `Authorization: Bearer <token>`, its SHA-256 compared with each listed digest
    in constant time. The API takes no cookie, so it needs no CSRF token.

What a role sees and does:
  admin                    every escalation; acts on all of them
  manager, director, vp    escalations whose team is one of theirs (`Person.all_teams`);
                           acts on those, reassigning only to people of those teams
  csm, ops                 only the escalations they hold now, read-only: an escalation
                           exists to reach past its holder, so the holder acknowledging it
                           would stop the climb to their manager
An escalation with no team is seen by admins only. One outside a person's scope answers
as a missing one does (404), so the answer does not tell that it exists.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from pydantic import SecretStr

from csautomation import logs
from csautomation.api.errors import NotSignedInError
from csautomation.errors import ConfigError
from csautomation.escalation.people import People, Person
from csautomation.store import signins
from csautomation.store.repo import Store
from csautomation.workflows.types import EscalationState

log = logging.getLogger(__name__)

SESSION_SECRET_ENV = "CSAUTO_SESSION_SECRET"
MANAGER_ROLES = frozenset({"manager", "director", "vp"})
MIN_PASSWORD = 8
CLIENT_FREE_FAILURES = 20  # failures from one address before it waits
# and at most this long: many people may share an address (a proxy, an office), and one of
# them failing on purpose must not hold the others for long
CLIENT_MAX_WAIT = 30.0
_MIN_SECRET = 32


# -- credentials --------------------------------------------------------------------------
def token_digest(token: str) -> str:
    """What people.yaml keeps of an API token (`api_token_sha256`)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> tuple[str, str]:
    """A fresh API token and its digest for people.yaml."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    return (hasher or PasswordHasher()).hash(password)


def prompt_password_hash(
    ask: Callable[[str], str] | None = None, hasher: PasswordHasher | None = None
) -> str:
    """Ask for a password twice (without echo) and return its argon2 hash; ValueError
    when the two differ or it is too short."""
    ask = ask or getpass.getpass
    first = ask("Password: ")
    if len(first) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    if ask("Again: ") != first:
        raise ValueError("the passwords differ")
    return hash_password(first, hasher)


def hash_password_command() -> None:
    """Prompt for a password and print its argon2 hash, for `sign_in.password_hash` in
    people.yaml (`csauto people hash-password`)."""
    try:
        print(prompt_password_hash())
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def session_secret(configured: SecretStr | None) -> str:
    """The key that signs session cookies: CSAUTO_SESSION_SECRET (Settings), never a file."""
    value = configured.get_secret_value().strip() if configured else ""
    if value:
        if len(value) < _MIN_SECRET:
            raise ConfigError(
                f"{SESSION_SECRET_ENV} must be at least {_MIN_SECRET} characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        logs.register(value)
        return value
    log.warning(
        "%s is not set: sessions are signed with a random key and end when this process stops",
        SESSION_SECRET_ENV,
    )
    return _process_key()


@cache
def _process_key() -> str:
    key = secrets.token_urlsafe(32)
    logs.register(key)
    return key


def session_stamp(person: Person) -> str:
    """Changes when the person's password hash does: a new password ends old sessions."""
    pw = person.sign_in.password_hash if person.sign_in else ""
    return hashlib.sha256(pw.encode()).hexdigest()[:16]


class Throttle:
    """Failed sign-ins per key: the first `free` cost nothing; each one after them makes
    the key wait twice as long as the one before (2, 4, 8 ... seconds, at most `cap`)
    before its next try. A key's failures are forgotten `forget` seconds after its last
    one, or when it signs in. Never a lock: the wait always ends, and it holds only for
    the keys that failed (a person from one address), so no one can shut another out."""

    def __init__(
        self,
        free: int = 3,
        cap: float = 300.0,
        forget: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.cap, self.forget, self.clock = free, cap, forget, clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures, last at)
        self._lock = threading.Lock()

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row."""
        if failures <= self.free:
            return 0.0
        return float(min(self.cap, 2.0 ** min(failures - self.free, 32)))

    def wait(self, *keys: str) -> float:
        """Seconds before these keys may try again; 0 when they may now."""
        now = self.clock()
        longest = 0.0
        with self._lock:
            for key in keys:
                failures, last = self._failures.get(key, (0, now))
                if now - last >= self.forget:
                    self._failures.pop(key, None)
                    continue
                longest = max(longest, last + self.delay(failures) - now)
        return longest

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                failures, last = self._failures.get(key, (0, now))
                fresh = now - last >= self.forget
                self._failures[key] = (1 if fresh else failures + 1, now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class Authenticator:
    """Checks passwords, tokens and sessions against the people directory. A session
    holds the person's stamp: their password hash's and their session generation, kept in
    `store` (without one, in this process): raising the generation (`end_sessions`: sign-out,
    `csauto people revoke`) ends every session of theirs at the next request."""

    def __init__(
        self,
        people: People,
        hasher: PasswordHasher | None = None,
        throttle: Throttle | None = None,
        clients: Throttle | None = None,
        store: Store | None = None,
    ) -> None:
        self.people = people
        self.hasher = hasher or PasswordHasher()
        self.throttle = throttle or Throttle()  # per person and address: guessing one password
        # per address, looser: behind a proxy many people share one address
        self.clients = clients or Throttle(free=CLIENT_FREE_FAILURES, cap=CLIENT_MAX_WAIT)
        self.store = store
        self._generations: dict[str, int] = {}  # without a store
        # an unknown login is checked against this, so it takes as long as a known one
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    def attempt_keys(self, login: str, address: str) -> tuple[str, str]:
        """The throttle's keys of a sign-in: (person at address, address). A person's id
        and email are one key, so an alias gives no further tries."""
        person = self._find(login.strip())
        who = person.id if person is not None else login.strip().lower()
        return f"{who}|{address}", address

    def sign_in(self, login: str, password: str) -> Person | None:
        """The person whose id or email is `login`, when the password is theirs."""
        person = self._find(login.strip())
        stored = person.sign_in.password_hash if person and person.sign_in else ""
        try:
            self.hasher.verify(stored or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return None
        return person if stored else None

    def from_token(self, token: str) -> Person | None:
        digest = token_digest(token)
        found: Person | None = None
        for person in self.people.people:
            if person.sign_in is None:
                continue
            for known in person.sign_in.api_token_sha256:
                if hmac.compare_digest(known.strip().lower(), digest):
                    found = person
        return found

    def caller(self, request: Request) -> Person:
        """The dependency of every token-authenticated API route: the person whose API
        token the request bears (`Authorization: Bearer <token>`)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotSignedInError("send 'Authorization: Bearer <token>'")
        person = self.from_token(token.strip())
        if person is None:
            raise NotSignedInError("unknown API token")
        return person

    def from_session(self, person_id: object, stamp: object) -> Person | None:
        """The signed-in person, while they may still sign in with the same password and
        their sessions have not been ended since this one began."""
        if not isinstance(person_id, str) or not isinstance(stamp, str):
            return None
        person = self.people.get(person_id)
        if person is None or person.sign_in is None or not person.sign_in.password_hash:
            return None
        return person if hmac.compare_digest(self.stamp(person), stamp) else None

    def signed_in(self, session: Mapping[str, Any]) -> Person:
        """The person a page's session belongs to; NotSignedInError (401, or the sign-in
        page) when it holds none or was ended."""
        person = self.from_session(session.get("user"), session.get("stamp"))
        if person is None:
            raise NotSignedInError("sign in first")
        return person

    def stamp(self, person: Person) -> str:
        """What a new session of `person` keeps, to be compared on every request."""
        return f"{session_stamp(person)}.{self.generation(person.id)}"

    def generation(self, person_id: str) -> int:
        if self.store is None:
            return self._generations.get(person_id, 0)
        return signins.generation(self.store, person_id)

    def end_sessions(self, person_id: str) -> None:
        """Every session of the person ends now (committed before this returns)."""
        if self.store is None:
            self._generations[person_id] = self._generations.get(person_id, 0) + 1
        else:
            signins.end_sessions(self.store, person_id)

    def _find(self, login: str) -> Person | None:
        if not login:
            return None
        found = self.people.get(login)
        if found is not None:
            return found
        wanted = login.lower()
        return next((p for p in self.people.people if p.email and p.email.lower() == wanted), None)


# -- visibility ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """The escalations one person sees, and whether they may act on them."""

    teams: tuple[str, ...] | None  # None: every team
    holder: str | None  # only the escalations this person holds
    acts: bool

    def sees(self, state: EscalationState) -> bool:
        if self.teams is not None and state.team not in self.teams:
            return False
        return self.holder is None or state.holder == self.holder

    def may_act(self, state: EscalationState) -> bool:
        return self.acts and self.sees(state)


def scope_of(person: Person) -> Scope:
    if person.role == "admin":
        return Scope(teams=None, holder=None, acts=True)
    if person.role in MANAGER_ROLES:
        return Scope(teams=tuple(person.all_teams), holder=None, acts=True)
    return Scope(teams=None, holder=person.id, acts=False)
