"""The Amplitude usage pull: the Export API's events, hour by hour, as daily usage per
account (`usage_daily`, through usage_events.py).

Amplitude's documented Export API (amplitude.com/docs/apis/analytics/export):
`GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH`, HTTP Basic with the project's API
key and secret key; the range is of upload time (`server_upload_time`), both hours
inclusive, in UTC; the answer is a zip of gzipped JSON-lines files. Data can be exported
about two hours after upload, so the newest hour read is the one that ended `delay_hours`
ago. An export over 4 GB is refused with a 400: the window is halved, down to one hour.
A range with no data answers 404 (nothing to read). The cursor is the last hour read.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zipfile
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from pydantic import AwareDatetime, Field

from csautomation.connectors.config import EnvName
from csautomation.errors import (
    ConfigError,
    ConnectorNotFoundError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from csautomation.ingest.pulls.common import PullContext, PullOptions, Tally
from csautomation.ingest.pulls.export_http import ExportClient, credentials
from csautomation.ingest.pulls.usage_events import Aggregator, BadRow, UsageEvent, UsageMapping
from csautomation.store.pull_tables import load_cursor, save_cursor

KIND_AMPLITUDE = "amplitude_usage"
HOSTS = {"us": "https://amplitude.com", "eu": "https://analytics.eu.amplitude.com"}
HOUR = timedelta(hours=1)
HOUR_FORMAT = "%Y%m%dT%H"
SPOOL = 64 * 1024 * 1024  # an export larger than this waits on disk, not in memory


class AmplitudeUsageOptions(PullOptions):
    project: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")  # the project id, in the keys
    api_key_env: EnvName = "AMPLITUDE_API_KEY"
    secret_key_env: EnvName = "AMPLITUDE_SECRET_KEY"
    region: Literal["us", "eu"] = "us"  # the project's data residency
    url: str | None = Field(default=None, pattern=r"^https://")  # instead of the region's
    mapping: UsageMapping
    start: AwareDatetime | None = None  # the first pull's first hour; unset: first_days ago
    first_days: int = Field(default=30, ge=1, le=365)
    hours_per_request: int = Field(default=24, ge=1, le=24 * 31)
    delay_hours: int = Field(default=2, ge=0, le=48)
    max_requests: int = Field(default=24, ge=1, le=1000)  # per run; the rest next run
    max_retries: int = Field(default=3, ge=0, le=10)
    max_wait: float = Field(default=120, ge=0, le=3600)  # longest Retry-After waited here
    timeout: float = Field(default=300, gt=0, le=3600)

    def cursor_name(self) -> str:
        return self.name or self.project


def pull_amplitude_usage(opts: AmplitudeUsageOptions, ctx: PullContext, tally: Tally) -> str:
    name = opts.cursor_name()
    key, secret = credentials(KIND_AMPLITUDE, opts.api_key_env, opts.secret_key_env)
    saved = load_cursor(ctx.store.engine, KIND_AMPLITUDE, name)
    if saved:
        start = _hour(saved) + HOUR
    else:
        first = opts.start or ctx.now - timedelta(days=opts.first_days)
        start = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    # the newest hour whose data can be exported: sent in hour H, exportable at H+1+delay
    last = ctx.now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last -= HOUR * (opts.delay_hours + 1)
    client = ExportClient(
        "amplitude",
        opts.url or HOSTS[opts.region],
        (key, secret),
        timeout=opts.timeout,
        max_retries=opts.max_retries,
        max_wait=opts.max_wait,
    )
    agg = Aggregator(opts.mapping, "amplitude", opts.project, KIND_AMPLITUDE)
    span = opts.hours_per_request
    cursor = saved or ""
    try:
        while start <= last and client.requests < opts.max_requests:
            end = min(start + HOUR * (span - 1), last)
            try:
                tally.fetched += _export(client, agg, start, end)
            except ConnectorValidationError as exc:
                if exc.status != 400 or end == start:
                    raise  # one hour over 4 GB: Amplitude's S3 export is the way
                span = max(1, int((end - start) / HOUR + 1) // 2)
                continue
            agg.commit(ctx, tally)
            cursor = end.strftime(HOUR_FORMAT)
            save_cursor(ctx.store.engine, KIND_AMPLITUDE, name, cursor, ctx.now)
            start = end + HOUR
    finally:
        client.close()
    return cursor


def _export(client: ExportClient, agg: Aggregator, start: datetime, end: datetime) -> int:
    """Read the hours start..end into `agg`; returns the rows read."""
    hours: list[str] = []
    at = start
    while at <= end:
        hours.append(at.strftime(HOUR_FORMAT))
        at += HOUR
    known = set(hours)

    def read(resp: httpx.Response) -> int:
        agg.start()  # a read broken off and asked again counts from nothing
        n = 0
        for raw in _unzip(resp):
            n += 1
            event = _event(raw)
            if isinstance(event, BadRow):
                agg.bad(hours[0], raw, event)
            else:
                agg.add(_upload_hour(event.data, known, hours[0]), event, raw)
        return n

    try:
        n = client.get("export", "/api/2/export", {"start": hours[0], "end": hours[-1]}, read)
    except ConnectorNotFoundError:
        agg.start()
        n = 0  # no data uploaded in the range
    for h in hours:
        agg.window(h)
    return n


def _unzip(resp: httpx.Response) -> Iterator[str]:
    """Every line of every gzipped file in the zip, in the files' order. The zip waits in
    a spool (on disk past SPOOL bytes): its directory is at its end."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as spool:
        for chunk in resp.iter_bytes():
            spool.write(chunk)
        spool.seek(0)
        try:
            with zipfile.ZipFile(spool) as archive:
                for info in sorted(archive.infolist(), key=lambda i: i.filename):
                    if info.is_dir():
                        continue
                    with archive.open(info) as member, gzip.open(member) as unpacked:
                        text = io.TextIOWrapper(unpacked, encoding="utf-8", errors="replace")
                        for line in text:
                            if line.strip():
                                yield line.rstrip("\n")
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            # a download cut short: asked again
            raise ConnectorUnavailableError(
                "amplitude", "export", f"the export is not a whole zip of gzip files: {exc}"
            ) from exc


def _event(raw: str) -> UsageEvent | BadRow:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return BadRow("", f"not JSON: {exc}")
    if not isinstance(data, dict):
        return BadRow("", f"not an event object but {type(data).__name__}")
    name = data.get("event_type")
    if not isinstance(name, str) or not name:
        return BadRow("event_type", "missing: every Amplitude event has one")
    at = _time(data.get("event_time"))
    if at is None:
        return BadRow("event_time", f"not a time: {str(data.get('event_time'))[:40]!r}")
    user = data.get("user_id") or data.get("device_id")
    dedupe = data.get("uuid") or data.get("$insert_id")
    return UsageEvent(name, at, str(user) if user else None, data, str(dedupe) if dedupe else None)


def _time(value: object) -> datetime | None:
    """Amplitude's times are UTC, written `2026-10-01 12:00:00.123456`."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _upload_hour(data: Mapping[str, object], hours: Collection[str], first: str) -> str:
    """The event's upload hour, the window it belongs to whatever the request's span."""
    at = _time(data.get("server_upload_time"))
    hour = at.strftime(HOUR_FORMAT) if at else ""
    return hour if hour in hours else first


def _hour(text: str) -> datetime:
    try:
        return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ConfigError(f"the saved Amplitude cursor is not an hour: {text!r}") from exc
