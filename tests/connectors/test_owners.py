"""Whom a vendor task goes to: the connector's owners: map, then people.yaml's crm_ids, then
the person's e-mail looked up at the vendor (once, then cached), through the real vendor
clients against the HTTPS fakes; someone nobody can resolve is the fallback owner's, with a
note, or a dead letter naming them, never the integration user's."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from csautomation import metrics
from csautomation.connectors.base import TaskRequest
from csautomation.connectors.loader import load_connectors, vendor
from csautomation.connectors.owners import (
    FOUND_TTL,
    MISSING_TTL,
    Owners,
    UnresolvedOwnerError,
    UserMatch,
    attach,
)
from csautomation.errors import ConnectorUnavailableError
from csautomation.escalation.people import People
from factories import account
from fakes.vendors import SF_KEY, Vendors, shipped_user_id

VENDORS = ("salesforce", "zendesk", "hubspot")
LABEL = {"salesforce": "Salesforce", "zendesk": "Zendesk", "hubspot": "HubSpot"}
DUE = datetime(2030, 3, 4, 9, 30, tzinfo=UTC)


def person(pid: str, name: str, email: str, **ids: Any) -> dict[str, Any]:
    return {"id": pid, "name": name, "role": "csm", "email": email, "crm_ids": ids}


# the shipped people.yaml's e-mails are the fakes' users; Dana Ruiz is nobody's user
PEOPLE = People.model_validate(
    {
        "people": [
            person(
                "csm-01",
                "Priya Raman",
                "priya.raman@example.com",
                salesforce="005000000000091AAA",
                zendesk=360000000091,
                hubspot=12345991,
            ),
            person(
                "csm-02",
                "Tom Becker",
                "tom.becker@example.com",
                salesforce="005000000000092AAA",
                zendesk=360000000092,
                hubspot=12345992,
            ),
            person("csm-07", "Sofia Rossi", "Sofia.Rossi@example.com"),
            person("csm-20", "Dana Ruiz", "dana.ruiz@example.com"),
            person("ops-01", "CS Ops on call", "cs-ops@example.com"),
        ]
    }
)


def task(assignee: str, key: str = "playbook:r1:ACME:2030-03:call") -> TaskRequest:
    return TaskRequest(
        idempotency_key=key,
        workflow_id=key.rsplit(":", 1)[0],
        step_id="call",
        account=account(),
        assignee=assignee,
        subject="Call Acme about renewal",
        description="Usage fell 40% in 30 days.",
        due_at=DUE,
        priority="high",
    )


BUILT: list[Any] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while BUILT:
        BUILT.pop().close()


def build(vendors: Vendors, tmp_path: Path, name: str, **common: Any) -> Any:
    folder = tmp_path / "connectors"
    if not folder.exists():
        vendors.write_configs(folder, **common)
    config = load_connectors([folder])[name]
    made = vendor(config, vendors.credentials(), vendors.ca_file(tmp_path))
    BUILT.append(made)
    attach(made, PEOPLE)
    return made


def made(vendors: Vendors, name: str, key: str) -> tuple[str, str]:
    """(the vendor user id the task was given to, its description) as the vendor holds it."""
    if name == "salesforce":
        t = vendors.salesforce.task_by(SF_KEY, key)
        assert t is not None
        return t["OwnerId"], t["Description"]
    if name == "zendesk":
        [ticket] = [t for t in vendors.zendesk.tickets.values() if t["external_id"] == key]
        return str(ticket["assignee_id"]), ticket["description"]
    [hs] = [t for t in vendors.hubspot.tasks if t["properties"].get("csauto_key") == key]
    return hs["properties"]["hubspot_owner_id"], hs["properties"]["hs_task_body"]


def lookups(vendors: Vendors, name: str) -> list[str]:
    """The user look-ups the vendor was sent, as it read them."""
    if name == "salesforce":
        return [q for q in vendors.salesforce.soql if " FROM User WHERE Email" in q]
    if name == "zendesk":
        found = vendors.zendesk.calls("GET", "/api/v2/users/search.json")
        return [r.query["query"][0] for r in found]
    return [r.query["email"][0] for r in vendors.hubspot.calls("GET", "/crm/v3/owners")]


def creates(vendors: Vendors, name: str) -> int:
    if name == "salesforce":
        return len(vendors.salesforce.tasks)
    return len(vendors.zendesk.tickets if name == "zendesk" else vendors.hubspot.tasks)


@pytest.mark.parametrize("name", VENDORS)
def test_an_email_is_looked_up_once_and_each_task_goes_to_that_user(
    vendors: Vendors, tmp_path: Path, name: str
) -> None:
    connector = build(vendors, tmp_path, name)
    for n in (1, 2):
        connector.create_task(task("csm-07", key=f"playbook:r1:ACME:2030-03:call{n}"))
    for n in (1, 2):
        assert made(vendors, name, f"playbook:r1:ACME:2030-03:call{n}") == (
            shipped_user_id("csm-07", name),
            "Usage fell 40% in 30 days.",
        )
    wanted = {
        "salesforce": "SELECT Id, IsActive FROM User WHERE Email = 'Sofia.Rossi@example.com'",
        "zendesk": "email:Sofia.Rossi@example.com",
        "hubspot": "Sofia.Rossi@example.com",
    }
    assert lookups(vendors, name) == [wanted[name]]  # once, for both tasks


@pytest.mark.parametrize("name", VENDORS)
def test_the_connectors_owners_map_wins_over_crm_ids_which_win_over_the_email(
    vendors: Vendors, tmp_path: Path, name: str
) -> None:
    connector = build(vendors, tmp_path, name)  # owners: {csm-01: ...} in its file
    connector.create_task(task("csm-01", key="k:1"))
    connector.create_task(task("csm-02", key="k:2"))
    mapped = {"salesforce": "0055g00000AbCdEAAV", "zendesk": "7001", "hubspot": "75001"}
    assert made(vendors, name, "k:1")[0] == mapped[name]
    assert made(vendors, name, "k:2")[0] == PEOPLE.people[1].crm_ids[name]
    assert lookups(vendors, name) == []
    said = {p: connector.owners.resolve(p).source for p in ("csm-01", "csm-02", "csm-07")}
    assert said == {"csm-01": "owners", "csm-02": "crm_ids", "csm-07": "email"}


@pytest.mark.parametrize("name", VENDORS)
def test_someone_the_vendor_does_not_know_is_a_dead_letter_naming_them_and_the_vendor(
    vendors: Vendors, tmp_path: Path, name: str
) -> None:
    connector = build(vendors, tmp_path, name)
    refused = metrics.OWNER_UNRESOLVED.labels(name, "refused")
    before = refused._value.get()
    with pytest.raises(UnresolvedOwnerError) as caught:
        connector.create_task(task("csm-20"))
    assert not caught.value.retryable
    assert caught.value.message == (
        f"csm-20 (Dana Ruiz) has no {LABEL[name]} user: no {LABEL[name]} user has the e-mail "
        f"dana.ruiz@example.com; add crm_ids.{name} or an email {LABEL[name]} knows to "
        "people.yaml, or set fallback_owner in the connector's file"
    )
    assert creates(vendors, name) == 0
    assert refused._value.get() == before + 1


@pytest.mark.parametrize("name", VENDORS)
def test_a_fallback_owner_takes_the_task_says_whom_it_was_meant_for_and_is_counted(
    vendors: Vendors, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    connector = build(vendors, tmp_path, name, fallback_owner="ops-01")
    counted = metrics.OWNER_UNRESOLVED.labels(name, "fallback")
    before = counted._value.get()
    with caplog.at_level(logging.WARNING, logger="csautomation.connectors.owners"):
        connector.create_task(task("csm-20"))
    owner, description = made(vendors, name, "playbook:r1:ACME:2030-03:call")
    assert owner == shipped_user_id("ops-01", name)
    assert description == (
        f"Meant for Dana Ruiz (csm-20), who has no {LABEL[name]} user: no {LABEL[name]} user "
        "has the e-mail dana.ruiz@example.com. Assigned to CS Ops on call, the fallback "
        "owner of this connector.\n\nUsage fell 40% in 30 days."
    )
    assert counted._value.get() == before + 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "Dana Ruiz (csm-20)" in caplog.records[0].getMessage()


@pytest.mark.parametrize("name", VENDORS)
def test_a_fallback_owner_may_be_the_vendors_own_user_id(
    vendors: Vendors, tmp_path: Path, name: str
) -> None:
    raw = {"salesforce": "005000000000777AAA", "zendesk": "360000000777", "hubspot": "12399999"}
    connector = build(vendors, tmp_path, name, fallback_owner=raw[name])
    connector.create_task(task(""))  # an account with no owner and no manager
    owner, description = made(vendors, name, "playbook:r1:ACME:2030-03:call")
    assert owner == raw[name]
    assert description.startswith(
        f"Meant for the owner of Acme, who has none. Assigned to {LABEL[name]} user {raw[name]}"
    )


@pytest.mark.parametrize("name", VENDORS)
def test_a_fallback_owner_that_is_nobody_is_refused_with_both_reasons(
    vendors: Vendors, tmp_path: Path, name: str
) -> None:
    connector = build(vendors, tmp_path, name, fallback_owner="ops-1")
    with pytest.raises(UnresolvedOwnerError) as caught:
        connector.create_task(task("csm-20"))
    assert caught.value.message.endswith(
        f"; the fallback owner cannot take it either (fallback_owner 'ops-1' is neither a "
        f"person in people.yaml nor a {LABEL[name]} user id)"
    )
    assert creates(vendors, name) == 0


@pytest.mark.parametrize(
    ("name", "why"),
    [("salesforce", "is inactive"), ("zendesk", "is an end-user, not an agent"),
     ("hubspot", "is archived")],
)  # fmt: skip
def test_a_user_who_cannot_own_a_task_is_not_chosen(
    vendors: Vendors, tmp_path: Path, name: str, why: str
) -> None:
    email = "dana.ruiz@example.com"
    if name == "salesforce":
        vendors.salesforce.add_user(email, "Dana Ruiz", active=False)
    elif name == "zendesk":
        vendors.zendesk.add_user(email, "Dana Ruiz", role="end-user")
    else:  # HubSpot lists archived owners only when asked: the fake answers as it does
        vendors.hubspot.add_owner(email, "Dana Ruiz", archived=True)
    found = build(vendors, tmp_path, name).owners.resolve("csm-20")
    assert found.user_id is None
    if name == "hubspot":
        assert found.reason == "no HubSpot user has the e-mail dana.ruiz@example.com"
    else:
        assert found.reason == f"the {LABEL[name]} user with the e-mail {email} {why}"


def test_two_salesforce_users_with_one_email_are_not_guessed_between(
    vendors: Vendors, tmp_path: Path
) -> None:
    vendors.salesforce.add_user("dana.ruiz@example.com", "Dana Ruiz")
    vendors.salesforce.add_user("DANA.RUIZ@example.com", "Dana Ruiz (2)")
    found = build(vendors, tmp_path, "salesforce").owners.resolve("csm-20")
    assert found.user_id is None
    assert (
        found.reason
        == "2 Salesforce users have the e-mail dana.ruiz@example.com; crm_ids names one"
    )


def test_a_quote_in_an_email_is_escaped_in_the_soql(vendors: Vendors, tmp_path: Path) -> None:
    uid = vendors.salesforce.add_user("o'neil@example.com", "Pat O'Neil")
    connector = build(vendors, tmp_path, "salesforce")
    assert connector.owners.by_email("o'neil@example.com") == UserMatch(uid)
    assert lookups(vendors, "salesforce") == [
        "SELECT Id, IsActive FROM User WHERE Email = 'o\\'neil@example.com'"
    ]


@pytest.mark.parametrize("name", VENDORS)
def test_a_vendor_that_cannot_answer_is_retried_not_taken_for_a_missing_user(
    vendors: Vendors, tmp_path: Path, name: str
) -> None:
    connector = build(vendors, tmp_path, name)
    connector.check()  # logged in while the vendor is up
    fake = {"salesforce": vendors.salesforce, "zendesk": vendors.zendesk}.get(name, vendors.hubspot)
    fake.down = True
    with pytest.raises(ConnectorUnavailableError) as caught:
        connector.create_task(task("csm-07"))
    assert caught.value.retryable
    fake.down = False
    connector.create_task(task("csm-07"))
    assert made(vendors, name, "playbook:r1:ACME:2030-03:call")[0] == shipped_user_id(
        "csm-07", name
    )


def test_the_cache_keeps_a_user_an_hour_and_a_miss_five_minutes() -> None:
    now = [0.0]
    answers = {"a@example.com": UserMatch("U1"), "b@example.com": UserMatch(None, "none")}
    asked: list[str] = []

    def lookup(email: str) -> UserMatch:
        asked.append(email)
        return answers[email.lower()]

    owners = Owners("crm", "Vendor", {}, None, lookup, str.isdigit, clock=lambda: now[0])
    for _ in range(3):
        assert owners.by_email("A@example.com") == UserMatch("U1")  # any case: one entry
        assert owners.by_email("b@example.com").user_id is None
    assert asked == ["A@example.com", "b@example.com"]
    now[0] = MISSING_TTL + 1
    owners.by_email("a@example.com"), owners.by_email("b@example.com")
    assert asked == ["A@example.com", "b@example.com", "b@example.com"]
    now[0] = FOUND_TTL + 1
    owners.by_email("a@example.com")
    assert asked[-1] == "a@example.com" and len(asked) == 4
