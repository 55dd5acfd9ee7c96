"""`csauto sources status` after the scheduler's pull jobs ran (the real job path: the
lease taken, each run key claimed, `run_pull` on the real pull kinds) against the fake
HubSpot and a SQLite warehouse, and after the intake took a push source's signals: every
source of schedules.yaml and sources.yaml in one table, and the same on /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account
from csautomation.ingest.intake import Intake
from csautomation.ingest.sources import Caller, SourceSpec
from csautomation.ingest.writer import SignalWriter
from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling import jobs
from csautomation.scheduling.config import load_schedules
from csautomation.scheduling.jobs import JobContext
from csautomation.scheduling.leader import Lease
from csautomation.scheduling.source_status import SourcesCollector
from csautomation.store.facts import FactsReader
from csautomation.store.scheduler_tables import create_tables
from fakes.hubspot import FakeHubSpot
from ingest.test_pull_hubspot_companies import TOKEN, hubspot_ctx

ROOT = Path(__file__).resolve().parents[2]
FIRE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
runner = CliRunner()


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN, ca=trustme.CA()) as server:
        assert isinstance(server, FakeHubSpot)
        yield server


def write_config(folder: Path) -> tuple[Path, Path]:
    schedules = {
        "pulls": {
            "hubspot-companies": {
                "kind": "hubspot_companies",
                "every": "15m",
                "options": {"properties": {"arr": "csauto_arr"}, "per_second": 50,
                            "defaults": {"tier": "smb"}, "attempts": 1},
            },
            "warehouse-usage": {
                "kind": "sql_query",
                "every": "1h",
                "options": {
                    "url_env": "CSAUTO_WAREHOUSE_URL",
                    "query": "SELECT account_id, day, logins, active_users, seq FROM usage "
                    "WHERE seq > :cursor ORDER BY seq LIMIT :limit",
                    "cursor_column": "seq",
                    "start": 0,
                    "into": "signals",
                    "signal_type": "usage_daily",
                    "columns": {"account_id": "account_id", "day": "occurred_at",
                                "logins": "payload.logins", "active_users": "payload.active_users"},
                },
            },
            "zendesk-tickets": {"kind": "zendesk_tickets", "every": "15m", "enabled": False},
        }
    }  # fmt: skip
    sources = {
        "sources": {
            "product-analytics": {"auth": "token", "secret_env": "CSAUTO_TEST_PA_TOKEN"},
            "crm-webhooks": {"auth": "hmac", "secret_env": "CSAUTO_TEST_CRM", "enabled": False},
        }
    }
    (folder / "schedules.yaml").write_text(yaml.safe_dump(schedules), encoding="utf-8")
    (folder / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
    return folder / "schedules.yaml", folder / "sources.yaml"


def warehouse(folder: Path) -> str:
    url = f"sqlite:///{folder}/warehouse.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("create table usage (account_id text, day text, logins int, "
                          "active_users int, seq int)"))  # fmt: skip
        for seq in range(1, 6):
            day = (FIRE - timedelta(days=seq)).date().isoformat()
            conn.execute(
                text("insert into usage values (:a, :d, :l, 3, :s)"),
                {"a": "ACME", "d": day, "l": -1 if seq == 5 else 20, "s": seq},
            )
    engine.dispose()
    return url


def push(store: Any) -> None:
    """The intake takes one good and one bad signal from product-analytics."""
    intake = Intake(store, SignalWriter(store))
    caller = Caller("product-analytics", SourceSpec(auth="token", secret_env="X_TOKEN"))
    good = {"type": "usage_daily", "account_id": "ACME", "occurred_at": FIRE.isoformat(),
            "payload": {"logins": 5, "active_users": 2},
            "idempotency_key": "pa:ACME:1"}  # fmt: skip
    bad = good | {"idempotency_key": "pa:ACME:2", "payload": {"logins": "many"}}
    asyncio.run(intake.take(caller, [good, bad]))
    intake.tallies.flush()  # what a running API writes within a second


def test_sources_status_prints_every_source_after_the_scheduler_ran_its_pulls(
    hubspot: FakeHubSpot, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pull_ctx = hubspot_ctx(hubspot, tmp_path, db_url, monkeypatch)
    store = pull_ctx.store
    store.upsert_accounts([Account(id="ACME", name="Acme", tier="enterprise")])
    create_tables(store.engine)
    schedules_path, sources_path = write_config(tmp_path)
    monkeypatch.setenv("CSAUTO_WAREHOUSE_URL", warehouse(tmp_path))
    for i, acct in enumerate(("ACME", "GLOBEX", "BAD ID!")):
        hubspot.put_company({"csauto_account_id": acct, "name": acct, "csauto_arr": "1000"},
                            FIRE - timedelta(hours=3 - i))  # fmt: skip
    runtime = RuleRuntime([ROOT / "rules"], load_health_model())
    lease = Lease(store.engine, holder="scheduler-a", clock=lambda: FIRE + timedelta(seconds=1))
    assert lease.acquire()
    context = JobContext(
        store=store,
        runtime=runtime,
        schedules=load_schedules(schedules_path, pull_options=True),
        lease=lease,
        connectors_path=pull_ctx.connectors_path,
        facts=FactsReader(store, runtime.model),
    )
    jobs.install(context)
    try:
        first = jobs.pull_job("hubspot-companies", fire_time=FIRE)
        assert first is not None and (first["accounts"], first["held"]) == (2, 1)
        assert jobs.pull_job("hubspot-companies", fire_time=FIRE) is None  # claimed once
        sql = jobs.pull_job("warehouse-usage", fire_time=FIRE)
        assert sql is not None and (sql["stored"], sql["held"]) == (4, 1)
        hubspot.down = True
        with pytest.raises(Exception, match="HTTP 503"):
            jobs.pull_job("hubspot-companies", fire_time=FIRE + timedelta(minutes=5))
        hubspot.down = False
        assert jobs.pull_job("warehouse-usage", fire_time=FIRE + timedelta(minutes=5)) == sql | {
            "fetched": 0,
            "stored": 0,
            "accounts": 0,
            "held": 0,
        }  # a re-run brings nothing twice
    finally:
        jobs.uninstall(context)
        runtime.close()
    push(store)

    args = ["sources", "status", "--schedules", str(schedules_path), "--sources",
            str(sources_path), "--database-url", db_url]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    printed = result.output
    print(printed)  # the table, with -s
    assert "None" not in printed and "{{" not in printed and "Traceback" not in printed
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in printed.splitlines() if line.startswith("│")}  # fmt: skip
    assert set(rows) == {
        "hubspot-companies", "warehouse-usage", "zendesk-tickets", "product-analytics",
        "crm-webhooks",
    }  # fmt: skip
    day = (FIRE + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M")
    kind, enabled, last, outcome, brought, held, _lag, error = rows["hubspot-companies"]
    assert (kind, enabled, last, outcome, brought, held) == (
        "hubspot_companies",
        "yes",
        day,
        "failed",
        "4",
        "1",
    )  # fmt: skip  (2 accounts and their 2 contract_updates)
    assert error.startswith(f"{day}: hubspot pull_companies (HTTP 503)")
    kind, enabled, last, outcome, brought, held, lag, error = rows["warehouse-usage"]
    assert (kind, outcome, brought, held, error) == ("sql_query", "done", "4", "1", "-")
    assert lag.endswith("m") or lag.endswith("s")
    assert rows["zendesk-tickets"][1:5] == ["no", "never", "never", "0"]
    kind, enabled, _last, outcome, brought, held, _lag, error = rows["product-analytics"]
    assert (kind, enabled, outcome, brought, held) == ("push (token)", "yes", "received", "1", "1")
    assert "held: payload.logins: " in error
    assert rows["crm-webhooks"][:2] == ["push (hmac)", "no"]

    registry = CollectorRegistry()
    registry.register(SourcesCollector(store, schedules_path, sources_path))
    scraped = generate_latest(registry).decode()
    assert 'csauto_source_rows_total{kind="sql_query",source="warehouse-usage"} 4.0' in scraped
    assert (
        'csauto_source_rows_held{kind="hubspot_companies",source="hubspot-companies"} 1.0'
        in scraped
    )
    assert (
        'csauto_source_last_run_failed{kind="hubspot_companies",source="hubspot-companies"} 1.0'
        in scraped
    )
    assert 'csauto_source_enabled{kind="zendesk_tickets",source="zendesk-tickets"} 0.0' in scraped
    assert 'csauto_source_rows_total{kind="push (token)",source="product-analytics"} 1.0' in scraped
