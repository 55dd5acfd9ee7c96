"""Pulls through the real simple-salesforce and zenpy against the fake vendors over HTTPS,
and the usage file drop: signals and accounts stored once, cursors that resume and never
pass what is stored, SOQL that quotes every value, and convergence under 30% faults."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from sqlalchemy import select

from csautomation.errors import ConfigError, ConnectorError
from csautomation.ingest.pulls import (
    PULL_KINDS,
    PullContext,
    PullResult,
    UsageFileDropOptions,
    run_pull,
)
from csautomation.store.engine import table
from csautomation.store.pull_tables import load_cursor, save_cursor
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow
from factories import new_store
from fakes.salesforce import CHANGED_ACCOUNTS, FakeSalesforce, sf_date
from fakes.server import Faults
from fakes.zendesk import FakeZendesk, read_cursor, unix

NOW = datetime(2030, 3, 4, 12, 0, tzinfo=UTC)
ID_FIELD = "Csauto_Account_Id__c"
SF_OPTIONS: dict[str, Any] = {
    "fields": {
        "tier": "Tier__c",
        "renewal_date": "Renewal_Date__c",
        "seats": "Seats__c",
        "manager": "CSM_Manager__c",
    },
    "defaults": {"region": "amer"},
    "churn_field": "Churn_Probability__c",
}
ENV = {
    "SF_USERNAME": "csauto@example.com",
    "SF_PASSWORD": "hunter2-and-security-token",
    "SF_CLIENT_ID": "3MVG9-consumer-key",
    "SF_CLIENT_SECRET": "C0NSUMER-SECRET-1234",
    "ZD_EMAIL": "csauto@example.com",
    "ZD_TOKEN": "zd-token-6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv",
}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def sf(ca: trustme.CA) -> Iterator[FakeSalesforce]:
    with FakeSalesforce(ca=ca) as server:
        assert isinstance(server, FakeSalesforce)
        yield server


@pytest.fixture
def zd(ca: trustme.CA) -> Iterator[FakeZendesk]:
    with FakeZendesk(ca=ca) as server:
        assert isinstance(server, FakeZendesk)
        yield server


@pytest.fixture
def ctx(
    sf: FakeSalesforce,
    zd: FakeZendesk,
    tmp_path: Path,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> PullContext:
    """connectors/ pointed at the fakes, the credentials and the fakes' CA in the
    environment (as a deployment has them), and a fresh store."""
    folder = tmp_path / "connectors"
    folder.mkdir()
    password = {
        "method": "password",
        "username_env": "SF_USERNAME",
        "password_env": "SF_PASSWORD",
        "client_id_env": "SF_CLIENT_ID",
        "client_secret_env": "SF_CLIENT_SECRET",
    }
    configs = {
        "salesforce": {
            "type": "salesforce",
            "login_url": sf.url,
            "auth": password,
            "account_field": ID_FIELD,
            "owners": {"csm-01": "0055g00000AbCdEAAV"},
        },
        "zendesk": {
            "type": "zendesk",
            "url": zd.url,
            "auth": {"email_env": "ZD_EMAIL", "token_env": "ZD_TOKEN"},
        },
    }
    for name, config in configs.items():
        doc = {"connector": {"id": name, "timeout": "0.5s"} | config}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sf.ca_file(tmp_path))
    return PullContext(store=new_store(db_url), connectors_path=folder, now=NOW)


def signals(store: Store) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """idempotency key -> (account, type, payload) of every stored signal."""
    t = table(SignalRow)
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.c.idempotency_key, t.c.account_id, t.c.type, t.c.payload))
        return {key: (account, kind, payload) for key, account, kind, payload in rows}


def until_done(kind: str, options: dict[str, Any], ctx: PullContext) -> PullResult:
    for _ in range(60):
        try:
            return run_pull(kind, options, ctx)
        except ConnectorError:
            continue
    pytest.fail(f"{kind} never succeeded")


# -- Salesforce ----------------------------------------------------------------------------
def sf_account(sf: FakeSalesforce, our_id: str | None, when: datetime, **fields: Any) -> str:
    values: dict[str, Any] = {
        "Name": f"{our_id} Inc.",
        "Tier__c": "Mid-Market",
        "AnnualRevenue": 120000.0,
        "Seats__c": 50.0,
        "Renewal_Date__c": "2030-09-30",
        "CreatedDate": "2024-01-15T08:00:00.000+0000",
        "OwnerId": "0055g00000AbCdEAAV",
        "CSM_Manager__c": "mgr-01",
        "Churn_Probability__c": None,
    }
    return sf.add_account(ID_FIELD, our_id, **(values | fields | {"LastModifiedDate": when}))


@pytest.fixture
def book(sf: FakeSalesforce) -> dict[str, str]:
    """Our id -> Salesforce Id; an Account without our id is not one of ours."""
    return {
        "ACME": sf_account(sf, "ACME", NOW - timedelta(days=3), Churn_Probability__c=0.35),
        "BETA": sf_account(sf, "BETA", NOW - timedelta(days=2), Tier__c="Enterprise"),
        "-": sf_account(sf, None, NOW - timedelta(days=1), Name="Prospect Ltd"),
    }


def test_salesforce_pull_upserts_accounts_and_emits_contract_and_churn_signals(
    sf: FakeSalesforce, ctx: PullContext, book: dict[str, str]
) -> None:
    result = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    newest = NOW - timedelta(days=1)
    assert result == PullResult("salesforce_accounts", 3, 3, 2, newest.isoformat())
    acme = ctx.store.account("ACME")
    assert acme is not None
    assert (acme.name, acme.tier, acme.arr, acme.seats, acme.region) == (
        "ACME Inc.",
        "mid_market",
        120000.0,
        50,
        "amer",
    )
    assert (acme.owner, acme.manager, str(acme.customer_since)) == (
        "csm-01",
        "mgr-01",
        "2024-01-15",
    )
    assert acme.crm_ids == {"salesforce": book["ACME"]}
    beta = ctx.store.account("BETA")
    assert beta is not None and beta.tier == "enterprise"
    acme_key = f"sf:Account:{book['ACME']}:{sf_date(NOW - timedelta(days=3))}"
    contract = {"renewal_date": "2030-09-30", "arr": 120000.0, "seats": 50}
    assert signals(ctx.store) == {
        f"{acme_key}:contract_update": ("ACME", "contract_update", contract),
        f"{acme_key}:churn_prediction": (
            "ACME",
            "churn_prediction",
            {"probability": 0.35, "model": "salesforce"},
        ),
        f"sf:Account:{book['BETA']}:{sf_date(NOW - timedelta(days=2))}:contract_update": (
            "BETA",
            "contract_update",
            contract,
        ),
    }
    assert load_cursor(ctx.store.engine, "salesforce_accounts", "salesforce") == result.cursor
    assert sf.soql == [
        "SELECT Id, LastModifiedDate, Csauto_Account_Id__c, Name, AnnualRevenue, OwnerId, "
        "CreatedDate, Tier__c, Renewal_Date__c, Seats__c, CSM_Manager__c, "
        "Churn_Probability__c FROM Account WHERE LastModifiedDate > 1970-01-01T00:00:00+00:00 "
        "ORDER BY LastModifiedDate, Id"
    ]


def test_the_next_pull_reads_from_the_cursor_less_a_minute_and_stores_only_changes(
    sf: FakeSalesforce, ctx: PullContext, book: dict[str, str]
) -> None:
    first = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    changed_at = NOW - timedelta(hours=1)
    sf.touch_account(book["ACME"], changed_at, AnnualRevenue=150000.0)
    second = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    since = datetime.fromisoformat(first.cursor) - timedelta(minutes=1)
    assert f"LastModifiedDate > {since.isoformat()} " in sf.soql[-1]
    # ACME changed; the prospect is re-read inside the minute of overlap and changes nothing
    assert (second.fetched, second.stored, second.accounts) == (2, 2, 1)
    assert second.cursor == changed_at.isoformat()
    key = f"sf:Account:{book['ACME']}:{sf_date(changed_at)}"
    stored = signals(ctx.store)
    assert stored[f"{key}:contract_update"] == ("ACME", "contract_update", {"arr": 150000.0})
    assert stored[f"{key}:churn_prediction"][2]["probability"] == 0.35
    account = ctx.store.account("ACME")
    assert account is not None and account.arr == 150000.0
    third = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    assert (third.fetched, third.stored, third.accounts) == (1, 0, 0)


def test_a_pull_from_an_old_cursor_stores_nothing_new(
    ctx: PullContext, book: dict[str, str]
) -> None:
    first = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    count = len(signals(ctx.store))
    # a crash between storing the signals and saving the cursor: the old cursor comes back
    save_cursor(ctx.store.engine, "salesforce_accounts", "salesforce", "1970-01-01T00:00:00", NOW)
    again = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    assert (again.fetched, again.stored, again.accounts) == (3, 0, 0)
    assert again.cursor == first.cursor and len(signals(ctx.store)) == count == 3
    assert set(book) == {"ACME", "BETA", "-"}


def test_pages_are_followed_by_next_records_url(sf: FakeSalesforce, ctx: PullContext) -> None:
    sf.page_size = 2
    for i in range(7):
        sf_account(sf, f"ACC{i}", NOW - timedelta(hours=10 - i))
    result = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    assert (result.fetched, result.stored, result.accounts) == (7, 7, 7)
    assert len(list(sf.calls("GET", "/services/data/v59.0/query/01g"))) == 3
    assert result.cursor == (NOW - timedelta(hours=4)).isoformat()


def test_soql_quotes_every_value_it_carries(sf: FakeSalesforce, ctx: PullContext) -> None:
    odd = "O'Brien's \\ partner'); DELETE"
    sf_account(sf, "ODD", NOW - timedelta(hours=2), Type=odd, Name="Bob's 'Shop'")
    sf_account(sf, "CUSTOMER", NOW - timedelta(hours=1), Type="Customer")
    sf_account(sf, "PARTNER", NOW - timedelta(hours=1), Type="Partner")
    options = SF_OPTIONS | {"filters": {"Type": ["Customer", odd]}}
    result = run_pull("salesforce_accounts", options, ctx)
    assert (result.fetched, result.accounts) == (2, 2)
    odd_account = ctx.store.account("ODD")
    assert odd_account is not None and odd_account.name == "Bob's 'Shop'"
    run_pull("salesforce_accounts", options, ctx)
    for soql in sf.soql:
        assert CHANGED_ACCOUNTS.match(soql), soql  # every string well quoted
        assert odd not in soql and "Bob" not in soql
        assert " AND Type IN ('Customer','O\\'Brien\\'s \\\\ partner\\'); DELETE') " in soql


def test_each_run_logs_one_line_of_counts_and_no_secret(
    sf: FakeSalesforce, ctx: PullContext, book: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="csautomation.ingest.pulls")
    result = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    sf.faults = Faults(1.0, ("500",))
    with pytest.raises(ConnectorError):
        run_pull("salesforce_accounts", SF_OPTIONS, ctx)
    assert [r.getMessage() for r in caplog.records] == [
        "pull salesforce_accounts salesforce: fetched 3, stored 3 new signals, 2 accounts; "
        f"cursor {result.cursor}",
        "pull salesforce_accounts salesforce failed after fetching 0, storing 0 signals and 0 "
        "accounts: salesforce login (HTTP 500): UNKNOWN_EXCEPTION: An unexpected error occurred.",
    ]
    secrets = [v for k, v in ENV.items() if not k.endswith("_EMAIL") and k != "SF_USERNAME"]
    assert not [s for s in [*secrets, *sf.tokens] if s in caplog.text]
    assert set(book) == {"ACME", "BETA", "-"}


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("salesforce_contacts", {}, "unknown pull kind 'salesforce_contacts'"),
        ("salesforce_accounts", {"fields": {"arr": "AnnualRevenue, (SELECT"}}, "fields.arr"),
        ("salesforce_accounts", {"fields": {"revenue": "AnnualRevenue"}}, "fields.revenue"),
        ("salesforce_accounts", {"filters": {"Type = 'x' OR Id": "y"}}, "filters"),
        ("salesforce_accounts", {"connector": "zendesk"}, "of type zendesk, not salesforce"),
        ("zendesk_tickets", {"connector": "freshdesk"}, "no enabled connector 'freshdesk'"),
        ("zendesk_tickets", {"escalation_tag": ["vip"]}, "escalation_tag"),
        ("usage_file_drop", {}, "folder"),
    ],
)
def test_bad_options_are_config_errors(
    ctx: PullContext, kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_pull(kind, options, ctx)


def test_salesforce_faults_converge_and_the_cursor_never_passes_what_is_stored(
    sf: FakeSalesforce, ctx: PullContext
) -> None:
    sf.page_size = 3
    ids = {
        f"ACC{i:02d}": sf_account(sf, f"ACC{i:02d}", NOW - timedelta(minutes=400 - 5 * i))
        for i in range(60)
    }
    faults = sf.faults = Faults(0.3, seed=11)
    failures = 0
    for _ in range(80):
        try:
            result = run_pull("salesforce_accounts", SF_OPTIONS, ctx)
            break
        except ConnectorError:
            failures += 1
            # every Account at or before the saved cursor has its signal stored
            saved = load_cursor(ctx.store.engine, "salesforce_accounts", "salesforce")
            keys = signals(ctx.store)
            for i, sf_id in enumerate(ids.values()):
                modified = NOW - timedelta(minutes=400 - 5 * i)
                if saved and modified <= datetime.fromisoformat(saved):
                    assert f"sf:Account:{sf_id}:{sf_date(modified)}:contract_update" in keys
    else:
        pytest.fail("the pull never succeeded")
    sf.faults = Faults()
    assert failures >= 5 and len(faults.injected) >= 4
    assert len(signals(ctx.store)) == 60
    assert result.cursor == (NOW - timedelta(minutes=105)).isoformat()
    assert run_pull("salesforce_accounts", SF_OPTIONS, ctx).stored == 0


# -- Zendesk -------------------------------------------------------------------------------
@pytest.fixture
def desk(zd: FakeZendesk) -> dict[str, int]:
    """Tickets by name, opened over the last day."""
    acme, beta = zd.add_organization("ACME"), zd.add_organization("BETA")
    nobody = zd.add_organization("", "No external id")
    at = NOW - timedelta(days=1)
    return {
        "acme": zd.add_ticket(acme, "Export fails", "normal", at=at),
        "beta-urgent": zd.add_ticket(beta, "Site down", "urgent", at=at + timedelta(hours=1)),
        "acme-tagged": zd.add_ticket(
            acme, "Angry exec", "high", ("vip", "escalated"), at=at + timedelta(hours=2)
        ),
        "acme-unset": zd.add_ticket(acme, "Question", None, at=at + timedelta(hours=3)),
        "no-org": zd.add_ticket(None, "Lost", at=at + timedelta(hours=4)),
        "no-external-id": zd.add_ticket(nobody, "Whose?", at=at + timedelta(hours=5)),
        "ours": zd.add_ticket(
            acme,
            "Call Acme about renewal",
            external_id="playbook:r1:ACME:2030-03:call",
            at=at + timedelta(hours=6),
        ),
    }


def zd_key(zd: FakeZendesk, ticket: int, kind: str) -> str:
    del zd  # one ticket, one key: updates of a ticket are not new tickets
    return f"zd:ticket:{ticket}:{kind}"


def test_zendesk_tickets_become_signals_of_their_organizations_account(
    zd: FakeZendesk, ctx: PullContext, desk: dict[str, int]
) -> None:
    result = run_pull("zendesk_tickets", {}, ctx)
    assert (result.fetched, result.stored, result.accounts) == (7, 6, 0)
    ticket = "support_ticket"
    assert signals(ctx.store) == {
        zd_key(zd, desk["acme"], ticket): (
            "ACME",
            ticket,
            {"priority": "normal", "subject": "Export fails"},
        ),
        zd_key(zd, desk["beta-urgent"], ticket): (
            "BETA",
            ticket,
            {"priority": "urgent", "subject": "Site down"},
        ),
        zd_key(zd, desk["beta-urgent"], "support_escalation"): (
            "BETA",
            "support_escalation",
            {"reason": "urgent priority"},
        ),
        zd_key(zd, desk["acme-tagged"], ticket): (
            "ACME",
            ticket,
            {"priority": "high", "subject": "Angry exec"},
        ),
        zd_key(zd, desk["acme-tagged"], "support_escalation"): (
            "ACME",
            "support_escalation",
            {"reason": "tagged escalated"},
        ),
        zd_key(zd, desk["acme-unset"], ticket): (
            "ACME",
            ticket,
            {"priority": "normal", "subject": "Question"},
        ),
    }
    [export] = zd.calls("GET", "/api/v2/incremental/tickets/cursor.json")
    assert export.query["start_time"] == [str(int((NOW - timedelta(days=30)).timestamp()))]
    # the organizations were looked up once, together
    [lookup] = zd.calls("GET", "/api/v2/organizations/show_many.json")
    assert len(lookup.query["ids"][0].split(",")) == 3
    assert load_cursor(ctx.store.engine, "zendesk_tickets", "zendesk") == result.cursor != ""


def test_zendesk_resumes_from_the_after_cursor_across_pages(
    zd: FakeZendesk, ctx: PullContext, desk: dict[str, int]
) -> None:
    options = {"escalation_tags": ["vip"], "name": "support"}
    first = run_pull("zendesk_tickets", options, ctx)
    assert first.stored == 6  # acme-tagged escalates for "vip" too
    zd.export_page_size = 2
    zd.update_ticket(desk["acme"], NOW - timedelta(minutes=30), priority="urgent")
    fresh = zd.add_ticket(zd.tickets[desk["acme"]]["organization_id"], "New", at=NOW)
    zd.add_ticket(zd.tickets[desk["beta-urgent"]]["organization_id"], "Also new", at=NOW)
    before = len(list(zd.calls("GET", "/api/v2/incremental/tickets/cursor.json")))
    second = run_pull("zendesk_tickets", options, ctx)
    exports = list(zd.calls("GET", "/api/v2/incremental/tickets/cursor.json"))[before:]
    assert [e.query["cursor"] for e in exports][0] == [first.cursor]
    assert len(exports) == 2  # two pages of two
    # the ticket made urgent is no new ticket, but is an escalation now
    assert (second.fetched, second.stored) == (3, 3)
    stored = signals(ctx.store)
    assert stored[zd_key(zd, desk["acme"], "support_escalation")][2] == {
        "reason": "urgent priority"
    }
    assert stored[zd_key(zd, fresh, "support_ticket")][0] == "ACME"
    third = run_pull("zendesk_tickets", options, ctx)
    assert (third.fetched, third.stored, third.cursor) == (0, 0, second.cursor)
    assert load_cursor(ctx.store.engine, "zendesk_tickets", "support") == second.cursor


def test_zendesk_faults_converge_without_losing_a_ticket(zd: FakeZendesk, ctx: PullContext) -> None:
    orgs = [zd.add_organization(f"ACC{i}") for i in range(5)]
    tickets = [
        zd.add_ticket(orgs[i % 5], f"Ticket {i}", "urgent" if i % 4 == 0 else "low",
                      at=NOW - timedelta(hours=40 - i))
        for i in range(40)
    ]  # fmt: skip
    zd.export_page_size = 5
    faults = zd.faults = Faults(0.3, seed=5)
    cursors: list[str | None] = []
    for _ in range(80):
        try:
            run_pull("zendesk_tickets", {}, ctx)
            break
        except ConnectorError:
            cursors.append(load_cursor(ctx.store.engine, "zendesk_tickets", "zendesk"))
            # every ticket up to the saved cursor's position has its signal stored
            position = read_cursor(cursors[-1]) if cursors[-1] else (0, 0)
            assert position is not None
            stored = signals(ctx.store)
            for t in tickets:
                if (unix(zd.tickets[t]["updated_at"]), t) <= position:
                    assert zd_key(zd, t, "support_ticket") in stored
    else:
        pytest.fail("the pull never succeeded")
    zd.faults = Faults()
    assert len(cursors) >= 3 and len(faults.injected) >= 3
    assert len(signals(ctx.store)) == 40 + 10
    again = run_pull("zendesk_tickets", {}, ctx)
    assert (again.fetched, again.stored) == (0, 0)


# -- file drop -----------------------------------------------------------------------------
def usage(day: int, account: str = "ACME", logins: object = 40) -> str:
    row = {
        "type": "usage_daily",
        "account_id": account,
        "occurred_at": f"2030-03-{day:02d}T09:00:00Z",
        "payload": {"logins": logins, "active_users": 10},
    }
    return json.dumps(row)


def drop(folder: Path, name: str, text: str, age: float = 60) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    moment = NOW.timestamp() - age
    os.utime(path, (moment, moment))
    return path


def test_file_drop_imports_moves_rejects_and_waits_for_files_to_settle(
    ctx: PullContext, tmp_path: Path
) -> None:
    inbox = tmp_path / "usage"
    inbox.mkdir()
    drop(inbox, "a.jsonl", "\n".join([usage(1), usage(2), usage(2)]) + "\n")
    csv_text = "type,account_id,occurred_at,payload.logins,payload.active_users\n"
    drop(inbox, "b.csv", csv_text + "usage_daily,BETA,2030-03-01T09:00:00Z,12,3\n")
    drop(inbox, "c.jsonl", "\n".join([usage(3), usage(4, logins=-1), "{oops"]) + "\n")
    drop(inbox, "d.jsonl", usage(5) + "\n", age=1)  # written a second ago
    drop(inbox, ".e.jsonl.tmp", usage(4) + "\n")  # being written, to be renamed
    drop(inbox, "notes.txt", "not a feed")
    options = {"folder": str(inbox), "settle": 5}
    result = run_pull("usage_file_drop", options, ctx)
    assert (result.fetched, result.stored, result.accounts) == (7, 4, 0)
    assert result.cursor == f"c.jsonl at {NOW.isoformat(timespec='seconds')}"
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [
        ".e.jsonl.tmp",
        "d.jsonl",
        "notes.txt",
    ]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a.jsonl", "b.csv"]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "c.jsonl",
        "c.jsonl.report.txt",
    ]
    report = (inbox / "rejected" / "c.jsonl.report.txt").read_text(encoding="utf-8")
    assert report.startswith("c.jsonl: 3 rows, 1 accepted (1 new, 0 already stored), 2 rejected")
    assert "line 2: payload.logins: Input should be greater than or equal to 0" in report
    assert "line 3: not JSON" in report
    # the settled file and the renamed one come next time; a file dropped again adds nothing
    os.rename(inbox / ".e.jsonl.tmp", inbox / "e.jsonl")
    drop(inbox, "a.jsonl", "\n".join([usage(1), usage(2)]) + "\n")
    later = PullContext(ctx.store, ctx.connectors_path, NOW + timedelta(seconds=10))
    second = run_pull("usage_file_drop", options, later)
    assert (second.fetched, second.stored) == (4, 2)
    done = sorted(p.name for p in (inbox / "done").iterdir())
    assert done == ["a.20300304T120010Z.jsonl", "a.jsonl", "b.csv", "d.jsonl", "e.jsonl"]
    assert len(signals(ctx.store)) == 6


def test_an_unreadable_file_is_rejected_whole(ctx: PullContext, tmp_path: Path) -> None:
    inbox = tmp_path / "usage"
    inbox.mkdir()
    (inbox / "latin1.csv").write_bytes("type,account_id\nusage_daily,Café\n".encode("latin-1"))
    result = run_pull("usage_file_drop", {"folder": str(inbox), "settle": 0}, ctx)
    assert (result.fetched, result.stored) == (0, 0)
    report = (inbox / "rejected" / "latin1.csv.report.txt").read_text(encoding="utf-8")
    assert report.startswith("latin1.csv: cannot be read:") and "utf-8" in report


def test_every_kind_has_strict_options() -> None:
    assert set(PULL_KINDS) == {
        "salesforce_accounts",
        "zendesk_tickets",
        "usage_file_drop",
        "intercom_conversations",
        "amplitude_usage",
        "mixpanel_usage",
        "hubspot_companies",
        "sql_query",
    }
    for model in PULL_KINDS.values():
        assert model.model_config.get("extra") == "forbid"
    assert UsageFileDropOptions(folder=Path("usage")).settle == 5
