"""End to end: a signal posted to the ingestion API (uvicorn, a real HTTP request) is stored,
wakes the pipeline, fires its rule and starts the playbook, whose first step creates the
CSM's task. And a process killed after acknowledging a signal, before evaluating it: the
signal is evaluated when a pipeline starts again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, time
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from api.support import FAST, SECRET, FakeActions, build_people
from csautomation.api import create_app
from csautomation.api.server import serving
from csautomation.facts.health import load_health_model
from csautomation.ingest.sources import Sources, SourceSpec
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.outbox import mark_all_evaluated, pending_signals, runs
from csautomation.store.repo import Store, local_tasks
from factories import ROOT, TODAY, playbook_store
from playbook_support import PLAYBOOKS, make_worker, until

TOKEN = "e2e-source-token-" + "x" * 20
PLAYBOOK = "playbook:usage-decline:usage-recovery:ACME:"


def todays_usage(key: str = "e2e:acme:today", account: str = "ACME") -> dict[str, object]:
    at = datetime.combine(TODAY, time(18), tzinfo=UTC)
    return {
        "type": "usage_daily",
        "account_id": account,
        "occurred_at": at.isoformat(),
        "payload": {"logins": 30, "active_users": 7},
        "idempotency_key": key,
    }


def pipeline(store: Store, client: Client, queue: str) -> Pipeline:
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    queues = dict.fromkeys(("critical", "high", "medium", "low"), queue)
    return Pipeline(store, runtime, PLAYBOOKS, client, queues=queues)


@pytest.mark.asyncio
async def test_a_posted_signal_starts_its_playbook(client: Client, db_url: str) -> None:
    store = playbook_store(db_url)
    mark_all_evaluated(store)  # the history is context; only the posted signal is news
    queue = f"e2e-{uuid.uuid4()}"
    pipe = pipeline(store, client, queue)
    app = create_app(
        store,
        build_people(),
        FakeActions(store),
        session_secret=SECRET,
        hasher=FAST,
        sources=Sources({"warehouse": SourceSpec(auth="token", secret_env="T")}, {"T": TOKEN}),
        on_stored=pipe.wake.set,
    )
    worker = make_worker(client, store, queue)
    loop = asyncio.create_task(pipe.run_forever(poll=30))  # only the post can wake it in time
    try:
        async with worker, serving(app) as url, httpx.AsyncClient(base_url=url) as http:
            r = await http.post(
                "/v1/signals", json=todays_usage(), headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert r.status_code == 202, r.text

            # the runs index gets its row before the start, and the run id once it started
            def started() -> bool:
                return any(x.workflow_id.startswith(PLAYBOOK) and x.run_id for x in runs(store))

            await until(started, "the playbook's start")
            run = next(x for x in runs(store) if x.workflow_id.startswith(PLAYBOOK))
            handle = client.get_workflow_handle(run.workflow_id)
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            await until(lambda: bool(local_tasks(store, run.workflow_id)), "the CSM's task")
            task = local_tasks(store, run.workflow_id)[0]
            assert (task.account_id, task.assignee) == ("ACME", "csm-01")
            assert pending_signals(store, 10) == []
            # the same delivery again starts nothing more
            again = await http.post(
                "/v1/signals", json=todays_usage(), headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert again.json()["duplicates"] == 1
            for x in runs(store):  # leave nothing open on this queue
                await client.get_workflow_handle(x.workflow_id).terminate("test over")
    finally:
        loop.cancel()
        pipe.runtime.close()
    assert sum(1 for x in runs(store) if x.workflow_id.startswith(PLAYBOOK)) == 1


@pytest.mark.asyncio
async def test_a_signal_acknowledged_by_a_killed_process_is_evaluated_after_restart(
    client: Client, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    mark_all_evaluated(store)
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  warehouse: {auth: token, secret_env: E2E_SOURCE_TOKEN}\n"
    )
    environ = {
        **os.environ,
        "E2E_SOURCE_TOKEN": TOKEN,
        "CSAUTO_SOURCES_PATH": str(tmp_path / "sources.yaml"),
        "CSAUTO_PEOPLE_PATH": str(ROOT / "people.yaml"),
        "CSAUTO_SESSION_SECRET": SECRET,
        # nothing listens there: the process takes signals in and never evaluates them
        "CSAUTO_TEMPORAL_ADDRESS": "127.0.0.1:1",
    }
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "csautomation",
            "serve",
            "--port",
            str(port),
            "--database-url",
            db_url,
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await _until_up(http, proc)
            r = await http.post(
                "/v1/signals",
                json=todays_usage("crash:beta", "BETA"),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert r.status_code == 202, r.text
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no flush: the 202 was the promise
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert [p.signal.idempotency_key for p in pending_signals(store, 10)] == ["crash:beta"]
    queue = f"e2e-{uuid.uuid4()}"
    pipe = pipeline(store, client, queue)  # a fresh pipeline: nothing but the store carries over
    try:
        evaluated, dispatched = await pipe.run_once()
        assert evaluated == 1 and dispatched >= 1
        prefix = "playbook:usage-decline:usage-recovery:BETA:"
        started = [x for x in runs(store) if x.workflow_id.startswith(prefix)]
        assert len(started) == 1 and started[0].run_id is not None
        for x in runs(store):
            await client.get_workflow_handle(x.workflow_id).terminate("test over")
    finally:
        pipe.runtime.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until_up(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the intake process exited: {out}")
        try:
            if (await http.get("/openapi.json")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the intake process did not start")
        await asyncio.sleep(0.05)
