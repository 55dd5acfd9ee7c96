"""The Amplitude usage pull against a fake Export API over HTTPS: 60 days of events become
one `usage_daily` per account and day and fire usage-decline; a 429's Retry-After is
waited; rows that are not events are held with why; a re-run brings nothing twice; late
events raise their day's total under the same key; a 400 (over 4 GB) halves the window."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from csautomation.errors import ConfigError, ConnectorAuthError, ConnectorError
from csautomation.ingest.pulls import (
    KIND_AMPLITUDE,
    KIND_MIXPANEL,
    PULL_KINDS,
    PullContext,
    run_pull,
)
from csautomation.store.pull_tables import load_cursor
from csautomation.store.quarantine import held
from factories import new_store
from fakes.amplitude import FakeAmplitude
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
    "project": "187520",
    "mapping": MAPPING | {"account_property": "groups.company"},
    "first_days": DAYS + 1,
    "hours_per_request": 24 * 31,
}


@pytest.fixture
def amp() -> Iterator[FakeAmplitude]:
    with FakeAmplitude() as server:
        assert isinstance(server, FakeAmplitude)
        yield server


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return fake_clock(monkeypatch)


@pytest.fixture
def ctx(
    amp: FakeAmplitude, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> PullContext:
    monkeypatch.setenv("AMPLITUDE_API_KEY", amp.api_key)
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", amp.secret_key)
    monkeypatch.setenv("SSL_CERT_FILE", amp.ca_file(tmp_path))
    return PullContext(store=usage_store(new_store(db_url)), connectors_path=tmp_path, now=NOW)


def options(amp: FakeAmplitude, **over: Any) -> dict[str, Any]:
    return OPTIONS | {"url": amp.url} | over


def fill(amp: FakeAmplitude) -> None:
    """ACME's 60 days (its company group), BETA's user, one anonymous event, two bad rows."""
    sixty_days(lambda name, user, at: amp.add_event(name, user, at, groups={"company": ["ACME"]}))
    day = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    amp.add_event("Signed In", "bob@beta.example", day)
    amp.add_event("Signed In", "someone@nowhere.example", day)
    amp.add_line('{"event_type": "Signed In", "event_time": ', day)
    amp.add_line('{"event_type": "Signed In", "user_id": "x", "event_time": "soon"}', day)


def key(account: str, n: int) -> str:
    return f"amplitude:187520:{account}:{(FIRST_DAY + timedelta(days=n)).isoformat()}"


@pytest.mark.asyncio
async def test_sixty_days_of_events_become_daily_usage_and_fire_usage_decline(
    amp: FakeAmplitude, ctx: PullContext, clock: FakeClock, client: Client
) -> None:
    fill(amp)
    amp.rate_limited = 1
    result = run_pull(KIND_AMPLITUDE, options(amp), ctx)
    assert clock.waits == [3.0]  # the 429's Retry-After, then the same request again
    assert result.fetched == 60 * 2 + 30 * 40 + 30 * 12 + 4
    stored = usage_signals(ctx.store)
    acme = {k: v for k, v in stored.items() if v[0] == "ACME"}
    # 61 days, and the one the two requests split: stored, then replaced by its whole
    assert len(acme) == DAYS and result.stored == DAYS + 1 + 1
    for n in (0, 29, 30, DAYS - 1):
        assert acme[key("ACME", n)][1] == expected(n), n
    assert stored[key("BETA", 0)][1] == {"logins": 1, "active_users": 1, "feature_events": 0}
    # the cursor: the last hour whose export is ready (09:00 - 2 h delay - the hour itself)
    assert load_cursor(ctx.store.engine, KIND_AMPLITUDE, "187520") == "20300304T09"

    bad = held(ctx.store, source="pull:amplitude_usage")
    reasons = sorted((r.errors[0]["field"], r.errors[0]["message"][:9]) for r in bad)
    assert reasons == [("", "not JSON:"), ("event_time", "not a tim")]

    assert evaluate(ctx.store, client).get("usage-decline") == 1


@pytest.mark.usefixtures("clock")
def test_a_rerun_brings_nothing_twice_and_late_events_raise_their_day(
    amp: FakeAmplitude, ctx: PullContext
) -> None:
    fill(amp)
    run_pull(KIND_AMPLITUDE, options(amp), ctx)
    before = usage_signals(ctx.store)
    assert run_pull(KIND_AMPLITUDE, options(amp), ctx).stored == 0  # nothing new is ready

    # every hour read again from scratch (a cursor of another name): nothing stored twice
    assert run_pull(KIND_AMPLITUDE, options(amp, name="again"), ctx).stored == 0
    assert load_cursor(ctx.store.engine, KIND_AMPLITUDE, "again") == "20300304T09"
    assert usage_signals(ctx.store) == before
    assert len(held(ctx.store, source="pull:amplitude_usage")) == 2  # the same two rows

    # five sign-ins of day 10 by a new user, uploaded an hour from now: day 10's total
    # grows under its key; no second signal, the others untouched
    day10 = datetime.combine(FIRST_DAY + timedelta(days=10), datetime.min.time(), tzinfo=UTC)
    for k in range(5):
        amp.add_event(
            "Signed In",
            "late@acme.example",
            day10 + timedelta(hours=20, minutes=k),
            uploaded=NOW + timedelta(hours=1),
            groups={"company": ["ACME"]},
        )
    later = dataclasses.replace(ctx, now=NOW + timedelta(hours=4))
    assert run_pull(KIND_AMPLITUDE, options(amp), later).stored == 1
    after = usage_signals(ctx.store)
    assert after.keys() == before.keys()
    assert after[key("ACME", 10)] == (
        "ACME",
        {**expected(10), "logins": 45, "active_users": 9},
        True,
    )
    assert {k: v for k, v in after.items() if k != key("ACME", 10)} == {
        k: v for k, v in before.items() if k != key("ACME", 10)
    }


def test_an_export_over_the_size_limit_is_asked_again_in_halves(
    amp: FakeAmplitude, ctx: PullContext, clock: FakeClock
) -> None:
    fill(amp)
    amp.max_export_events = 400  # stands for Amplitude's 4 GB
    result = run_pull(KIND_AMPLITUDE, options(amp, max_requests=200), ctx)
    asked = list(amp.calls("GET", "/api/2/export"))
    assert len(asked) > 3 and result.fetched == 60 * 2 + 30 * 40 + 30 * 12 + 4
    acme = {k: p for k, (a, p, _) in usage_signals(ctx.store).items() if a == "ACME"}
    assert acme == {key("ACME", n): expected(n) for n in range(DAYS)}
    assert clock.waits == []  # a 400 is not waited on: the window shrinks at once


def test_refused_credentials_stop_the_pull_and_no_secret_is_logged(
    amp: FakeAmplitude,
    ctx: PullContext,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fill(amp)
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", "amp-wrong-secret-77aa")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectorAuthError) as err:
        run_pull(KIND_AMPLITUDE, options(amp), ctx)
    assert err.value.status == 401 and clock.waits == []  # not retried
    assert load_cursor(ctx.store.engine, KIND_AMPLITUDE, "187520") is None
    assert "amp-wrong-secret-77aa" not in caplog.text + str(err.value)

    monkeypatch.delenv("AMPLITUDE_SECRET_KEY")
    with pytest.raises(ConfigError, match="AMPLITUDE_SECRET_KEY is not set"):
        run_pull(KIND_AMPLITUDE, options(amp), ctx)


@pytest.mark.parametrize(
    ("mapping", "words"),
    [
        ({"fields": {"active_users": {"events": ["A"]}}, "user_accounts": {"u": "A"}}, "logins"),
        ({"fields": {"logins": {"events": ["A"]}}}, "account_property, user_accounts"),
        ({"fields": {"logins": {"events": ["A"], "unit": "hours"}}}, "unit"),
        ({"fields": {"seats": {"events": ["A"]}}, "account_property": "x"}, "seats"),
    ],
)
def test_a_mapping_that_cannot_work_is_a_config_error(
    ctx: PullContext, mapping: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        run_pull(KIND_AMPLITUDE, {"project": "187520", "mapping": mapping}, ctx)


@pytest.mark.usefixtures("clock")
def test_faults_converge_without_losing_or_double_counting_an_event(
    amp: FakeAmplitude, ctx: PullContext
) -> None:
    """30% of requests fail (500, 503, 429, held past the timeout, reset); runs go on from
    the cursor until every hour is read, and every day's total is exact."""
    fill(amp)
    amp.faults = Faults(rate=0.3, seed=7)
    amp.hold_seconds = 0.8  # past the 0.5 s timeout
    opts = options(amp, hours_per_request=24 * 7, timeout=0.5, max_retries=1)
    for _ in range(60):
        try:
            if run_pull(KIND_AMPLITUDE, opts, ctx).cursor == "20300304T09":
                break
        except ConnectorError:
            continue
    assert load_cursor(ctx.store.engine, KIND_AMPLITUDE, "187520") == "20300304T09"
    assert sum(amp.faults.injected.values()) >= 3
    acme = {k: p for k, (a, p, _) in usage_signals(ctx.store).items() if a == "ACME"}
    assert acme == {key("ACME", n): expected(n) for n in range(DAYS)}


@pytest.mark.usefixtures("clock")
def test_the_documented_worked_example_holds(amp: FakeAmplitude, ctx: PullContext) -> None:
    section = doc_section("Amplitude")
    [config] = doc_blocks(section, "yaml")
    lines, [signal] = (b.splitlines() for b in doc_blocks(section, "json"))
    for line in lines:
        upload = datetime.fromisoformat(json.loads(line)["server_upload_time"])
        amp.add_line(line, upload.replace(tzinfo=UTC))
    pull = yaml.safe_load(config)["amplitude-usage"]
    over = {"url": amp.url, "first_days": 90, "hours_per_request": 24 * 31}
    run_pull(pull["kind"], pull["options"] | over, ctx)
    want = json.loads(signal)
    stored = usage_signals(ctx.store)
    assert stored == {want["idempotency_key"]: (want["account_id"], want["payload"], True)}


def test_the_shipped_schedules_pulls_validate() -> None:
    for name in ("amplitude-usage", "mixpanel-usage"):
        options = shipped_pull(name)
        kind = {"amplitude-usage": KIND_AMPLITUDE, "mixpanel-usage": KIND_MIXPANEL}[name]
        assert PULL_KINDS[kind].model_validate(options)


def test_a_secret_given_for_an_env_name_is_refused_unshown(ctx: PullContext) -> None:
    options = {"project": "187520", "mapping": MAPPING | {"account_property": "x"}}
    with pytest.raises(ConfigError) as err:
        run_pull(KIND_AMPLITUDE, options | {"secret_key_env": "s3cr3t-value-abc"}, ctx)
    assert "s3cr3t-value-abc" not in str(err.value) and "secret_key_env" in str(err.value)
