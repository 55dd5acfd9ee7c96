"""ZendeskTicketing through the real zenpy against a fake Zendesk over HTTPS: shapes,
exactly-once creates, completion sync, error mapping and injected faults."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csautomation import logs
from csautomation.connectors.base import TaskRequest
from csautomation.connectors.config import RateLimit, ZendeskConfig
from csautomation.connectors.owners import UnresolvedOwnerError
from csautomation.connectors.zendesk import ZendeskTicketing
from csautomation.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from factories import account
from fakes.server import Faults
from fakes.zendesk import FakeZendesk

DUE = datetime(2030, 3, 4, 9, 30, tzinfo=UTC)
KEY = "playbook:r1:ACME:2030-03:call"


def task(key: str = KEY, **extra: Any) -> TaskRequest:
    values: dict[str, Any] = {
        "idempotency_key": key,
        "workflow_id": "playbook:r1:ACME:2030-03",
        "step_id": "call",
        "account": account(),
        "assignee": "csm-01",
        "subject": "Call Acme about renewal",
        "description": "Usage fell 40% in 30 days.",
        "due_at": DUE,
        "priority": "critical",
    }
    return TaskRequest(**(values | extra))


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    with FakeZendesk() as server:
        assert isinstance(server, FakeZendesk)
        yield server


@pytest.fixture
def make(fake: FakeZendesk, tmp_path: Path) -> Iterator[Any]:
    made: list[ZendeskTicketing] = []
    ca = fake.ca_file(tmp_path)

    def build(env: dict[str, str] | None = None, **config: Any) -> ZendeskTicketing:
        cfg = ZendeskConfig.model_validate(
            {
                "id": "zendesk",
                "type": "zendesk",
                "url": fake.url,
                "auth": {"email_env": "ZD_EMAIL", "token_env": "ZD_TOKEN"},
                "owners": {"csm-01": 7001},
                "timeout": "0.5s",
            }
            | config
        )
        creds = {"ZD_EMAIL": fake.email, "ZD_TOKEN": fake.token}
        connector = ZendeskTicketing(cfg, creds if env is None else env, verify=ca)
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()


def creates(fake: FakeZendesk) -> list[dict[str, Any]]:
    return [r.json()["ticket"] for r in fake.calls("POST", "/api/v2/tickets.json")]


def test_creates_a_ticket_with_mapped_fields(fake: FakeZendesk, make: Any) -> None:
    org = fake.add_organization("ACME")
    receipt = make(group_id=44).create_task(task())
    assert receipt.connector == "zendesk" and receipt.created
    [sent] = creates(fake)
    assert sent == {
        "subject": "Call Acme about renewal",
        "comment": {"body": "Usage fell 40% in 30 days.", "public": False},
        "external_id": KEY,
        "type": "task",
        "due_at": "2030-03-04T09:30:00Z",
        "priority": "urgent",
        "assignee_id": 7001,
        "group_id": 44,
        "organization_id": org,
    }
    assert fake.tickets[int(receipt.record_id)]["status"] == "new"


def test_priorities_map_and_a_missing_org_is_left_out(fake: FakeZendesk, make: Any) -> None:
    make(priorities={"high": "urgent"}).create_task(task(priority="high"))
    [sent] = creates(fake)
    assert sent["priority"] == "urgent" and sent["assignee_id"] == 7001
    assert {"organization_id", "group_id"}.isdisjoint(sent)


def test_an_unknown_owner_is_refused_never_an_unassigned_ticket(
    fake: FakeZendesk, make: Any
) -> None:
    with pytest.raises(UnresolvedOwnerError, match="nobody has no Zendesk user") as caught:
        make().create_task(task(assignee="nobody"))
    assert not caught.value.retryable
    assert creates(fake) == []


def test_same_key_twice_creates_one_ticket(fake: FakeZendesk, make: Any) -> None:
    zendesk = make()
    first, second = zendesk.create_task(task()), zendesk.create_task(task())
    assert first.created and not second.created
    assert first.record_id == second.record_id
    assert len(fake.tickets) == 1
    other = zendesk.create_task(task("playbook:r1:ACME:2030-03:email & more"))
    assert other.created and len(fake.tickets) == 2  # a key with '&' survives the query


def test_a_create_whose_answer_was_lost_is_answered_from_the_idempotency_key(
    fake: FakeZendesk, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look-up can miss a ticket whose create is still in flight (its answer lost to a
    timeout): Zendesk's Idempotency-Key then answers the retry with the first ticket."""
    zendesk = make()
    monkeypatch.setattr(zendesk, "_existing", lambda _key: None)
    first = zendesk.create_task(task())
    again = zendesk.create_task(task())
    assert len(fake.tickets) == 1
    assert again.record_id == first.record_id
    posts = list(fake.calls("POST", "/api/v2/tickets.json"))
    assert [p.headers["idempotency-key"] for p in posts] == [KEY, KEY]
    other = task(subject="Another subject")  # the same key with another body is refused
    with pytest.raises(ConnectorValidationError, match="IdempotentRequestError"):
        zendesk.create_task(other)
    zendesk.check()  # a GET outside a create carries no key
    assert "idempotency-key" not in fake.requests[-1].headers


def test_activity_threads_each_get_their_own_zenpy_on_one_session(
    fake: FakeZendesk, make: Any
) -> None:
    """zenpy clears the object a create is serializing whenever any response on that
    endpoint is processed: on a shared client a lookup finishing on another thread
    stripped a ticket's comment (CI: a 422 "Description: cannot be blank" dead letter)."""
    zendesk = make()
    clients: dict[str, Any] = {}

    def create(n: int) -> None:
        clients[f"thread-{n}"] = zendesk._zenpy()
        for i in range(8):
            zendesk.create_task(task(f"{KEY}:{n}:{i}", description=""))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients.values()}) == 8
    assert len({id(c.users.session) for c in clients.values()}) == 1  # one connection pool
    assert len(fake.tickets) == 64
    assert all(t["description"] == "Call Acme about renewal" for t in fake.tickets.values())
    zendesk.close()
    zendesk.check()  # a closed connector opens a new session on next use


def test_completion_sync_returns_solved_tickets_keys(fake: FakeZendesk, make: Any) -> None:
    zendesk = make()
    done = zendesk.create_task(task())
    zendesk.create_task(task("playbook:r1:ACME:2030-03:other"))  # still open
    solved_at = datetime.now(UTC).replace(microsecond=0)
    fake.solve(int(done.record_id), at=solved_at)
    [completion] = zendesk.completed_since(solved_at - timedelta(hours=1))
    assert completion.record_id == done.record_id
    assert completion.idempotency_key == KEY
    assert completion.completed_at == solved_at
    [export] = fake.calls("GET", "/api/v2/incremental/tickets.json")
    assert export.query["start_time"] == [str(int(solved_at.timestamp()) - 3600)]


def test_check_names_the_user(fake: FakeZendesk, make: Any) -> None:
    assert make().check() == f"authenticated as CS Automation <{fake.email}>"


def test_check_refuses_an_anonymous_answer(fake: FakeZendesk, make: Any) -> None:
    fake.anonymous = True
    with pytest.raises(ConnectorAuthError, match="anonymous"):
        make().check()


def test_wrong_token_is_an_auth_error(fake: FakeZendesk, make: Any) -> None:
    with pytest.raises(ConnectorAuthError) as info:
        make(env={"ZD_EMAIL": fake.email, "ZD_TOKEN": "wrong-token-123"}).create_task(task())
    assert info.value.status == 401
    assert "Couldn't authenticate you" in str(info.value)
    assert "wrong-token-123" not in str(info.value)


def test_missing_variable_is_a_permanent_auth_error(make: Any) -> None:
    with pytest.raises(ConnectorAuthError) as info:
        make(env={"ZD_EMAIL": "csauto@example.com"}).create_task(task())
    assert "ZD_TOKEN" in str(info.value)
    assert info.value.retryable is False


def test_record_invalid_is_a_validation_error(make: Any) -> None:
    with pytest.raises(ConnectorValidationError) as info:
        make().create_task(task(subject=""))
    assert info.value.status == 422
    assert info.value.retryable is False
    assert "Subject: cannot be blank" in str(info.value)


def test_rate_limit_comes_back_at_once(fake: FakeZendesk, make: Any) -> None:
    fake.faults = Faults(rate=1.0, kinds=("429",))
    began = time.monotonic()
    with pytest.raises(ConnectorRateLimitedError) as info:
        make().create_task(task())
    assert time.monotonic() - began < 0.9  # zenpy would have slept a second, then retried
    assert info.value.retry_after == 1.0
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", ["503", "500", "reset"])
def test_server_errors_and_resets_are_unavailable(fake: FakeZendesk, make: Any, kind: str) -> None:
    fake.faults = Faults(rate=1.0, kinds=(kind,))
    with pytest.raises(ConnectorUnavailableError) as info:
        make().check()
    assert info.value.retryable is True
    assert len(fake.requests) == 1  # no retries inside requests or zenpy
    if kind == "503":
        assert info.value.retry_after == 1.0
        assert "Something went wrong" in str(info.value)


def test_timeout_is_unavailable(fake: FakeZendesk, make: Any) -> None:
    fake.faults = Faults(rate=1.0, kinds=("timeout",))
    began = time.monotonic()
    with pytest.raises(ConnectorUnavailableError, match="Timeout"):
        make().completed_since(DUE)
    assert time.monotonic() - began < 1.5
    assert len(fake.requests) == 1


def test_vendor_down_is_unavailable(fake: FakeZendesk, make: Any) -> None:
    fake.down = True
    with pytest.raises(ConnectorUnavailableError):
        make().create_task(task())


def test_url_must_be_splittable(make: Any) -> None:
    with pytest.raises(ConnectorValidationError, match="url must be"):
        make(url="https://localhost:8443").check()


def test_token_and_email_never_appear_in_errors(fake: FakeZendesk, make: Any) -> None:
    seen: list[ConnectorError] = []
    fake.faults = Faults(rate=0.7, seed=7)
    zendesk = make()
    for i in range(12):
        try:
            zendesk.create_task(task(f"{KEY}:{i}"))
        except ConnectorError as exc:
            seen.append(exc)
    with pytest.raises(ConnectorError) as info:
        make(env={"ZD_EMAIL": fake.email, "ZD_TOKEN": fake.token + "x"}).check()
    seen.append(info.value)
    assert len(seen) > 3
    for exc in seen:
        for text in (str(exc), repr(exc), exc.message, str(exc.__cause__ or "")):
            assert fake.token not in text
            assert fake.email not in text


def test_a_create_is_two_requests_once_the_organization_is_known(
    fake: FakeZendesk, make: Any
) -> None:
    fake.add_organization("ACME")
    zendesk = make()
    zendesk.create_task(task(f"{KEY}:1"))
    first = [f"{r.method} {r.path}" for r in fake.requests]
    zendesk.create_task(task(f"{KEY}:2"))
    second = [f"{r.method} {r.path}" for r in fake.requests][len(first) :]
    # before: the organization was looked up for every ticket (3 requests a create)
    assert first == [
        "GET /api/v2/tickets.json",  # the key as external_id: a ticket made days ago
        "GET /api/v2/organizations/show_many.json",  # its organization, once
        "POST /api/v2/tickets.json",
    ]
    assert second == ["GET /api/v2/tickets.json", "POST /api/v2/tickets.json"]
    assert {t["organization_id"] for t in creates(fake)} == {next(iter(fake.organizations))}


def test_the_basic_credential_an_upstream_echoes_is_redacted(fake: FakeZendesk, make: Any) -> None:
    fake.echo_authorization = True
    basic = base64.b64encode(f"{fake.email}/token:{fake.token}".encode()).decode()
    with pytest.raises(ConnectorUnavailableError) as caught:
        make().create_task(task())
    said = "\n".join((str(caught.value), repr(caught.value), caught.value.message))
    assert caught.value.status == 502 and "upstream refused the request" in said
    assert basic not in said and fake.token not in said and "[redacted]" in said
    assert logs.mask(f"Authorization: Basic {basic}") == "Authorization: Basic ***"


def test_the_plan_sets_the_rate_limit_unless_one_is_given() -> None:
    base = {"id": "zendesk", "type": "zendesk", "subdomain": "acme"}
    base |= {"auth": {"email_env": "ZD_EMAIL", "token_env": "ZD_TOKEN"}}
    team = ZendeskConfig.model_validate(base | {"plan": "team"}).rate_limit
    assert team is not None and team.per_second == pytest.approx(200 / 60)
    default = ZendeskConfig.model_validate(base).rate_limit  # Professional: 400 a minute
    assert default is not None and default.per_second == pytest.approx(400 / 60)
    given = {"plan": "team", "rate_limit": {"per_second": 1, "burst": 2}}
    assert ZendeskConfig.model_validate(base | given).rate_limit == RateLimit(per_second=1, burst=2)
    assert ZendeskConfig.model_validate(base | {"rate_limit": None}).rate_limit is None
