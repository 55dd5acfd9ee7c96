"""The Mixpanel usage pull against a fake raw event export over HTTPS: 60 days of events
become one `usage_daily` per account and day and fire usage-decline, within Mixpanel's
3 queries a second and a run's share of 60 an hour; a 429's Retry-After is waited; rows
that are not events are held with why; a re-run brings nothing twice; a repeated
$insert_id counts once; events that arrive late raise their day under the same key."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.errors import ConnectorError
from csautomation.ingest.pulls import KIND_MIXPANEL, MixpanelUsageOptions, PullContext, run_pull
from csautomation.ingest.pulls.mixpanel import HOSTS
from csautomation.store.pull_tables import load_cursor
from csautomation.store.quarantine import held
from factories import new_store
from fakes.mixpanel import FakeMixpanel
from fakes.server import Faults
from usage_pull_support import (
    DAYS,
    FIRST_DAY,
    MAPPING,
    NOW,
    FakeClock,
    doc_blocks,
    doc_section,
    evaluate,
    expected,
    fake_clock,
    shipped_pull,
    sixty_days,
    usage_signals,
    usage_store,
)

OPTIONS: dict[str, Any] = {
    "project_id": 2195193,
    "mapping": MAPPING | {"account_property": "properties.account_id"},
    "first_days": DAYS,
    "max_requests": 30,
}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return fake_clock(monkeypatch)


@pytest.fixture
def mp(clock: FakeClock) -> Iterator[FakeMixpanel]:
    with FakeMixpanel() as server:
        assert isinstance(server, FakeMixpanel)
        server.clock = clock  # its 3-a-second limit on the client's clock
        yield server


@pytest.fixture
def ctx(
    mp: FakeMixpanel, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> PullContext:
    monkeypatch.setenv("MIXPANEL_SA_USERNAME", mp.username)
    monkeypatch.setenv("MIXPANEL_SA_SECRET", mp.secret)
    monkeypatch.setenv("SSL_CERT_FILE", mp.ca_file(tmp_path))
    return PullContext(store=usage_store(new_store(db_url)), connectors_path=tmp_path, now=NOW)


def options(mp: FakeMixpanel, **over: Any) -> dict[str, Any]:
    return OPTIONS | {"url": mp.url} | over


def fill(mp: FakeMixpanel) -> None:
    """ACME's 60 days (its account_id property), BETA's user, one anonymous event, an
    event exported twice, an event no mapping counts, and two bad rows."""
    sixty_days(lambda name, user, at: mp.add_event(name, user, at, account_id="ACME"))
    day = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    mp.add_event("Signed In", "bob@beta.example", day)
    mp.add_event("Signed In", "someone@nowhere.example", day)
    twice = {"time": int(day.timestamp()), "distinct_id": "bob@beta.example", "$insert_id": "r1"}
    for _ in range(2):
        mp.add_line(json.dumps({"event": "Report Run", "properties": twice}), day)
    mp.add_event("Page Viewed", "bob@beta.example", day)  # not mapped: not asked for
    mp.add_line("<html>Bad gateway</html>", day)
    mp.add_line(json.dumps({"event": "Signed In", "properties": {"time": "noon"}}), day)


def key(account: str, n: int) -> str:
    return f"mixpanel:2195193:{account}:{(FIRST_DAY + timedelta(days=n)).isoformat()}"


@pytest.mark.asyncio
async def test_sixty_days_of_events_become_daily_usage_and_fire_usage_decline(
    mp: FakeMixpanel, ctx: PullContext, clock: FakeClock, client: Client
) -> None:
    fill(mp)
    mp.rate_limited = 1
    first = run_pull(KIND_MIXPANEL, options(mp), ctx)
    asked = list(mp.calls("GET", "/api/2.0/export"))
    assert len(asked) == 30  # the run's budget: every query counts, the 429's repeat too
    assert 2.0 in clock.waits  # the 429's Retry-After
    assert all(w <= 0.34 for w in clock.waits if w != 2.0)  # a third of a second apart
    assert first.cursor == (FIRST_DAY + timedelta(days=28)).isoformat()  # 29 days read
    events = json.loads(asked[-1].query["event"][0])
    assert events == ["Export", "Report Run", "Signed In"]  # only the mapped events
    # the next hours' runs go on, each reading its last two days again (the lookback)
    clock.now += 3600
    second = run_pull(KIND_MIXPANEL, options(mp), ctx)
    clock.now += 3600
    assert (
        clock.waits.count(2.0) == 1
        and second.cursor == (FIRST_DAY + timedelta(days=28 - 2 + 29)).isoformat()
    )
    assert run_pull(KIND_MIXPANEL, options(mp), ctx).cursor == NOW.date().isoformat()

    stored = usage_signals(ctx.store)
    acme = {k: p for k, (a, p, _) in stored.items() if a == "ACME"}
    assert acme == {key("ACME", n): expected(n) for n in range(DAYS)}
    # the Report Run exported twice counts once
    assert stored[key("BETA", 0)][1] == {"logins": 1, "active_users": 1, "feature_events": 1}
    bad = held(ctx.store, source="pull:mixpanel_usage")
    reasons = sorted((r.errors[0]["field"], r.errors[0]["message"][:9]) for r in bad)
    assert reasons == [("", "not JSON:"), ("properties.time", "not a Uni")]

    assert evaluate(ctx.store, client).get("usage-decline") == 1


def test_a_rerun_brings_nothing_twice_and_late_events_raise_their_day(
    mp: FakeMixpanel, ctx: PullContext
) -> None:
    fill(mp)
    run_pull(KIND_MIXPANEL, options(mp, max_requests=60), ctx)
    before = usage_signals(ctx.store)
    assert len(before) == DAYS + 1
    # read again: today and the two days before it (the lookback)
    rerun = run_pull(KIND_MIXPANEL, options(mp), ctx)
    assert rerun.stored == 0 and usage_signals(ctx.store) == before
    assert len(held(ctx.store, source="pull:mixpanel_usage")) == 2

    # yesterday gains three late sign-ins, seen by the next run's lookback
    yesterday = datetime.combine(NOW.date() - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    for k in range(3):
        mp.add_event(
            "Signed In", "late@acme.example", yesterday + timedelta(hours=k), account_id="ACME"
        )
    later = dataclasses.replace(ctx, now=NOW + timedelta(hours=1))
    assert run_pull(KIND_MIXPANEL, options(mp), later).stored == 1
    after = usage_signals(ctx.store)
    assert after.keys() == before.keys()
    grown = {**expected(DAYS - 1), "logins": 15, "active_users": 4}
    assert after[key("ACME", DAYS - 1)] == ("ACME", grown, True)  # pending evaluation again
    assert load_cursor(ctx.store.engine, KIND_MIXPANEL, "2195193") == NOW.date().isoformat()


def test_each_data_residency_has_its_own_host() -> None:
    assert HOSTS == {
        "us": "https://data.mixpanel.com",
        "eu": "https://data-eu.mixpanel.com",
        "in": "https://data-in.mixpanel.com",
    }
    opts = MixpanelUsageOptions.model_validate(OPTIONS | {"region": "eu"})
    assert opts.region == "eu" and opts.url is None and opts.max_requests <= 60


def test_faults_converge_without_losing_or_double_counting_an_event(
    mp: FakeMixpanel, ctx: PullContext
) -> None:
    """30% of requests fail (500, 503, 429, held past the timeout, reset); runs go on from
    the cursor until today is read, and every day's total is exact."""
    fill(mp)
    mp.faults = Faults(rate=0.3, seed=11)
    mp.hold_seconds = 0.8  # past the 0.5 s timeout
    opts = options(mp, max_requests=60, timeout=0.5, max_retries=1)
    for _ in range(60):
        try:
            if run_pull(KIND_MIXPANEL, opts, ctx).cursor == NOW.date().isoformat():
                break
        except ConnectorError:
            continue
    assert load_cursor(ctx.store.engine, KIND_MIXPANEL, "2195193") == NOW.date().isoformat()
    assert sum(mp.faults.injected.values()) >= 3
    acme = {k: p for k, (a, p, _) in usage_signals(ctx.store).items() if a == "ACME"}
    assert acme == {key("ACME", n): expected(n) for n in range(DAYS)}


def test_the_documented_worked_example_holds(mp: FakeMixpanel, ctx: PullContext) -> None:
    lines, [signal] = (b.splitlines() for b in doc_blocks(doc_section("Mixpanel"), "json"))
    for line in lines:
        mp.add_line(line, datetime.fromtimestamp(json.loads(line)["properties"]["time"], UTC))
    options = shipped_pull("mixpanel-usage") | {"url": mp.url, "first_days": 90}
    run_pull(KIND_MIXPANEL, options | {"max_requests": 60}, ctx)
    want = json.loads(signal)
    stored = usage_signals(ctx.store)
    assert stored == {want["idempotency_key"]: (want["account_id"], want["payload"], True)}


def test_held_rows_are_listed_with_their_reason_by_csauto_quarantine(
    mp: FakeMixpanel, ctx: PullContext, db_url: str
) -> None:
    fill(mp)
    run_pull(KIND_MIXPANEL, options(mp, max_requests=60), ctx)
    env = {"CSAUTO_DATABASE_URL": db_url, "COLUMNS": "200"}
    listed = CliRunner().invoke(
        app, ["quarantine", "list", "--source", "pull:mixpanel_usage"], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert "not JSON" in listed.output and "not a Unix time" in listed.output
