"""`csauto audit verify` on a ledger filled by real runs (a signal through the pipeline, its
playbook run by a worker to the end, escalation and all): it passes, prints the head, and
fails, naming the entry, once an entry is altered or deleted by someone who dropped the
triggers first; a TRUNCATE (PostgreSQL) or a DELETE of everything is refused before that.
On SQLite each tampering is done on a copy of the database, as an auditor would be handed
one."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from audit.support import acme_falls
from csautomation.cli import app
from csautomation.store import ledger
from csautomation.store.chain import LEDGER
from csautomation.store.outbox import mark_all_evaluated, runs
from csautomation.store.repo import Store
from csautomation.workflows.playbook import PlaybookWorkflow
from factories import playbook_store
from playbook_support import end_escalations, make_worker

runner = CliRunner()


@pytest_asyncio.fixture
async def filled(
    env: WorkflowEnvironment, client: Client, empty_db_url: str
) -> AsyncIterator[Store]:
    """A store of this test's own (its triggers get dropped), its ledger filled by a
    signal that fires a rule whose playbook runs to the end."""
    store = playbook_store(empty_db_url)
    mark_all_evaluated(store)
    queue = f"verify-{uuid.uuid4()}"
    pipeline, runtime = acme_falls(store, client, queue, "verify:acme:today")
    try:
        async with make_worker(client, store, queue):
            await pipeline.run_once()
            [run] = [r for r in runs(store) if r.workflow_id.startswith("playbook:")]
            handle = client.get_workflow_handle_for(PlaybookWorkflow.run, run.workflow_id)
            # nobody calls: it escalates after a week (a handle the pipeline's start did not
            # return skips no time while it waits for the result: the clock is moved here)
            await env.sleep(timedelta(days=8))
            result = await handle.result()
            assert await end_escalations(client, handle.id, result) == 1
    finally:
        runtime.close()
    yield store
    store.engine.dispose()


def verify(url: str, *more: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["audit", "verify", "--database-url", url, *more], terminal_width=200
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def as_json(url: str) -> dict[str, Any]:
    code, output = verify(url, "--json")
    data: dict[str, Any] = json.loads(output)
    assert code == (0 if data["verified"] else 1)
    return data


def copy_of(store: Store, folder: Path, name: str) -> str:
    """The database as an auditor gets it: a copy (PostgreSQL: the same database)."""
    url = store.engine.url.render_as_string(hide_password=False)
    if store.engine.dialect.name != "sqlite":
        return url
    copy = folder / f"{name}.db"
    with store.engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM INTO '{copy}'")
    return f"sqlite:///{copy}"


def tamper(url: str, *statements: Any) -> None:
    """Drop the triggers, as the database's owner can, then run `statements`."""
    store = Store(url)
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("drop trigger if exists decision_ledger_append_only on decision_ledger")
            )
            conn.execute(
                text("drop trigger if exists decision_ledger_no_truncate on decision_ledger")
            )
        else:
            conn.execute(text("drop trigger if exists decision_ledger_no_update"))
            conn.execute(text("drop trigger if exists decision_ledger_no_delete"))
        for statement in statements:
            conn.execute(statement)
    store.engine.dispose()


@pytest.mark.asyncio
async def test_verify_passes_on_real_runs_and_fails_on_an_entry_altered_or_deleted(
    filled: Store, tmp_path: Path
) -> None:
    url = filled.engine.url.render_as_string(hide_password=False)
    kinds = {e.kind for e in ledger.entries(filled)}
    assert {"rule_fired", "workflow_started", "create_task", "notify_escalation"} <= kinds
    assert {"escalation", "workflow_closed"} <= kinds

    code, output = verify(url)
    assert code == 0, output
    data = as_json(url)
    assert (
        data["verified"] and data["breaks"] == [] and data["entries"] == len(ledger.entries(filled))
    )
    head = data["head"]["hash"]
    assert f"head: entry #{data['head']['id']}, {head}" in output and "verified" in output
    postgres = filled.engine.dialect.name == "postgresql"
    expected = ["UPDATE", "DELETE", "TRUNCATE"] if postgres else ["UPDATE", "DELETE"]
    assert [(g["operation"], g["ok"]) for g in data["guards"]] == [(op, True) for op in expected]
    assert "append-only: UPDATE refused, DELETE refused" in output

    # emptying the ledger is refused by the database itself
    wipe = "truncate decision_ledger" if postgres else "delete from decision_ledger"
    with pytest.raises(DBAPIError, match="append-only"), filled.engine.begin() as conn:
        conn.execute(text(wipe))
    assert verify(url, "--head", head)[0] == 0

    with filled.engine.connect() as conn:
        ids = list(conn.execute(select(LEDGER.c.id).order_by(LEDGER.c.id)).scalars())
    altered, deleted = ids[2], ids[len(ids) // 2]

    forged = copy_of(filled, tmp_path, "altered")
    tamper(forged, update(LEDGER).where(LEDGER.c.id == altered).values(record_id="forged"))
    code, output = verify(forged)
    assert code == 1
    assert f"entry #{altered} altered: its fields do not match its hash" in output
    assert "UPDATE ALLOWED (no trigger)" in output and "NOT verified" in output
    assert [(b["entry"], b["problem"]) for b in as_json(forged)["breaks"]] == [(altered, "altered")]

    cut = copy_of(filled, tmp_path, "deleted")  # PostgreSQL: on top of the alteration
    tamper(cut, LEDGER.delete().where(LEDGER.c.id == deleted))
    breaks = as_json(cut)["breaks"]
    after = ids[ids.index(deleted) + 1]
    assert (after, "missing") in [(b["entry"], b["problem"]) for b in breaks]
    code, output = verify(cut, "--head", head)
    assert code == 1 and f"entry #{after} missing" in output
