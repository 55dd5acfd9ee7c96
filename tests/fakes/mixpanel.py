"""A fake Mixpanel raw event export speaking Mixpanel's documented shapes: `GET
/api/2.0/export?project_id=&from_date=YYYY-MM-DD&to_date=YYYY-MM-DD[&event=["A","B"]]`
with a service account's HTTP Basic `{username}:{secret}`, the answer JSON lines
`{"event": ..., "properties": {"time": <unix seconds>, "distinct_id", "$insert_id",
"mp_processing_time_ms", ...}}` of the events whose UTC day is in the range (as for
projects made since 2023). Errors as Mixpanel writes them: `{"error": ..., "status":
"error"}`. `rate_limited` answers the next requests 429 with `Retry-After`; more than
`per_second` requests in one second of `clock` are refused 429 as Mixpanel does."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import trustme

from fakes.server import FakeServer, Request, Response


class FakeMixpanel(FakeServer):
    error_body = {"error": "Internal server error", "status": "error"}

    def __init__(
        self,
        project_id: int = 2195193,
        username: str = "csauto-export.3c5e1d.mp-service-account",
        secret: str = "mp-sa-secret-Zx81KqW0aa",
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__(ca)
        self.project_id = project_id
        self.username = username
        self.secret = secret
        self.rate_limited = 0  # the next requests answered 429
        self.retry_after = "2"
        self.per_second = 3
        self.clock: Callable[[], float] = time.monotonic
        self.lines: list[tuple[date, str]] = []  # (UTC day, the line as exported)
        self._recent: list[float] = []
        self.route("GET", r"/api/2.0/export", self.export)

    def add_event(self, event: str, distinct_id: str, at: datetime, **props: Any) -> None:
        properties = {
            "time": int(at.timestamp()),
            "distinct_id": distinct_id,
            "$insert_id": uuid.uuid4().hex,
            "mp_processing_time_ms": int(at.timestamp() * 1000) + 1500,
            **props,
        }
        self.add_line(json.dumps({"event": event, "properties": properties}), at)

    def add_line(self, line: str, at: datetime) -> None:
        with self.lock:
            self.lines.append((at.astimezone(UTC).date(), line))

    def _authorized(self, req: Request) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()
        return req.headers.get("authorization") == f"Basic {expected}"

    def export(self, req: Request) -> Response:
        if not self._authorized(req):
            return Response(
                401, {"error": "Invalid service account credentials", "status": "error"}
            )
        now = self.clock()
        self._recent = [t for t in self._recent if now - t < 1.0] + [now]
        if self.rate_limited > 0 or len(self._recent) > self.per_second:
            self.rate_limited = max(0, self.rate_limited - 1)
            body = {"error": "Query rate limit exceeded", "status": "error"}
            return Response(429, body, {"Retry-After": self.retry_after})
        try:
            project = int(req.query["project_id"][0])
            first = date.fromisoformat(req.query["from_date"][0])
            last = date.fromisoformat(req.query["to_date"][0])
        except (KeyError, ValueError):
            body = {"error": "from_date, to_date and project_id are required", "status": "error"}
            return Response(400, body)
        if project != self.project_id:
            return Response(403, {"error": "not a member of this project", "status": "error"})
        names = json.loads(req.query["event"][0]) if "event" in req.query else None
        out = []
        for day, line in self.lines:
            if not first <= day <= last:
                continue
            if names is not None:
                try:
                    if json.loads(line).get("event") not in names:
                        continue
                except (ValueError, AttributeError):
                    pass  # a broken line goes out as it is
            out.append(line)
        text = "".join(f"{line}\n" for line in out)
        return Response(200, text, {"Content-Type": "text/plain; charset=utf-8"})
