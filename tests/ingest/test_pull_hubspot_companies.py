"""The HubSpot companies pull against the fake HubSpot over HTTPS: companies changed since
the cursor become our accounts (owner through people.yaml, ARR and renewal date by the
declarative mapping), a changed contract a `contract_update` that fires renewal-risk, a
429's Retry-After waited, a malformed company held with its reason, a re-run storing
nothing twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from sqlalchemy import select

from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal, SignalType
from csautomation.ingest.pulls import PullContext, run_pull
from csautomation.ingest.pulls import hubspot_companies as hs
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.engine import table
from csautomation.store.outbox import mark_all_evaluated
from csautomation.store.pull_tables import load_cursor
from csautomation.store.quarantine import held
from csautomation.store.tables import RuleFiringRow, SignalRow
from factories import new_store
from fakes.hubspot import FakeHubSpot
from fakes.server import Faults
from playbook_support import PLAYBOOKS

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
OPTIONS: dict[str, Any] = {
    "properties": {"arr": "csauto_arr", "renewal_date": "renewal_date", "tier": "tier"},
    "defaults": {"region": "amer"},
    "per_second": 50,
}
PEOPLE = {
    "teams": {"enterprise": {"name": "Enterprise CS"}},
    "people": [
        {"id": "csm-07", "name": "Dana Ruiz", "role": "csm", "team": "enterprise",
         "crm_ids": {"hubspot": "51234567"}},
    ],
}  # fmt: skip


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN, ca=trustme.CA()) as server:
        assert isinstance(server, FakeHubSpot)
        yield server


def hubspot_ctx(
    hubspot: FakeHubSpot, folder: Path, db_url: str, mp: pytest.MonkeyPatch
) -> PullContext:
    """connectors/hubspot.yaml pointed at the fake, people.yaml beside it, the token and the
    fake's CA in the environment."""
    connectors = folder / "connectors"
    connectors.mkdir(exist_ok=True)
    doc = {
        "connector": {
            "id": "hubspot",
            "type": "hubspot",
            "url": hubspot.url,
            "auth": {"token_env": "HUBSPOT_TOKEN"},
            "owners": {"csm-01": "40000001"},
            "timeout": "2s",
        }
    }
    (connectors / "hubspot.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    (folder / "people.yaml").write_text(yaml.safe_dump(PEOPLE), encoding="utf-8")
    mp.setenv("HUBSPOT_TOKEN", TOKEN)
    mp.setenv("SSL_CERT_FILE", hubspot.ca_file(folder))
    return PullContext(store=new_store(db_url), connectors_path=connectors, now=NOW)


@pytest.fixture
def ctx(
    hubspot: FakeHubSpot, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> PullContext:
    return hubspot_ctx(hubspot, tmp_path, db_url, monkeypatch)


def company(hubspot: FakeHubSpot, acct: str, minutes_ago: int, **props: str) -> str:
    values = {"csauto_account_id": acct, "name": f"{acct} Inc", "tier": "Mid-Market",
              "hubspot_owner_id": "51234567"} | props  # fmt: skip
    return hubspot.put_company(values, NOW - timedelta(minutes=minutes_ago))


def test_companies_become_accounts_with_owner_arr_and_renewal_and_a_contract_update(
    hubspot: FakeHubSpot, ctx: PullContext
) -> None:
    acme = company(hubspot, "ACME", 30, csauto_arr="120000", renewal_date="2030-04-15")
    company(hubspot, "GLOBEX", 20, hubspot_owner_id="40000001")
    company(hubspot, "INITECH", 10, hubspot_owner_id="99999999")
    result = run_pull("hubspot_companies", OPTIONS, ctx)
    assert (result.fetched, result.accounts, result.stored, result.held) == (3, 3, 1, 0)
    stored = ctx.store.account("ACME")
    assert stored is not None
    assert (stored.owner, stored.arr, str(stored.renewal_date)) == ("csm-07", 120000, "2030-04-15")
    assert (stored.tier.value, stored.region, stored.crm_ids) == (
        "mid_market",
        "amer",
        {"hubspot": acme},
    )
    owners = {a: ctx.store.account(a).owner for a in ("GLOBEX", "INITECH")}  # type: ignore[union-attr]
    # people.yaml first, then the connector's owners, else HubSpot's own id as it is
    assert owners == {"GLOBEX": "csm-01", "INITECH": "99999999"}
    assert (
        load_cursor(ctx.store.engine, "hubspot_companies", "hubspot")
        == (NOW - timedelta(minutes=10)).isoformat()
    )
    [search] = list(hubspot.calls("POST", "/crm/v3/objects/companies/search"))
    body = search.json()
    assert body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert body["filterGroups"][0]["filters"][0]["operator"] == "GTE"


def test_a_rerun_brings_nothing_twice_and_a_change_is_one_contract_update(
    hubspot: FakeHubSpot, ctx: PullContext
) -> None:
    acme = company(hubspot, "ACME", 30, csauto_arr="120000", renewal_date="2030-04-15")
    run_pull("hubspot_companies", OPTIONS, ctx)
    again = run_pull("hubspot_companies", OPTIONS, ctx)
    # the company at the cursor is read again (>=) and changes nothing
    assert (again.fetched, again.stored, again.accounts, again.held) == (1, 0, 0, 0)
    hubspot.edit_company(acme, {"csauto_arr": "90000"}, NOW - timedelta(minutes=5))
    changed = run_pull("hubspot_companies", OPTIONS, ctx)
    assert (changed.stored, changed.accounts) == (1, 1)
    t = table(SignalRow)
    with ctx.store.engine.connect() as conn:
        payloads = [
            json.loads(json.dumps(p))
            for p in conn.execute(select(t.c.payload).order_by(t.c.id)).scalars()
        ]
    assert payloads == [{"arr": 120000.0, "renewal_date": "2030-04-15"}, {"arr": 90000.0}]


def test_pages_of_a_search_are_followed_with_after(hubspot: FakeHubSpot, ctx: PullContext) -> None:
    for i in range(7):
        company(hubspot, f"ACC{i}", 60 - i)
    result = run_pull("hubspot_companies", OPTIONS | {"page_size": 3}, ctx)
    assert (result.fetched, result.accounts) == (7, 7)
    afters = [
        r.json().get("after") for r in hubspot.calls("POST", "/crm/v3/objects/companies/search")
    ]
    assert afters == [None, "3", "6"]


def test_a_malformed_company_is_held_with_its_reason_once(
    hubspot: FakeHubSpot, ctx: PullContext
) -> None:
    company(hubspot, "GOOD", 30)
    company(hubspot, "BAD ID!", 20)
    company(hubspot, "NEG", 10, csauto_arr="-5")
    result = run_pull("hubspot_companies", OPTIONS, ctx)
    assert (result.accounts, result.held) == (1, 2)
    rows = held(ctx.store, "open", source="hubspot_companies:hubspot")
    reasons = sorted(e["field"] + ": " + e["message"] for r in rows for e in r.errors)
    assert len(reasons) == 2 and reasons[0].startswith("arr: ") and reasons[1].startswith("id: ")
    assert run_pull("hubspot_companies", OPTIONS, ctx).held == 0  # read again, not held again
    assert len(held(ctx.store, "open", source="hubspot_companies:hubspot")) == 2


def test_a_429_waits_its_retry_after_and_the_pull_completes(
    hubspot: FakeHubSpot, ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        company(hubspot, f"ACC{i}", 60 - i)
    waits: list[float] = []
    hubspot.faults = Faults(1.0, kinds=("429",))

    def wait_then_fine(seconds: float) -> None:  # the wait is asked for, not slept
        waits.append(seconds)
        hubspot.faults = Faults()

    monkeypatch.setattr(hs, "SLEEP", wait_then_fine)
    result = run_pull("hubspot_companies", OPTIONS | {"per_second": 100}, ctx)
    assert result.accounts == 4
    assert waits == [1.0]  # the fake's Retry-After: 1
    assert len(list(hubspot.calls("POST", "/crm/v3/objects/companies/search"))) == 2


def test_requests_are_spaced_to_the_search_limit(
    hubspot: FakeHubSpot, ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        company(hubspot, f"ACC{i}", 60 - i)
    now = [100.0]  # a clock that moves only when the pull waits: the load does not matter
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    monkeypatch.setattr(hs, "CLOCK", lambda: now[0])
    monkeypatch.setattr(hs, "SLEEP", wait)
    run_pull("hubspot_companies", OPTIONS | {"page_size": 1, "per_second": 4}, ctx)
    # three pages, a quarter second apart (the last has no `paging.next`)
    assert len(list(hubspot.calls("POST", "/crm/v3/objects/companies/search"))) == 3
    assert waits == [0.25, 0.25]


def test_a_changed_renewal_fires_renewal_risk(hubspot: FakeHubSpot, ctx: PullContext) -> None:
    """From HubSpot's company to a stored contract_update, evaluated by the shipped rules."""
    ctx.store.upsert_accounts([Account(id="ACME", name="ACME Inc", tier="mid_market")])
    history = [
        Signal(type=SignalType.usage_daily, account_id="ACME",
               occurred_at=NOW - timedelta(days=d),
               payload={"logins": 40 if d > 20 else 0, "active_users": 1},
               idempotency_key=f"usage:ACME:{d}")
        for d in range(1, 60)
    ]  # fmt: skip
    ctx.store.add_signals(history)
    mark_all_evaluated(ctx.store)
    company(
        hubspot,
        "ACME",
        30,
        csauto_arr="120000",
        renewal_date=(NOW + timedelta(days=40)).date().isoformat(),
    )
    assert run_pull("hubspot_companies", OPTIONS, ctx).stored == 1
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(ctx.store))
    try:
        pipeline = Pipeline(ctx.store, runtime, PLAYBOOKS, client=None)  # type: ignore[arg-type]
        assert pipeline.evaluate_pending() == 1
    finally:
        runtime.close()
    t = table(RuleFiringRow)
    with ctx.store.engine.connect() as conn:
        fired = set(conn.execute(select(t.c.rule_id).where(t.c.account_id == "ACME")).scalars())
    assert "renewal-risk" in fired


def test_a_query_near_the_10000_result_limit_starts_again_from_the_newest_time(
    hubspot: FakeHubSpot, ctx: PullContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hs, "QUERY_LIMIT", 6)  # HubSpot's 10,000, scaled down
    for i in range(10):
        company(hubspot, f"ACC{i}", 60 - i)
    result = run_pull("hubspot_companies", OPTIONS | {"page_size": 3}, ctx)
    assert result.accounts == 10
    bodies = [r.json() for r in hubspot.calls("POST", "/crm/v3/objects/companies/search")]
    since = [b["filterGroups"][0]["filters"][0]["value"] for b in bodies]
    sixth = str(int((NOW - timedelta(minutes=55)).timestamp() * 1000))
    # two pages of the first query, then a new query (no `after`) from the sixth's time
    assert since[:3] == ["0", "0", sixth] and "after" not in bodies[2]
