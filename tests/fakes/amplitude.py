"""A fake Amplitude Export API speaking Amplitude's documented shapes: `GET /api/2/export
?start=YYYYMMDDTHH&end=YYYYMMDDTHH` with HTTP Basic `{api_key}:{secret_key}`, the range of
upload hours (both inclusive, UTC), the answer a zip holding one gzipped JSON-lines file
per upload hour (`{project}/{project}_{YYYY-MM-DD}_{H}#0.json.gz`, as Amplitude names
them); 404 when the range holds no data; 400 when the export is over the size limit
(`max_export_events` stands for Amplitude's 4 GB); `rate_limited` answers the next
requests 429 with `Retry-After`."""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import json
import uuid
import zipfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import trustme

from fakes.server import FakeServer, Request, Response

HOUR_FORMAT = "%Y%m%dT%H"


def amp_time(moment: datetime) -> str:
    """Amplitude writes UTC times as `2026-10-01 12:00:00.123456`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class FakeAmplitude(FakeServer):
    error_body = {"error": "Internal Server Error"}

    def __init__(
        self,
        project: str = "187520",
        api_key: str = "amp-api-key-0f3b7c",
        secret_key: str = "amp-secret-key-9d1e44a2",
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__(ca)
        self.project = project
        self.api_key = api_key
        self.secret_key = secret_key
        self.max_export_events: int | None = None  # more in one export: 400, as over 4 GB
        self.rate_limited = 0  # the next requests answered 429
        self.retry_after = "3"
        # upload hour -> the lines uploaded in it (events, or anything a test puts there)
        self.hours: dict[str, list[str]] = defaultdict(list)
        self._ids = itertools.count(1)
        self.route("GET", r"/api/2/export", self.export)

    def add_event(
        self,
        event_type: str,
        user_id: str,
        at: datetime,
        uploaded: datetime | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """An event as the export has it; uploaded a few seconds after it happened."""
        upload = uploaded or at + timedelta(seconds=5)
        event = {
            "event_type": event_type,
            "user_id": user_id,
            "device_id": f"dev-{user_id}",
            "event_time": amp_time(at),
            "server_upload_time": amp_time(upload),
            "client_upload_time": amp_time(upload),
            "event_id": next(self._ids),
            "uuid": str(uuid.uuid4()),
            "$insert_id": str(uuid.uuid4()),
            "event_properties": {},
            "user_properties": {},
            "groups": {},
            "group_properties": {},
            **fields,
        }
        self.add_line(json.dumps(event), upload)
        return event

    def add_line(self, line: str, uploaded: datetime) -> None:
        with self.lock:
            self.hours[uploaded.astimezone(UTC).strftime(HOUR_FORMAT)].append(line)

    def _authorized(self, req: Request) -> bool:
        expected = base64.b64encode(f"{self.api_key}:{self.secret_key}".encode()).decode()
        return req.headers.get("authorization") == f"Basic {expected}"

    def export(self, req: Request) -> Response:
        if not self._authorized(req):
            return Response(401, {"error": "Invalid API key or secret key"})
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return Response(429, {"error": "Too many requests"}, {"Retry-After": self.retry_after})
        try:
            start = datetime.strptime(req.query["start"][0], HOUR_FORMAT)
            end = datetime.strptime(req.query["end"][0], HOUR_FORMAT)
        except (KeyError, ValueError):
            return Response(400, "Invalid start or end parameter", {"Content-Type": "text/plain"})
        hours = []
        at = start
        while at <= end:
            hours.append(at.strftime(HOUR_FORMAT))
            at += timedelta(hours=1)
        chosen = {h: list(self.hours[h]) for h in hours if self.hours.get(h)}
        if not chosen:
            return Response(404, "Raw data files were not found.", {"Content-Type": "text/plain"})
        total = sum(len(lines) for lines in chosen.values())
        if self.max_export_events is not None and total > self.max_export_events:
            text = "The file size of the exported data is too large. Shorten the time ranges."
            return Response(400, text, {"Content-Type": "text/plain"})
        return Response(200, self._zip(chosen), {"Content-Type": "application/zip"})

    def _zip(self, chosen: dict[str, list[str]]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for hour, lines in sorted(chosen.items()):
                at = datetime.strptime(hour, HOUR_FORMAT)
                name = f"{self.project}/{self.project}_{at:%Y-%m-%d}_{at.hour}#0.json.gz"
                archive.writestr(name, gzip.compress(("\n".join(lines) + "\n").encode()))
        return buf.getvalue()
