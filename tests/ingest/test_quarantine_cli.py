"""`csauto quarantine`: items quarantined by the real intake and pipeline are listed, shown
literally, re-processed (with or without a correction), released once their account exists
and discarded; every bad input is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.ingest.intake import Intake, Outcome
from csautomation.ingest.sources import Caller, SourceSpec
from csautomation.ingest.writer import SignalWriter
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.engine import table
from csautomation.store.quarantine import get_held, held
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow
from factories import ROOT, review_account
from playbook_support import PLAYBOOKS

runner = CliRunner()


def usage(account: str = "acme", logins: Any = 40, **extra: Any) -> dict[str, Any]:
    return {
        "type": "usage_daily",
        "account_id": account,
        "occurred_at": "2026-03-01T00:00:00Z",
        "payload": {"logins": logins, "active_users": 5},
        **extra,
    }


@pytest.fixture
def store(store: Store) -> Store:
    store.upsert_accounts([review_account("acme", "Acme Corp")])
    return store


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {"CSAUTO_DATABASE_URL": db_url, "COLUMNS": "200"}


def take(store: Store, items: Sequence[Any], unreadable: str = "") -> Outcome:
    """Through the intake, as `POST /v1/signals` from the source 'analytics'."""

    async def main() -> Outcome:
        writer = SignalWriter(store)
        intake = Intake(store, writer)
        caller = Caller("analytics", SourceSpec(auth="token", secret_env="UNUSED"))
        try:
            if unreadable:
                return await intake.hold_unreadable(caller, unreadable, "not JSON")
            return await intake.take(caller, items)
        finally:
            await writer.close()

    return asyncio.run(main())


def csauto(env: dict[str, str], *args: str) -> Result:
    result = runner.invoke(app, ["quarantine", *args], env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def evaluated_at(store: Store, key: str) -> datetime | None:
    t = table(SignalRow)
    with store.engine.connect() as conn:
        row = conn.execute(select(t.c.evaluated_at).where(t.c.idempotency_key == key)).one()
    value: datetime | None = row[0]
    return value


def test_list_and_show_print_senders_text_literally(store: Store, env: dict[str, str]) -> None:
    done = take(
        store,
        [
            usage(logins=-1, idempotency_key="neg"),
            usage(account="[bold]newco[/bold]", idempotency_key="markup"),
            usage(idempotency_key="fine"),
        ],
    )
    assert [k for _, k in done.stored] == ["fine"]
    neg, markup = done.quarantined
    (garbled,) = take(store, [], unreadable="\x1b[2J[red]{oops").quarantined

    listed = csauto(env, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "3 item(s)" in lines[-1]
    row = next(x for x in lines if x.startswith(f"{neg} "))
    assert "analytics" in row and "payload.logins:" in row and "acme" in row and "open" in row
    row = next(x for x in lines if x.startswith(f"{markup} "))
    assert "account_id: unknown account '[bold]newco[/bold]'" in row
    assert "\x1b" not in listed.output

    shown = csauto(env, "show", str(markup))
    assert shown.exit_code == 0, shown.output
    raw = json.dumps(usage(account="[bold]newco[/bold]", idempotency_key="markup"), sort_keys=True)
    assert raw in shown.output  # whole, on one line, markup and all
    assert "account_id: unknown account '[bold]newco[/bold]'" in shown.output
    assert "errors (1):" in shown.output and "times seen:    1" in shown.output
    assert re.search(r"first seen:    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", shown.output)
    # a control character is written as an escape, never sent to the terminal
    shown = csauto(env, "show", str(garbled))
    assert "\\x1b[2J[red]{oops" in shown.output and "\x1b" not in shown.output
    assert "body: not JSON" in shown.output

    as_json = json.loads(csauto(env, "list", "--json", "--source", "analytics").output)
    assert as_json["count"] == 3
    assert as_json["items"][1]["raw"] == raw
    assert csauto(env, "list", "--source", "crm").output.splitlines()[-1] == "0 item(s)"
    assert "1 item(s) (--limit 1 reached)" in csauto(env, "list", "--limit", "1").output


def test_the_json_is_the_http_apis_shape(store: Store, env: dict[str, str]) -> None:
    from csautomation.api.quarantine import QuarantineItem

    (qid,) = take(store, [usage(logins="many")]).quarantined
    item = json.loads(csauto(env, "show", str(qid), "--json").output)
    row = get_held(store, qid)
    assert row is not None
    api = QuarantineItem.of(row).model_dump()
    assert set(item) == {*api, "resolved_at"}
    assert {k: v for k, v in item.items() if not k.endswith("_at")} == {
        k: v for k, v in api.items() if not k.endswith("_at")
    }
    assert item["received_at"].endswith("+00:00")  # the CLI says UTC; SQLite does not


def test_a_corrected_signal_is_stored_and_the_item_closed(
    store: Store, env: dict[str, str]
) -> None:
    bad = usage(logins=-5, idempotency_key="fix-me")
    (qid,) = take(store, [bad]).quarantined
    fixed = json.dumps({**bad, "payload": {"logins": 5, "active_users": 5}})

    done = csauto(env, "retry", str(qid), "--data", fixed, "--by", "ada")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"item {qid} reprocessed: stored under key fix-me"
    assert [s.payload["logins"] for s in store.signals_for("acme")] == [5]
    assert evaluated_at(store, "fix-me") is None  # waiting for the pipeline
    row = get_held(store, qid)
    assert row is not None
    assert (row.status, row.resolved_by, row.result_key) == ("reprocessed", "ada", "fix-me")
    assert "resolved:      " in csauto(env, "show", str(qid)).output

    again = csauto(env, "retry", str(qid))
    assert again.exit_code == 1
    assert f"item {qid} is already reprocessed (signal fix-me); nothing done" in again.output
    assert csauto(env, "list").output.splitlines()[-1] == "0 item(s)"
    assert f"{qid} " in csauto(env, "list", "--status", "reprocessed").output


def test_a_correction_still_invalid_keeps_the_item_open(
    store: Store, env: dict[str, str], tmp_path: Path
) -> None:
    (qid,) = take(store, [usage(logins=-5)]).quarantined
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(usage(account="nobody", logins="x")))

    still = csauto(env, "retry", str(qid), "--file", str(wrong))
    assert still.exit_code == 1
    assert f"item {qid} is still not valid and stays open:" in still.output
    assert "  payload.logins: " in still.output
    row = get_held(store, qid)
    assert row is not None and row.status == "open"
    assert [e["field"] for e in row.errors] == ["payload.logins"]  # the correction's errors
    # the item as it was kept is still invalid too
    as_kept = csauto(env, "retry", str(qid))
    assert as_kept.exit_code == 1 and "payload.logins: " in as_kept.output
    # a sender's value named in an error is printed literally, control characters escaped
    nasty = json.dumps(usage(account="\x1b[2J[bold]x"))
    nasty_out = csauto(env, "retry", str(qid), "--data", nasty)
    assert "account_id: unknown account '\\x1b[2J[bold]x'" in nasty_out.output
    assert "\x1b" not in nasty_out.output


def test_a_held_signal_is_released_once_its_account_exists(
    store: Store, env: dict[str, str]
) -> None:
    signal = Signal.model_validate(usage(account="newco", idempotency_key="early"))
    assert store.add_signal(signal)
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    pipeline = Pipeline(store, runtime, PLAYBOOKS, client=None)  # evaluating needs no Temporal
    assert pipeline.evaluate_pending() == 1  # evaluated: held in the quarantine
    assert evaluated_at(store, "early") is not None
    listed = json.loads(csauto(env, "list", "--json", "--source", "pipeline").output)
    (item,) = listed["items"]
    assert (item["signal_key"], item["status"]) == ("early", "open")
    qid = str(item["id"])
    assert "held signal:   early" in csauto(env, "show", qid).output

    early = csauto(env, "retry", qid)
    assert early.exit_code == 1 and "account_id: unknown account 'newco'" in early.output
    store.upsert_accounts([review_account("newco", "NewCo")])
    released = csauto(env, "retry", qid)
    assert released.exit_code == 0, released.output
    assert f"item {qid} reprocessed: signal early" in released.output
    assert evaluated_at(store, "early") is None  # back in the evaluation outbox
    row = get_held(store, int(qid))
    assert row is not None and (row.status, row.result_key) == ("reprocessed", "early")


def test_a_signal_that_stops_evaluation_is_held_and_re_driven_with_a_correction(
    store: Store, env: dict[str, str]
) -> None:
    """Logins stored as a string (before numbers were typed, or by hand): the account's
    facts cannot be computed, so its signals are held; the poison is corrected in place and
    the account's other signal released, and both are then evaluated."""
    poison = usage(logins="5", idempotency_key="poison")
    with store.engine.begin() as conn:
        conn.execute(
            table(SignalRow)
            .insert()
            .values(
                **{**poison, "occurred_at": datetime(2026, 3, 1), "received_at": datetime.now()}
            )
        )
    assert store.add_signal(Signal.model_validate(usage(idempotency_key="later", logins=41)))
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    pipeline = Pipeline(store, runtime, PLAYBOOKS, client=None)  # evaluating needs no Temporal
    assert pipeline.evaluate_pending() == 2
    listed = json.loads(csauto(env, "list", "--json", "--source", "pipeline").output)
    items = {i["signal_key"]: i for i in listed["items"]}
    assert set(items) == {"poison", "later"}
    assert items["poison"]["errors"][0]["message"].startswith(
        "facts cannot be computed from this signal: "
    )
    assert items["later"]["errors"][0]["message"].startswith(
        "facts cannot be computed for account acme: "
    )
    assert json.loads(items["later"]["raw"])["account_id"] == "acme"
    assert "facts cannot be computed" in csauto(env, "list").output
    assert pipeline.evaluate_pending() == 0  # held: not evaluated again

    qid = str(items["poison"]["id"])
    other_key = csauto(env, "retry", qid, "--data", json.dumps(usage(idempotency_key="other")))
    assert other_key.exit_code == 1 and "give that key or none" in other_key.output
    fixed = csauto(env, "retry", qid, "--data", json.dumps(usage(logins=5)))
    assert fixed.exit_code == 0, fixed.output
    assert "replaced by the corrected signal" in fixed.output
    t = table(SignalRow)
    with store.engine.connect() as conn:
        payloads = conn.execute(select(t.c.payload).where(t.c.idempotency_key == "poison")).all()
    assert [p for (p,) in payloads] == [{"logins": 5, "active_users": 5}]  # one row, a number
    assert csauto(env, "retry", str(items["later"]["id"])).exit_code == 0

    assert pipeline.evaluate_pending() == 2  # both evaluated now, nothing held again
    assert evaluated_at(store, "poison") is not None and evaluated_at(store, "later") is not None
    still = json.loads(csauto(env, "list", "--json", "--source", "pipeline").output)
    assert still["count"] == 0
    pipeline.runtime.close()


def test_discard_and_who_did_it(
    store: Store, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = take(store, [usage(logins=-1), usage(logins=-2)]).quarantined
    monkeypatch.setattr("getpass.getuser", lambda: "olga")
    gone = csauto(env, "discard", str(first))
    assert gone.exit_code == 0 and gone.output.strip() == f"item {first} discarded"
    row = get_held(store, first)
    assert row is not None and (row.status, row.resolved_by) == ("discarded", "cli:olga")
    again = csauto(env, "discard", str(first), "--by", "someone-else")
    assert again.exit_code == 1 and "already discarded" in again.output
    row = get_held(store, first)
    assert row is not None and row.resolved_by == "cli:olga"  # the first decision stands

    def nobody() -> str:
        raise OSError("no login name")

    monkeypatch.setattr("getpass.getuser", nobody)
    assert csauto(env, "discard", str(second)).exit_code == 0
    row = get_held(store, second)
    assert row is not None and row.resolved_by == "cli"
    assert csauto(env, "list", "--status", "discarded", "--json").output.count('"id"') == 2
    assert csauto(env, "list", "--status", "all").output.splitlines()[-1] == "2 item(s)"


def test_bad_input_is_one_clear_line_and_a_failing_exit(
    store: Store, env: dict[str, str], tmp_path: Path
) -> None:
    (qid,) = take(store, [usage(logins=-1)]).quarantined
    bad = tmp_path / "[bad].json"
    bad.write_text('{"type": "usage_daily",\n  "account_id" "acme"}')
    cases = {
        ("retry", str(qid), "--file", str(bad)): (
            f"error {bad}: not valid JSON: Expecting ':' delimiter (line 2, column 16)"
        ),
        ("retry", str(qid), "--data", "{'single': 1}"): (
            "error --data: not valid JSON: Expecting property name enclosed in double quotes "
            "(line 1, column 2)"
        ),
        ("retry", str(qid), "--data", "[" * 100_000): "error --data: not valid JSON: nested",
        ("retry", str(qid), "--file", str(tmp_path / "missing.json")): "error cannot read",
        ("retry", str(qid), "--file", str(bad), "--data", "{}"): "--file or --data, not both",
        ("retry", str(qid), "--by", " "): "error --by must name someone",
        ("retry", "99"): "error no quarantined item 99",
        ("show", "99"): "error no quarantined item 99",
        ("discard", "99"): "error no quarantined item 99",
    }
    for args, message in cases.items():
        result = csauto(env, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"account_id": "café"}'.encode("latin-1"))
    result = csauto(env, "retry", str(qid), "--file", str(latin1))
    assert result.exit_code == 1 and "latin1.json: not UTF-8 text (byte 19)" in result.output
    row = get_held(store, qid)
    assert row is not None and row.status == "open" and row.times == 1
    # usage errors are click's: exit code 2, with what was wrong
    for args in (("list", "--status", "closed"), ("show", "abc"), ("list", "--limit", "0")):
        result = csauto(env, *args)
        assert result.exit_code == 2 and "Invalid value" in result.output, args
    nowhere = {**env, "CSAUTO_DATABASE_URL": "nonsense://"}
    result = csauto(nowhere, "list")
    assert result.exit_code == 1 and "error cannot open the store:" in result.output


def test_list_and_show_survive_what_the_door_refused_whole(
    store: Store, env: dict[str, str]
) -> None:
    """Items kept as they came because they could not be read (a 5,000-digit number, deep
    nesting): listed and shown, not a crash."""
    huge = '{"account_id": "acme", "payload": {"logins": ' + "9" * 5000 + "}}"
    deep = "[" * 2000 + "]" * 2000
    take(store, [], unreadable=huge)
    take(store, [], unreadable=deep)
    listed = csauto(env, "list")
    assert listed.exit_code == 0, listed.output
    assert "2 item(s)" in listed.output
    for row in held(store, "open"):
        assert row.id is not None
        shown = csauto(env, "show", str(row.id))
        assert shown.exit_code == 0, shown.output
