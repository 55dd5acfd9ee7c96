"""The Mixpanel usage pull: the raw event export, day by day, as daily usage per account
(`usage_daily`, through usage_events.py).

Mixpanel's documented raw export (developer.mixpanel.com/reference/raw-event-export):
`GET https://{data|data-eu|data-in}.mixpanel.com/api/2.0/export?project_id=&from_date=
&to_date=` (dates inclusive; UTC for projects made since 2023), HTTP Basic with a service
account, the answer JSON lines `{"event": ..., "properties": {"time", "distinct_id",
"$insert_id", ...}}`. Its limits: 60 queries an hour, 3 a second, 429 beyond; so one run
makes at most `max_requests` queries, a third of a second apart. The export is not
deduplicated: a repeat of (event, distinct_id, time, $insert_id) in a day counts once.

Events arrive late, so each run reads again the last `lookback_days` days before its
cursor (the last day read) up to today; a day read again replaces its own counts.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import httpx
from pydantic import Field

from csautomation.connectors.config import EnvName
from csautomation.errors import ConfigError
from csautomation.ingest.pulls.common import PullContext, PullOptions, Tally
from csautomation.ingest.pulls.export_http import ExportClient, credentials
from csautomation.ingest.pulls.usage_events import Aggregator, BadRow, UsageEvent, UsageMapping
from csautomation.store.pull_tables import load_cursor, save_cursor

KIND_MIXPANEL = "mixpanel_usage"
HOSTS = {
    "us": "https://data.mixpanel.com",
    "eu": "https://data-eu.mixpanel.com",
    "in": "https://data-in.mixpanel.com",
}


class MixpanelUsageOptions(PullOptions):
    project_id: int = Field(ge=1)
    username_env: EnvName = "MIXPANEL_SA_USERNAME"  # a service account's
    secret_env: EnvName = "MIXPANEL_SA_SECRET"
    region: Literal["us", "eu", "in"] = "us"  # the project's data residency
    url: str | None = Field(default=None, pattern=r"^https://")  # instead of the region's
    mapping: UsageMapping
    first_days: int = Field(default=30, ge=1, le=365)
    lookback_days: int = Field(default=3, ge=1, le=30)
    # Mixpanel allows 60 export queries an hour: keep runs x max_requests under it
    max_requests: int = Field(default=10, ge=1, le=60)
    min_interval: float = Field(default=0.34, ge=0, le=60)  # 3 queries a second at most
    max_retries: int = Field(default=3, ge=0, le=10)
    max_wait: float = Field(default=120, ge=0, le=3600)
    timeout: float = Field(default=300, gt=0, le=3600)

    def cursor_name(self) -> str:
        return self.name or str(self.project_id)


def pull_mixpanel_usage(opts: MixpanelUsageOptions, ctx: PullContext, tally: Tally) -> str:
    name = opts.cursor_name()
    username, secret = credentials(KIND_MIXPANEL, opts.username_env, opts.secret_env)
    saved = load_cursor(ctx.store.engine, KIND_MIXPANEL, name)
    today = ctx.now.astimezone(UTC).date()
    if saved:
        cursor_day = _day(saved)
        first = cursor_day - timedelta(days=opts.lookback_days - 1)
    else:
        cursor_day = None
        first = today - timedelta(days=opts.first_days)
    client = ExportClient(
        "mixpanel",
        opts.url or HOSTS[opts.region],
        (username, secret),
        timeout=opts.timeout,
        max_retries=opts.max_retries,
        max_wait=opts.max_wait,
        min_interval=opts.min_interval,
    )
    agg = Aggregator(opts.mapping, "mixpanel", str(opts.project_id), KIND_MIXPANEL)
    names = opts.mapping.event_names()
    day = first
    try:
        while day <= today and client.requests < opts.max_requests:
            params: dict[str, str | int] = {
                "project_id": opts.project_id,
                "from_date": day.isoformat(),
                "to_date": day.isoformat(),
            }
            if names is not None:
                params["event"] = json.dumps(names)
            window = day.isoformat()

            def read(resp: httpx.Response, window: str = window) -> int:
                agg.start()  # a read broken off and asked again counts from nothing
                n = 0
                for raw in resp.iter_lines():
                    if not raw.strip():
                        continue
                    n += 1
                    event = _event(raw)
                    if isinstance(event, BadRow):
                        agg.bad(window, raw, event)
                    else:
                        agg.add(window, event, raw)
                return n

            tally.fetched += client.get("export", "/api/2.0/export", params, read)
            agg.window(window)
            agg.commit(ctx, tally)
            if cursor_day is None or day > cursor_day:
                cursor_day = day
                save_cursor(ctx.store.engine, KIND_MIXPANEL, name, window, ctx.now)
            day += timedelta(days=1)
    finally:
        client.close()
    return cursor_day.isoformat() if cursor_day else ""


def _event(raw: str) -> UsageEvent | BadRow:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return BadRow("", f"not JSON: {exc}")
    if not isinstance(data, dict):
        return BadRow("", f"not an event object but {type(data).__name__}")
    name, props = data.get("event"), data.get("properties")
    if not isinstance(name, str) or not name:
        return BadRow("event", "missing: every Mixpanel event has a name")
    if not isinstance(props, dict):
        return BadRow("properties", "missing: every Mixpanel event has properties")
    stamp = props.get("time")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        return BadRow("properties.time", f"not a Unix time: {str(stamp)[:40]!r}")
    if stamp > 10**11:  # exported with time_in_ms
        stamp = stamp / 1000
    try:
        at = datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return BadRow("properties.time", f"not a Unix time: {stamp!r}")
    user = props.get("distinct_id")
    insert_id = props.get("$insert_id")
    dedupe = f"{name}\n{user}\n{stamp}\n{insert_id}" if insert_id else None
    return UsageEvent(name, at, str(user) if user not in (None, "") else None, data, dedupe)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"the saved Mixpanel cursor is not a day: {text!r}") from exc
