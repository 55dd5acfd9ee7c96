"""Your own accounts in: `csauto accounts import` (CSV and JSONL) and PUT /v1/accounts, with
optional fields really optional, numbers typed by the schema, a report with line numbers,
idempotent upserts, and the signals held for an unknown account released when it arrives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.support import FAST, NOW, SECRET, FakeActions, build_people
from csautomation.api import create_app
from csautomation.api.server import BackgroundServer
from csautomation.cli import app
from csautomation.facts.catalog import FACTS
from csautomation.facts.derive import derive
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal
from csautomation.facts.schema import data_reference, generated_part, rewrite
from csautomation.ingest.accounts import import_accounts
from csautomation.ingest.sources import Sources, SourceSpec
from csautomation.store.quarantine import Held, held, quarantine
from csautomation.store.repo import Store
from csautomation.templates import render

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "accounts-token-" + "t" * 24
runner = CliRunner()

CSV = """id,name,tier,arr,seats,owner,renewal_date,customer_since,tags,crm_ids.salesforce
ACME-1,Acme Corp,mid_market,120000,40,csm-01,2027-03-31,2022-05-01,beta;eu,001AAA
BARE-2,Bare Minimum Ltd,smb,,,,,,,
BAD-3,Broken Inc,platinum,-5,0,,2027-02-30,,,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_imports_with_optional_fields_and_typed_numbers(store: Store, tmp_path: Path) -> None:
    report = import_accounts(store, write(tmp_path, "accounts.csv", CSV))
    assert (report.rows, report.accepted, report.created) == (3, 2, 2)
    acme = store.account("ACME-1")
    assert acme is not None
    assert acme.arr == 120000.0 and acme.seats == 40 and acme.tags == ("beta", "eu")
    assert acme.crm_ids == {"salesforce": "001AAA"}
    bare = store.account("BARE-2")
    assert bare is not None
    assert (bare.arr, bare.owner, bare.renewal_date, bare.customer_since) == (
        None,
        None,
        None,
        None,
    )
    # every problem of the bad row, with its line (the header is line 1) and field
    problems = {(r.line, r.field) for r in report.rejected}
    assert {(4, "tier"), (4, "arr"), (4, "seats"), (4, "renewal_date")} <= problems
    again = import_accounts(store, write(tmp_path, "accounts.csv", CSV))
    assert (again.accepted, again.created, again.updated, again.unchanged) == (2, 0, 0, 2)


def test_jsonl_import_updates_by_id(store: Store, tmp_path: Path) -> None:
    first = {"id": "ACME-1", "name": "Acme", "tier": "smb"}
    import_accounts(store, write(tmp_path, "a.jsonl", json.dumps(first) + "\n"))
    moved = {**first, "tier": "enterprise", "owner": "csm-02"}
    text = json.dumps(moved) + "\n" + "[1, 2]\n" + "{not json\n"
    report = import_accounts(store, write(tmp_path, "a.jsonl", text))
    assert (report.accepted, report.updated, report.rejected_rows) == (1, 1, 2)
    assert [str(r) for r in report.rejected] == [
        "line 2: expected a JSON object",
        "line 3: not JSON: Expecting property name enclosed in double quotes (column 2)",
    ]
    account = store.account("ACME-1")
    assert account is not None and account.tier == "enterprise" and account.owner == "csm-02"


def test_an_account_with_nothing_optional_derives_and_renders() -> None:
    """No renewal date, ARR, owner or start date: facts derive (those facts missing), and a
    template reads "not known", never "None"."""
    bare = Account(id="BARE-2", name="Bare Minimum Ltd", tier="smb")
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    usage = Signal.model_validate(
        {
            "type": "usage_daily",
            "account_id": bare.id,
            "occurred_at": at,
            "payload": {"logins": 3, "active_users": 2},
        }
    )
    record = derive(bare, [usage], date(2026, 11, 1), load_health_model()).record()
    assert record["usage.days_since_last_login"] == 0 and record["health.score"] > 0
    assert record.get("contract.days_to_renewal") is None
    assert record.get("account.arr") is None
    text = render(
        "{{ account.name }} (owner {{ account.owner }}) renews in "
        "{{ facts['contract.days_to_renewal'] }} days",
        {"account": bare.model_dump(mode="json"), "facts": dict.fromkeys(FACTS, None) | record},
    )
    assert text == "Bare Minimum Ltd (owner not known) renews in not known days"


def held_signal(store: Store, account_id: str) -> None:
    """A signal refused for an unknown account, as the intake holds it."""
    signal = {
        "type": "nps_response",
        "account_id": account_id,
        "occurred_at": "2026-10-30T10:00:00Z",
        "payload": {"score": 2},
    }
    quarantine(
        store,
        [
            Held(
                source="analytics",
                raw=json.dumps(signal),
                errors=[{"field": "account_id", "message": f"unknown account '{account_id}'"}],
            )
        ],
    )


def test_signals_held_for_an_unknown_account_are_released_when_it_arrives(
    store: Store, tmp_path: Path
) -> None:
    held_signal(store, "LATE-9")
    held_signal(store, "NEVER-0")
    text = json.dumps({"id": "LATE-9", "name": "Late Arrival", "tier": "smb"}) + "\n"
    report = import_accounts(store, write(tmp_path, "late.jsonl", text))
    assert report.released == 1
    assert [s.payload for s in store.signals_for("LATE-9")] == [{"score": 2}]
    still = held(store, "open")
    assert [json.loads(r.raw)["account_id"] for r in still] == ["NEVER-0"]


def test_the_commands_import_list_and_show(db_url: str, tmp_path: Path) -> None:
    env = {"CSAUTO_DATABASE_URL": db_url, "COLUMNS": "200"}
    path = write(tmp_path, "accounts.csv", CSV)
    result = runner.invoke(app, ["accounts", "import", str(path)], env=env)
    assert result.exit_code == 1, result.output  # a row was rejected
    assert "3 rows, 2 accepted (2 new, 0 updated, 0 unchanged), 1 rejected" in result.output
    assert "line 4: tier:" in result.output
    listed = runner.invoke(app, ["accounts", "list"], env=env)
    assert (
        listed.exit_code == 0 and "Acme Corp" in listed.output and "Bare Minimum" in listed.output
    )
    assert "None" not in listed.output
    shown = runner.invoke(app, ["accounts", "show", "ACME-1"], env=env)
    assert json.loads(shown.output)["crm_ids"] == {"salesforce": "001AAA"}
    missing = runner.invoke(app, ["accounts", "show", "NOPE"], env=env)
    assert missing.exit_code == 1 and "no account 'NOPE'" in missing.output


def test_schema_commands_print_the_schemas() -> None:
    accounts = runner.invoke(app, ["schema", "accounts"])
    assert set(json.loads(accounts.output)["required"]) == {"id", "name", "tier"}
    signals = json.loads(runner.invoke(app, ["schema", "signals"]).output)
    assert "UsageDaily" in signals["$defs"] and len(signals["allOf"]) == 10


def test_docs_data_md_is_generated_from_the_models() -> None:
    text = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    assert generated_part(text) == data_reference(), (
        "docs/data.md is stale: python -m csautomation.facts.schema docs/data.md"
    )
    assert rewrite(text) == text


# -- PUT /v1/accounts ---------------------------------------------------------------------------
@pytest.fixture
def http(store: Store) -> Iterator[httpx.Client]:
    sources = Sources(
        {"crm": SourceSpec(auth="token", secret_env="CRM_TOKEN")}, {"CRM_TOKEN": TOKEN}
    )
    server_app = create_app(
        store,
        build_people(),
        FakeActions(store),
        now=lambda: NOW,
        session_secret=SECRET,
        hasher=FAST,
        sources=sources,
    )
    with BackgroundServer(server_app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def put(http: httpx.Client, body: Any, token: str = TOKEN) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.put("/v1/accounts", content=content, headers={"Authorization": f"Bearer {token}"})


def test_put_accounts_upserts_and_reports(http: httpx.Client, store: Store) -> None:
    good = {"id": "API-1", "name": "Api Co", "tier": "smb", "arr": "5000"}
    bad = {"id": "API-2", "name": "", "tier": "smb", "arr": "Infinity"}
    answer = put(http, {"accounts": [good, bad]})
    assert answer.status_code == 422
    body = answer.json()
    assert body["created"] == 1
    assert {(e["index"], e["field"]) for e in body["errors"]} == {(1, "name"), (1, "arr")}
    stored = store.account("API-1")
    assert stored is not None and stored.arr == 5000.0
    assert put(http, [good]).json() == {
        "accepted": 1,
        "created": 0,
        "updated": 0,
        "unchanged": 1,
        "released_signals": 0,
        "errors": [],
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 2000 + b"]" * 2000, 422),  # nested too deep for the parser
        (
            b'{"accounts": [{"id": "X", "name": "X", "tier": "smb", "seats": '
            + b"9" * 5000
            + b"}]}",
            422,
        ),
        (b"{not json", 422),
        (b'{"accounts": []}', 422),
        (json.dumps({"accounts": [{"id": f"A{i}"} for i in range(1001)]}).encode(), 413),
    ],
    ids=["deep", "long-number", "not-json", "empty", "too-many"],
)
def test_put_accounts_refuses_bad_bodies_without_a_5xx(
    http: httpx.Client, body: bytes, status: int
) -> None:
    answer = put(http, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_put_accounts_needs_a_source(http: httpx.Client) -> None:
    assert put(http, [{"id": "X", "name": "X", "tier": "smb"}], token="wrong").status_code == 401


def test_every_payload_field_is_explained() -> None:
    from csautomation.facts.model import PAYLOADS
    from csautomation.facts.schema import FIELD_NOTES

    fields = {name for model in PAYLOADS.values() for name in model.model_fields}
    assert fields <= FIELD_NOTES.keys(), sorted(fields - FIELD_NOTES.keys())


@pytest.mark.asyncio
async def test_a_file_of_signals_for_an_unknown_account_is_held_then_released(
    client: Any, store: Store, tmp_path: Path
) -> None:
    """`csauto ingest` says which accounts it does not know; the pipeline holds their
    signals; importing the account releases them to evaluation."""
    from csautomation.facts.health import load_health_model
    from csautomation.ingest.batch import import_file
    from csautomation.pipeline import Pipeline, SqlCooldowns
    from csautomation.rules.runtime import RuleRuntime
    from playbook_support import PLAYBOOKS

    signals = (
        "type,account_id,occurred_at,payload.score\nnps_response,LATE-9,2026-10-30T10:00:00Z,2\n"
    )
    report = import_file(store, write(tmp_path, "signals.csv", signals))
    assert (report.stored, report.unknown) == (1, {"LATE-9": 1})
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    try:
        pipeline = Pipeline(store, runtime, PLAYBOOKS, client)
        pipeline.evaluate_pending()
        [row] = held(store, "open")
        assert "unknown account" in row.errors[0]["message"]
        accounts = json.dumps({"id": "LATE-9", "name": "Late Arrival", "tier": "smb"}) + "\n"
        assert import_accounts(store, write(tmp_path, "late.jsonl", accounts)).released == 1
        assert held(store, "open") == []
        assert pipeline.evaluate_pending() == 1  # back in the evaluation outbox
    finally:
        runtime.close()
