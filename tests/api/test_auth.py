"""Sign-in against the people directory, what each role sees, the session key, and the
`csauto people hash-password` helper."""

from __future__ import annotations

import logging

import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr

from api.support import FAST, NOW, build_people, password, token
from csautomation.api import auth
from csautomation.api.auth import Authenticator, Scope, scope_of, session_stamp
from csautomation.errors import ConfigError
from csautomation.escalation.people import People, SignIn
from csautomation.store import signins
from csautomation.store.repo import Store
from csautomation.workflows.types import EscalationState


@pytest.fixture(scope="module")
def authn() -> Authenticator:
    return Authenticator(build_people(), FAST)


def test_passwords(authn: Authenticator) -> None:
    mia = authn.sign_in("mia", password("mia"))
    assert mia is not None and mia.id == "mia"
    assert authn.sign_in(" MIA@example.com ", password("mia")) is mia
    assert authn.sign_in("mia", password("noah")) is None
    assert authn.sign_in("nobody", password("mia")) is None
    assert authn.sign_in("carl", "") is None  # carl has no sign-in at all
    assert authn.sign_in("", "") is None


def test_a_broken_hash_refuses_rather_than_fails() -> None:
    people = build_people()
    broken = [
        p.model_copy(update={"sign_in": SignIn(password_hash="not-argon2")}) if p.id == "mia" else p
        for p in people.people
    ]
    authn = Authenticator(People(teams=people.teams, people=broken), FAST)
    assert authn.sign_in("mia", password("mia")) is None


def test_tokens(authn: Authenticator) -> None:
    assert authn.from_token(token("noah")).id == "noah"  # type: ignore[union-attr]
    assert authn.from_token(token("noah") + "x") is None
    assert authn.from_token("") is None
    fresh, digest = auth.new_api_token()
    assert len(fresh) >= 40 and auth.token_digest(fresh) == digest


def test_a_new_password_ends_old_sessions(authn: Authenticator) -> None:
    mia = authn.people.get("mia")
    assert mia is not None
    stamp = authn.stamp(mia)
    assert authn.from_session("mia", stamp) is mia
    assert authn.from_session("mia", "0" * 16) is None
    assert authn.from_session("mia", session_stamp(mia)) is None  # without its generation
    assert authn.from_session("carl", session_stamp(authn.people.get("carl"))) is None  # type: ignore[arg-type]
    assert authn.from_session(None, stamp) is None
    changed = mia.model_copy(
        update={"sign_in": SignIn(password_hash=FAST.hash("another-password"))}
    )
    assert authn.stamp(changed) != stamp


def test_ending_sessions_in_this_process() -> None:
    authn = Authenticator(build_people(), FAST)
    mia, noah = authn.people.get("mia"), authn.people.get("noah")
    assert mia is not None and noah is not None
    old, theirs = authn.stamp(mia), authn.stamp(noah)
    authn.end_sessions("mia")
    assert authn.from_session("mia", old) is None
    assert authn.from_session("mia", authn.stamp(mia)) is mia  # a new sign-in works
    assert authn.from_session("noah", theirs) is noah  # another person's go on


def test_ending_sessions_in_the_store_reaches_every_process(store: Store) -> None:
    # two apps over one store, as two processes: one ends the session, the other sees it
    people = build_people()
    here, there = (Authenticator(people, FAST, store=store) for _ in range(2))
    mia = here.people.get("mia")
    assert mia is not None
    stamp = here.stamp(mia)
    assert there.from_session("mia", stamp) is mia
    here.end_sessions("mia")
    assert there.from_session("mia", stamp) is None
    assert signins.generation(store, "mia") == 1 and signins.generation(store, "noah") == 0
    assert signins.end_sessions(store, "mia") == 2


def _state(team: str, holder: str) -> EscalationState:
    return EscalationState(
        workflow_id="w", account_id="a", severity="high", team=team, holder=holder, opened_at=NOW
    )


@pytest.mark.parametrize(
    ("who", "team", "holder", "sees", "acts"),
    [
        ("ada", "west", "carl", True, True),
        ("ada", "", "", True, True),
        ("mia", "east", "cara", True, True),
        ("mia", "west", "mia", False, False),  # holding it does not widen a manager's teams
        ("mia", "", "", False, False),
        ("dora", "west", "carl", True, True),
        ("cara", "east", "cara", True, False),
        ("cara", "east", "mia", False, False),
        ("otto", "east", "cara", False, False),
    ],
)
def test_scope(who: str, team: str, holder: str, sees: bool, acts: bool) -> None:
    person = build_people().get(who)
    assert person is not None
    scope = scope_of(person)
    assert isinstance(scope, Scope)
    assert scope.sees(_state(team, holder)) is sees
    assert scope.may_act(_state(team, holder)) is acts


def test_session_secret(caplog: pytest.LogCaptureFixture) -> None:
    key = "k" * 40
    assert auth.session_secret(SecretStr(key)) == key
    with pytest.raises(ConfigError, match="at least 32 characters"):
        auth.session_secret(SecretStr("short"))
    with caplog.at_level(logging.WARNING, logger="csautomation.api.auth"):
        first = auth.session_secret(None)
        second = auth.session_secret(SecretStr("  "))
    assert first == second and len(first) >= 32  # one random key per process
    assert "CSAUTO_SESSION_SECRET is not set" in caplog.text


def test_prompt_password_hash() -> None:
    answers = iter(["a-good-password", "a-good-password"])
    hashed = auth.prompt_password_hash(lambda _prompt: next(answers), FAST)
    assert FAST.verify(hashed, "a-good-password")
    with pytest.raises(ValueError, match="differ"):
        answers = iter(["a-good-password", "another-one"])
        auth.prompt_password_hash(lambda _prompt: next(answers), FAST)
    with pytest.raises(ValueError, match="at least 8"):
        auth.prompt_password_hash(lambda _prompt: "short", FAST)


def test_hash_password_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(auth.getpass, "getpass", lambda _prompt: "correct horse battery")
    auth.hash_password_command()
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$argon2id$")
    assert PasswordHasher().verify(printed, "correct horse battery")
    monkeypatch.setattr(auth.getpass, "getpass", lambda _prompt: "short")
    with pytest.raises(SystemExit, match="at least 8 characters"):
        auth.hash_password_command()


def test_an_address_waits_less_than_a_person_at_it() -> None:
    authn = Authenticator(build_people(), FAST)
    # many people share an address behind a proxy: its wait is capped low
    assert authn.clients.delay(auth.CLIENT_FREE_FAILURES + 20) == auth.CLIENT_MAX_WAIT == 30.0
    assert authn.throttle.delay(3 + 20) == 300.0
    assert authn.attempt_keys(" MIA@example.com", "10.0.0.1") == ("mia|10.0.0.1", "10.0.0.1")
    assert authn.attempt_keys("Nobody", "10.0.0.1") == ("nobody|10.0.0.1", "10.0.0.1")
