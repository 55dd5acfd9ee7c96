"""HubSpotCrm against a fake HubSpot over real HTTPS: shapes, exactly-once, and faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csautomation.connectors import hubspot as hubspot_module
from csautomation.connectors.base import TaskRequest
from csautomation.connectors.config import Breaker, HubSpotConfig, RateLimit
from csautomation.connectors.hubspot import HubSpotCrm
from csautomation.connectors.resilience import CircuitBreaker, Guard, TokenBucket
from csautomation.errors import (
    ConnectorAuthError,
    ConnectorNotFoundError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from factories import account
from fakes.hubspot import FakeHubSpot
from fakes.server import Faults

DUE = datetime(2030, 3, 4, 9, 30, tzinfo=UTC)


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
def fake() -> Iterator[FakeHubSpot]:
    server = FakeHubSpot()
    with server:
        server.add_company("ACME")
        yield server


@pytest.fixture
def make(fake: FakeHubSpot, tmp_path: Path) -> Iterator[Any]:
    made: list[HubSpotCrm] = []

    def build(env: dict[str, str] | None = None, **config: Any) -> HubSpotCrm:
        cfg = HubSpotConfig.model_validate(
            {
                "id": "hubspot",
                "type": "hubspot",
                "url": fake.url,
                "auth": {"token_env": "HUBSPOT_TOKEN"},
                "owners": {"csm-01": 75001},
                "timeout": "0.5s",
            }
            | config
        )
        crm = HubSpotCrm(
            cfg, {"HUBSPOT_TOKEN": fake.token} if env is None else env, fake.ca_file(tmp_path)
        )
        made.append(crm)
        return crm

    yield build
    for crm in made:
        crm.close()


def test_creates_a_task_with_mapped_properties_and_the_company_association(
    fake: FakeHubSpot, make: Any
) -> None:
    receipt = make().create_task(task())
    assert receipt.created and receipt.connector == "hubspot"
    [made] = fake.tasks
    assert made["id"] == receipt.record_id
    assert (
        made["properties"]
        | {
            "hs_timestamp": "2030-03-04T09:30:00.000Z",
            "hs_task_subject": "Call Acme about renewal",
            "hs_task_body": "Usage fell 40% in 30 days.",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hubspot_owner_id": "75001",
            "csauto_key": "playbook:r1:ACME:2030-03:call",
        }
        == made["properties"]
    )
    [company] = fake.objects["companies"]
    assert fake.associations[made["id"]] == [
        {
            "to": {"id": company},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}],
        }
    ]
    # no search before the create: the unique property makes a repeat a 409
    assert list(fake.calls("POST", "/crm/v3/objects/tasks/search")) == []
    assert all(r.headers["authorization"] == f"Bearer {fake.token}" for r in fake.requests)


def test_a_create_is_one_request_once_the_company_is_known(fake: FakeHubSpot, make: Any) -> None:
    crm = make()
    crm.create_task(task("k-1"))
    first = [(r.method, r.path) for r in fake.requests]
    crm.create_task(task("k-2"))
    second = [(r.method, r.path) for r in fake.requests][len(first) :]
    # before: a task search, a company search and the create for every task (3)
    assert first == [
        ("POST", "/crm/v3/objects/companies/search"),
        ("POST", "/crm/v3/objects/tasks"),
    ]
    assert second == [("POST", "/crm/v3/objects/tasks")]
    assert len(fake.tasks) == 2


def test_priorities_map_through_the_config_then_the_defaults(fake: FakeHubSpot, make: Any) -> None:
    crm = make(priorities={"low": "MEDIUM"})
    crm.create_task(task("k-low", priority="low"))
    crm.create_task(task("k-medium", priority="medium"))
    assert [t["properties"]["hs_task_priority"] for t in fake.tasks] == ["MEDIUM", "MEDIUM"]


def test_the_same_key_twice_makes_one_task(fake: FakeHubSpot, make: Any) -> None:
    crm = make()
    first, second = crm.create_task(task()), crm.create_task(task())
    assert first.created and not second.created
    assert first.record_id == second.record_id and len(fake.tasks) == 1
    [search] = [r.json() for r in fake.calls("POST", "/crm/v3/objects/tasks/search")]
    assert search["filterGroups"] == [
        {
            "filters": [
                {"propertyName": "csauto_key", "operator": "EQ", "value": task().idempotency_key}
            ]
        }
    ]


def test_a_create_the_search_index_has_not_seen_yet_is_found_after_the_409(
    fake: FakeHubSpot, make: Any
) -> None:
    fake.search_lag = 3  # three searches after the create miss it, as HubSpot's index may
    crm = make(index_wait={"attempts": 6, "initial": "50ms", "maximum": "150ms"})
    waits: list[float] = []
    crm.sleep = waits.append  # the delays between searches, without spending them
    first, second = crm.create_task(task()), crm.create_task(task())
    assert first.created and not second.created
    assert first.record_id == second.record_id and len(fake.tasks) == 1
    assert waits == [0.05, 0.1, 0.15]  # growing, capped at the maximum
    assert len(list(fake.calls("POST", "/crm/v3/objects/tasks/search"))) == 4


def test_the_409_recovery_outwaits_a_search_index_seconds_behind(
    fake: FakeHubSpot, make: Any
) -> None:
    crm = make(index_wait={"attempts": 8, "initial": "100ms", "maximum": "1s"})
    fake.index_delay = 0.4  # a new task is out of search results for 0.4 s
    began = time.monotonic()
    first = crm.create_task(task())
    second = crm.create_task(task())  # at once: 409, and the index has not caught up
    assert time.monotonic() - began >= 0.4  # it waited for the index, not for nothing
    assert not second.created and second.record_id == first.record_id
    assert len(fake.tasks) == 1
    assert len(list(fake.calls("POST", "/crm/v3/objects/tasks/search"))) >= 2


def test_a_task_the_index_never_shows_is_retried_later_not_dead_lettered(
    fake: FakeHubSpot, make: Any
) -> None:
    fake.search_lag = 100
    crm = make(index_wait={"attempts": 3, "initial": "100ms"})
    crm.sleep = lambda _seconds: None
    crm.create_task(task())
    with pytest.raises(ConnectorUnavailableError, match="search index has not shown it") as e:
        crm.create_task(task())
    assert e.value.retryable and e.value.status == 409
    assert "3 searches over 0.3 s" in str(e.value) and len(fake.tasks) == 1


def test_an_unmapped_owner_fails_before_any_call(fake: FakeHubSpot, make: Any) -> None:
    with pytest.raises(ConnectorValidationError, match="csm-99") as caught:
        make().create_task(task(assignee="csm-99"))
    assert not caught.value.retryable and fake.requests == []


def test_an_account_without_a_company_is_not_found(fake: FakeHubSpot, make: Any) -> None:
    with pytest.raises(ConnectorNotFoundError, match="csauto_account_id = GLOBEX"):
        make().create_task(task(account=account().model_copy(update={"id": "GLOBEX"})))
    assert fake.tasks == []


def test_a_refused_token_is_an_auth_error_that_never_shows_the_token(make: Any) -> None:
    wrong = "pat-na1-wrong-0000-0000-0000-000000000000"
    with pytest.raises(ConnectorAuthError, match="Authentication credentials not found") as e:
        make(env={"HUBSPOT_TOKEN": wrong}).create_task(task())
    assert e.value.status == 401 and wrong not in str(e.value)


def test_a_token_echoed_by_the_vendor_is_redacted(fake: FakeHubSpot, make: Any) -> None:
    fake.error_body = {
        "status": "error",
        "message": f"upstream rejected header Authorization: Bearer {fake.token}",
        "correlationId": "c0ffee",
        "category": "INTERNAL_ERROR",
    }
    fake.faults = Faults(1.0, ("500",))
    with pytest.raises(ConnectorUnavailableError) as caught:
        make().create_task(task())
    assert fake.token not in str(caught.value) and "[redacted]" in str(caught.value)


def test_a_validation_error_keeps_hubspots_message(
    fake: FakeHubSpot, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_module, "iso", lambda _moment: "")  # no hs_timestamp sent
    with pytest.raises(ConnectorValidationError, match="hs_timestamp is required") as caught:
        make().create_task(task())
    assert caught.value.status == 400 and caught.value.retryable is False
    assert fake.tasks == []


def test_429_is_rate_limited_with_retry_after(fake: FakeHubSpot, make: Any) -> None:
    fake.faults = Faults(1.0, ("429",))
    with pytest.raises(ConnectorRateLimitedError) as caught:
        make().create_task(task())
    assert caught.value.retry_after == 1.0 and caught.value.retryable


@pytest.mark.parametrize("kind", ["503", "reset", "timeout"])
def test_503_resets_and_timeouts_are_unavailable(fake: FakeHubSpot, make: Any, kind: str) -> None:
    fake.faults = Faults(1.0, (kind,))
    fake.hold_seconds = 2.0
    with pytest.raises(ConnectorUnavailableError) as caught:
        make().create_task(task())
    assert caught.value.retryable and fake.token not in str(caught.value)
    assert fake.tasks == []


def test_completion_sync_reports_our_completed_tasks_since_a_moment(
    fake: FakeHubSpot, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_module, "PAGE", 1)  # walk the paging cursor
    crm = make()
    ids = [crm.create_task(task(f"wf:{n}:call")).record_id for n in range(3)]
    fake.add_company("OTHER")
    done = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    fake.complete(ids[0], done)
    fake.complete(ids[2], done)
    handmade = fake._store("tasks", {"hs_task_status": "NOT_STARTED"})["id"]
    fake.complete(handmade, done)  # not ours: no idempotency key
    found = crm.completed_since(done - timedelta(minutes=1))
    assert sorted((c.record_id, c.idempotency_key) for c in found) == [
        (ids[0], "wf:0:call"),
        (ids[2], "wf:2:call"),
    ]
    assert {c.completed_at for c in found} == {done}
    assert crm.completed_since(done + timedelta(minutes=1)) == []
    query = [r.json() for r in fake.calls("POST", "/crm/v3/objects/tasks/search")][-1]
    assert {"propertyName": "hs_task_status", "operator": "EQ", "value": "COMPLETED"} in (
        query["filterGroups"][0]["filters"]
    )


def test_check_reads_tasks_and_the_idempotency_propertys_definition(
    fake: FakeHubSpot, make: Any
) -> None:
    said = make().check()
    assert "HUBSPOT_TOKEN" in said and "csauto_key requires unique values" in said
    read, prop = fake.requests
    assert (read.method, read.path, read.query) == (
        "GET",
        "/crm/v3/objects/tasks",
        {"limit": ["1"]},
    )
    assert (prop.method, prop.path) == ("GET", "/crm/v3/properties/tasks/csauto_key")
    with pytest.raises(ConnectorAuthError):
        make(env={"HUBSPOT_TOKEN": "pat-na1-wrong"}).check()


def test_check_refuses_an_idempotency_property_hubspot_does_not_keep_unique(
    fake: FakeHubSpot, make: Any
) -> None:
    fake.unique = ("csauto_key_unique",)  # csauto_key exists elsewhere, not unique
    with pytest.raises(ConnectorValidationError, match="hasUniqueValue is false"):
        make(idempotency_property="hs_task_type").check()
    with pytest.raises(ConnectorValidationError, match="tasks have no property csauto_key"):
        make().check()


def test_the_default_search_limit_keeps_any_second_to_hubspots_four() -> None:
    cfg = HubSpotConfig.model_validate(
        {"id": "hubspot", "type": "hubspot", "auth": {"token_env": "HUBSPOT_TOKEN"}}
    )
    limit = cfg.search_rate_limit
    assert limit is not None and cfg.endpoint_limits() == {"search": limit}
    # a token bucket lets at most burst + rate x 1 s through in any one-second window
    assert limit.burst + limit.per_second <= 4


def guarded(crm: HubSpotCrm, search_per_second: float) -> HubSpotCrm:
    limit = RateLimit(per_second=search_per_second, burst=1)
    breaker = CircuitBreaker("hubspot", Breaker())
    crm.guard = Guard("hubspot", breaker, None, 5.0, buckets={"search": TokenBucket(limit)})
    return crm


def test_searches_keep_to_hubspots_search_limit_through_their_own_bucket(
    fake: FakeHubSpot, make: Any
) -> None:
    fake.search_per_second = 4
    since = datetime.now(UTC) - timedelta(days=1)
    bare = make()
    fake.clock = lambda: 0.0  # ten searches in one second at the fake, however slow we are
    with ThreadPoolExecutor(10) as pool:  # unguarded, ten at once: beyond four a second
        outcomes = list(pool.map(lambda _: _attempt(bare, since), range(10)))
    limited = [o for o in outcomes if isinstance(o, ConnectorRateLimitedError)]
    assert len(limited) == 6 and fake.search_429s == 6
    assert all("secondly limit" in str(e) and e.retry_after == 1.0 for e in limited)
    seen = fake.search_429s
    with fake.lock:
        fake._searched.clear()  # a fresh second at the fake, on its real clock
        fake.clock = time.monotonic
    # two a second (a margin under load: requests sent apart may arrive together)
    crm = guarded(make(), 2)
    for _ in range(6):
        crm.completed_since(since)
    assert fake.search_429s == seen  # none more


def _attempt(crm: HubSpotCrm, since: datetime) -> object:
    try:
        return crm.completed_since(since)
    except ConnectorRateLimitedError as exc:
        return exc


def test_a_missing_token_variable_is_named_and_never_retried(fake: FakeHubSpot, make: Any) -> None:
    with pytest.raises(ConnectorAuthError, match="HUBSPOT_TOKEN is not set") as caught:
        make(env={}).create_task(task())
    assert caught.value.retryable is False and fake.requests == []
