"""SalesforceCrm through the real simple-salesforce against a fake Salesforce over HTTPS:
shapes, exactly-once upserts, session refresh, error mapping and injected faults."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from csautomation.connectors.base import FieldUpdate, TaskRequest
from csautomation.connectors.config import Breaker, SalesforceConfig
from csautomation.connectors.resilience import Allocation, CircuitBreaker, Guard
from csautomation.connectors.salesforce import SalesforceCrm
from csautomation.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorNotFoundError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from factories import account
from fakes.salesforce import FakeSalesforce
from fakes.server import Faults, Request, Response

DUE = datetime(2030, 3, 4, 9, 30, tzinfo=UTC)
FIELD = "Csauto_Key__c"
ACCOUNT_FIELD = "Csauto_Account_Id__c"
PASSWORD_ENV = {
    "SF_USERNAME": "csauto@example.com",
    "SF_PASSWORD": "hunter2-and-security-token",
    "SF_CLIENT_ID": "3MVG9-consumer-key",
    "SF_CLIENT_SECRET": "C0NSUMER-SECRET-1234",
}
PASSWORD_AUTH = {
    "method": "password",
    "username_env": "SF_USERNAME",
    "password_env": "SF_PASSWORD",
    "client_id_env": "SF_CLIENT_ID",
    "client_secret_env": "SF_CLIENT_SECRET",
}


def task(key: str = "playbook:r1:ACME:2030-03:call", **extra: Any) -> TaskRequest:
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
def fake() -> Iterator[FakeSalesforce]:
    server = FakeSalesforce()
    with server:
        server.add_account(ACCOUNT_FIELD, "ACME", Name="Acme")
        yield server


@pytest.fixture
def make(fake: FakeSalesforce, tmp_path: Path) -> Iterator[Any]:
    made: list[SalesforceCrm] = []

    def build(env: dict[str, str] | None = None, **config: Any) -> SalesforceCrm:
        cfg = SalesforceConfig.model_validate(
            {
                "id": "salesforce",
                "type": "salesforce",
                "login_url": fake.url,
                "auth": PASSWORD_AUTH,
                "owners": {"csm-01": "0055g00000AbCdEAAV"},
                "timeout": "0.5s",
            }
            | config
        )
        crm = SalesforceCrm(cfg, PASSWORD_ENV if env is None else env, fake.ca_file(tmp_path))
        made.append(crm)
        return crm

    yield build
    for crm in made:
        crm.close()


def tasks_for(fake: FakeSalesforce, key: str) -> list[dict[str, Any]]:
    return [t for t in fake.tasks.values() if t.get(FIELD) == key]


def test_creates_a_task_with_mapped_fields_and_the_account_from_soql(
    fake: FakeSalesforce, make: Any
) -> None:
    receipt = make().create_task(task())
    assert receipt.created and receipt.connector == "salesforce"
    [made] = fake.tasks.values()
    [account_id] = fake.accounts
    assert made["Id"] == receipt.record_id
    assert (
        made
        | {
            FIELD: "playbook:r1:ACME:2030-03:call",
            "Subject": "Call Acme about renewal",
            "Description": "Usage fell 40% in 30 days.",
            "WhatId": account_id,
            "OwnerId": "0055g00000AbCdEAAV",
            "ActivityDate": "2030-03-04",
            "Priority": "High",
            "Status": "Not Started",
        }
        == made
    )
    assert fake.soql == ["SELECT Id FROM Account WHERE Csauto_Account_Id__c = 'ACME' LIMIT 1"]
    # the ':' of the key travels percent-encoded in one path segment
    [upsert] = fake.calls("PATCH", "/services/data/v59.0/sobjects/Task/")
    assert upsert.path.endswith("/Task/Csauto_Key__c/playbook%3Ar1%3AACME%3A2030-03%3Acall")
    token = fake.token_requests[0]
    assert token["grant_type"] == "password" and token["username"] == "csauto@example.com"


def test_the_account_is_looked_up_once_and_crm_ids_skip_the_lookup(
    fake: FakeSalesforce, make: Any
) -> None:
    crm = make()
    crm.create_task(task("k-1"))
    crm.create_task(task("k-2", priority="low"))
    assert len(fake.soql) == 1
    crm.create_task(task("k-3", account=account(id="OTHER", crm_ids={"salesforce": "001KNOWN"})))
    assert len(fake.soql) == 1
    assert tasks_for(fake, "k-3")[0]["WhatId"] == "001KNOWN"
    assert tasks_for(fake, "k-2")[0]["Priority"] == "Low"


def test_an_unknown_account_is_not_found(make: Any) -> None:
    with pytest.raises(ConnectorNotFoundError, match="Csauto_Account_Id__c = 'NOPE'") as info:
        make().create_task(task(account=account(id="NOPE")))
    assert not info.value.retryable


def test_the_same_key_twice_makes_one_task(fake: FakeSalesforce, make: Any) -> None:
    crm = make()
    first = crm.create_task(task())
    second = crm.create_task(task())
    assert first.created and not second.created
    assert first.record_id == second.record_id
    assert len(fake.tasks) == 1


def test_before_api_46_an_update_answers_204_and_the_id_is_looked_up(
    fake: FakeSalesforce, make: Any
) -> None:
    crm = make(api_version="45.0")
    first = crm.create_task(task())
    second = crm.create_task(task())
    assert (first.created, second.created) == (True, False)
    assert second.record_id == first.record_id
    [get] = fake.calls("GET", "/services/data/v45.0/sobjects/Task/Csauto_Key__c/")
    assert get.path.endswith("playbook%3Ar1%3AACME%3A2030-03%3Acall")


def test_an_expired_session_is_refreshed_once(fake: FakeSalesforce, make: Any) -> None:
    crm = make()
    crm.create_task(task("k-1"))
    fake.expire_tokens()
    receipt = crm.create_task(task("k-2"))
    assert receipt.created
    assert len(fake.token_requests) == 2
    assert len(tasks_for(fake, "k-2")) == 1


def test_a_second_401_after_the_refresh_is_an_auth_error(fake: FakeSalesforce, make: Any) -> None:
    crm = make()
    crm.check()
    fake.expire_tokens()
    fake.expire_after_refresh = True
    with pytest.raises(ConnectorAuthError, match="INVALID_SESSION_ID") as info:
        crm.create_task(task())
    assert info.value.status == 401
    assert len(fake.token_requests) == 2


def test_bad_credentials_are_an_auth_error_that_is_not_retried(make: Any) -> None:
    env = PASSWORD_ENV | {"SF_PASSWORD": "wrong-password-123"}
    with pytest.raises(ConnectorAuthError, match="invalid_grant; authentication failure") as info:
        make(env=env).check()
    assert not info.value.retryable
    assert "wrong-password-123" not in str(info.value)


def test_a_missing_variable_is_an_auth_error_naming_it(make: Any) -> None:
    env = {k: v for k, v in PASSWORD_ENV.items() if k != "SF_CLIENT_SECRET"}
    with pytest.raises(ConnectorAuthError, match="SF_CLIENT_SECRET") as info:
        make(env=env).create_task(task())
    assert not info.value.retryable


def test_jwt_bearer_flow_signs_an_rs256_assertion(fake: FakeSalesforce, make: Any) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.jwt_public_key = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    auth = {
        "method": "jwt",
        "username_env": "SF_USERNAME",
        "client_id_env": "SF_CLIENT_ID",
        "private_key_env": "SF_KEY",
    }
    env = {"SF_USERNAME": fake.username, "SF_CLIENT_ID": fake.client_id, "SF_KEY": pem}
    assert make(env=env, auth=auth).create_task(task()).created
    [token] = fake.token_requests
    assert token["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    # a key the org does not know is refused at login
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ConnectorAuthError) as info:
        make(env=env | {"SF_KEY": wrong}, auth=auth).check()
    assert wrong not in str(info.value)
    with pytest.raises(ConnectorAuthError, match="SF_KEY does not hold") as info:
        make(env=env | {"SF_KEY": "not-a-key-at-all"}, auth=auth).check()
    assert not info.value.retryable and "not-a-key-at-all" not in str(info.value)


def test_session_method_uses_the_environment(fake: FakeSalesforce, make: Any) -> None:
    fake.tokens.add("00D5g000SESSION!ARabcdef")
    auth = {"method": "session", "session_id_env": "SF_SID", "instance_url_env": "SF_URL"}
    env = {"SF_SID": "00D5g000SESSION!ARabcdef", "SF_URL": fake.url}
    crm = make(env=env, auth=auth)
    assert "authenticated (session)" in crm.check()
    assert fake.token_requests == []
    fake.expire_tokens()  # no refresh possible: the same session is tried once more
    with pytest.raises(ConnectorAuthError) as info:
        crm.check()
    assert "00D5g000SESSION!ARabcdef" not in str(info.value)


def test_a_missing_subject_is_a_validation_error_with_salesforce_words(make: Any) -> None:
    with pytest.raises(ConnectorValidationError) as info:
        make().create_task(task(subject=""))
    assert not info.value.retryable and info.value.status == 400
    assert "REQUIRED_FIELD_MISSING: Required fields are missing: [Subject] (Subject)" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("kind", "error"), [("429", ConnectorRateLimitedError), ("503", ConnectorUnavailableError)]
)
def test_retry_after_is_kept(
    fake: FakeSalesforce, make: Any, kind: str, error: type[ConnectorError]
) -> None:
    crm = make()
    crm.check()
    fake.faults = Faults(1.0, (kind,))
    with pytest.raises(error) as info:
        crm.create_task(task())
    assert info.value.retry_after == 1.0 and info.value.retryable


@pytest.mark.parametrize("kind", ["reset", "timeout", "500"])
def test_resets_timeouts_and_500s_are_unavailable(
    fake: FakeSalesforce, make: Any, kind: str
) -> None:
    crm = make()
    crm.check()
    fake.faults = Faults(1.0, (kind,))
    with pytest.raises(ConnectorUnavailableError) as info:
        crm.update_account(FieldUpdate("k", "w", "s", account(), "Health__c", "red"))
    assert info.value.retryable


def test_a_login_that_times_out_is_unavailable(fake: FakeSalesforce, make: Any) -> None:
    fake.faults = Faults(1.0, ("timeout",))
    with pytest.raises(ConnectorUnavailableError, match="login"):
        make().check()


def test_update_account_sets_the_field(fake: FakeSalesforce, make: Any) -> None:
    receipt = make().update_account(FieldUpdate("k", "w", "s", account(), "Health__c", "red"))
    assert fake.accounts[receipt.record_id]["Health__c"] == "red"
    assert not receipt.created


def test_completion_sync_returns_closed_tasks_by_key_across_pages(
    fake: FakeSalesforce, make: Any
) -> None:
    fake.page_size = 2
    crm = make()
    keys = [f"playbook:r1:ACME:2030-03:step{i}" for i in range(5)]
    receipts = [crm.create_task(task(k)) for k in [*keys, "still-open"]]
    closed_at = datetime(2030, 3, 5, 12, 0, tzinfo=UTC)
    for r in receipts[:5]:
        fake.close_task(r.record_id, closed_at, by="0055g00000CLOSER")
    since = closed_at - timedelta(hours=1)
    done = crm.completed_since(since)
    assert sorted(c.idempotency_key for c in done) == sorted(keys)
    assert {c.completed_at for c in done} == {closed_at}
    assert {c.completed_by for c in done} == {"0055g00000CLOSER"}  # who closed them
    assert fake.soql[-1] == (
        "SELECT Id, Csauto_Key__c, LastModifiedDate, LastModifiedById FROM Task "
        "WHERE IsClosed = true "
        "AND LastModifiedDate >= 2030-03-05T11:00:00+00:00 AND Csauto_Key__c != null"
    )
    assert len(list(fake.calls("GET", "/services/data/v59.0/query/01g"))) == 2
    assert crm.completed_since(closed_at + timedelta(seconds=1)) == []


def test_check_reports_what_was_verified(fake: FakeSalesforce, make: Any) -> None:
    said = make().check()
    assert fake.url.removeprefix("https://") in said
    # the limits call is the org's first REST call today in the fake: 14999 remain
    assert "daily API requests remaining: 14999 of 15000 (csautomation stops at 90% used)" in said


def test_a_create_is_one_request_once_the_account_is_known(fake: FakeSalesforce, make: Any) -> None:
    def sent() -> list[str]:
        return [
            f"{r.method} {r.path.split('/v59.0/')[-1].split('/Csauto')[0]}" for r in fake.requests
        ]

    crm = make()
    crm.create_task(task("k-1"))
    first = sent()
    crm.create_task(task("k-2"))
    # the login (once per connector), the Account's Id by our account id, the upsert
    assert first == ["POST /services/oauth2/token", "GET query/", "PATCH sobjects/Task"]
    assert sent()[len(first) :] == ["PATCH sobjects/Task"]


def test_a_300_character_subject_reaches_salesforce_as_255_ending_in_the_marker(
    fake: FakeSalesforce, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    subject = "Renewal at risk: " + "usage fell in every team " * 12  # 317 characters
    subject = subject[:300]
    caplog.set_level(logging.INFO, logger="csautomation.connectors.fields")
    make().create_task(task(subject=subject))
    [made] = fake.tasks.values()
    assert len(made["Subject"]) == 255 and made["Subject"].endswith("…")
    assert made["Subject"][:-1] == subject[:254]
    assert made["Description"] == f"{subject}\n\nUsage fell 40% in 30 days."
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        "salesforce: Subject cut to the vendor's 255 characters, ending in …; the full text "
        "is in Description (action playbook:r1:ACME:2030-03:call)"
    )
    short = make().create_task(task("k-short"))  # a subject that fits is left alone
    assert fake.tasks[short.record_id]["Subject"] == "Call Acme about renewal"
    assert len(caplog.records) == 1


def test_the_daily_allocation_stops_calls_before_it_runs_out(
    fake: FakeSalesforce, make: Any
) -> None:
    now = [1000.0]
    crm = make(daily_api={"stop_at": 0.9, "recheck_after": "10m"})
    quota = Allocation("salesforce", crm.config.daily_api, clock=lambda: now[0])
    crm.guard = Guard("salesforce", CircuitBreaker("salesforce", Breaker()), quota=quota)
    fake.api_used = 13_497  # 13,500 is 90% of 15,000
    crm.create_task(task("k-1"))  # the Account lookup and the upsert: 13,499 used
    assert crm.api_usage == quota.usage == (13_499, 15_000)
    crm.create_task(task("k-2"))  # one upsert: 13,500 used, the line reached
    sent = len(fake.requests)
    with pytest.raises(ConnectorRateLimitedError, match="used 13500 of its 15000") as caught:
        crm.create_task(task("k-3"))
    assert len(fake.requests) == sent  # refused here: Salesforce never saw it
    assert caught.value.retryable and caught.value.retry_after == 600
    assert "daily_api.stop_at" in str(caught.value)
    fake.api_used = 9_000  # the rolling 24 hours moved on
    now[0] += 601  # after recheck_after, one call looks again
    assert crm.create_task(task("k-3")).created
    assert quota.usage == (9_001, 15_000)
    assert crm.create_task(task("k-4")).created


def test_secrets_echoed_by_the_vendor_are_redacted(fake: FakeSalesforce, make: Any) -> None:
    def leaky(req: Request) -> Response:
        token = req.headers["authorization"].removeprefix("Bearer ")
        said = f"bad token {token} for {fake.password} / {fake.client_secret}"
        return Response(500, [{"message": said, "errorCode": "UNKNOWN_EXCEPTION"}])

    fake.routes.insert(0, ("GET", re.compile(r"^/services/data/v59\.0/limits/?$"), leaky))
    with pytest.raises(ConnectorUnavailableError) as info:
        make().check()
    text = str(info.value)
    assert "[redacted]" in text
    for value in (*PASSWORD_ENV.values(), *fake.tokens):
        if value != PASSWORD_ENV["SF_USERNAME"]:
            assert value not in text


def test_faults_never_duplicate_or_lose_a_task(fake: FakeSalesforce, make: Any) -> None:
    crm = make()
    faults = fake.faults = Faults(0.3, seed=7)
    seen: list[ConnectorError] = []
    keys = [f"playbook:r1:ACME:2030-03:step{i:02d}" for i in range(50)]
    for key in keys:
        for _ in range(30):
            try:
                crm.create_task(task(key))
                break
            except ConnectorError as exc:
                if not exc.retryable:
                    raise
                seen.append(exc)
        else:
            pytest.fail(f"{key} never succeeded")
    fake.faults = Faults()
    assert sorted(t[FIELD] for t in fake.tasks.values()) == keys
    assert set(faults.injected) == {"500", "503", "429", "timeout", "reset"}
    assert len(seen) >= 10
    secrets = [v for k, v in PASSWORD_ENV.items() if k != "SF_USERNAME"] + sorted(fake.tokens)
    assert not [str(e) for e in seen if any(s in str(e) for s in secrets)]
