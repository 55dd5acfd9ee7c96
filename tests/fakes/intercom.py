"""A fake Intercom REST API: `POST /conversations/search` as Intercom documents it.

Auth `Authorization: Bearer <access token>` (a wrong one: 401 with Intercom's
`{"type": "error.list", "errors": [{"code": "unauthorized", ...}]}`); the `Intercom-Version`
header is required (the client pins a version). The query is a single filter or an
AND/OR of filters over `updated_at` / `created_at` with `>`, `<`, `=`; results come in
`(updated_at, id)` order as `{"type": "conversation.list", "total_count", "conversations",
"pages": {"type": "pages", "page", "per_page", "total_pages", "next": {"per_page",
"starting_after"}}}`, `next` absent on the last page. `starting_after` is opaque (base64
of the position). `rate_limited` answers that many requests with Intercom's 429
(`X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset`, and Retry-After).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import trustme

from fakes.server import FakeServer, Request, Response

TOKEN = "dG9rOmZha2UtaW50ZXJjb20tYWNjZXNzLXRva2Vu"


def error(status: int, code: str, message: str) -> Response:
    body = {
        "type": "error.list",
        "request_id": "req-fake",
        "errors": [{"code": code, "message": message}],
    }
    return Response(status, body)


class FakeIntercom(FakeServer):
    error_body = {"type": "error.list", "errors": [{"code": "server_error", "message": "injected"}]}

    def __init__(self, token: str = TOKEN, ca: trustme.CA | None = None) -> None:
        super().__init__(ca)
        self.token = token
        self.conversations: list[dict[str, Any]] = []
        self.rate_limited = 0
        self.route("POST", "/conversations/search", self._search)

    def add(self, conversation: dict[str, Any]) -> None:
        with self.lock:
            self.conversations.append(conversation)

    def _search(self, req: Request) -> Response:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return error(401, "unauthorized", "Access Token Invalid")
        if not req.headers.get("intercom-version"):
            return error(400, "intercom_version_invalid", "Intercom-Version header missing")
        if self.rate_limited > 0:
            self.rate_limited -= 1
            reset = int(time.time()) + 1
            headers = {
                "X-RateLimit-Limit": "167",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
                "Retry-After": "1",
            }
            response = error(429, "rate_limit_exceeded", "Exceeded rate limit of 167 in 10_seconds")
            response.headers.update(headers)
            return response
        body = req.json()
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, dict):
            return error(400, "parameter_invalid", "query is required")
        paging = body.get("pagination") or {}
        per_page = int(paging.get("per_page", 20))
        if not 1 <= per_page <= 150:
            return error(400, "parameter_invalid", "per_page must be between 1 and 150")
        found = sorted(
            (c for c in self.conversations if _matches(c, query)),
            key=lambda c: (c["updated_at"], c["id"]),
        )
        start = 0
        if paging.get("starting_after"):
            try:
                start = int(base64.b64decode(paging["starting_after"]).decode())
            except (binascii.Error, ValueError):
                return error(400, "parameter_invalid", "starting_after is invalid")
        chunk = found[start : start + per_page]
        pages: dict[str, Any] = {
            "type": "pages",
            "page": start // per_page + 1,
            "per_page": per_page,
            "total_pages": max(1, -(-len(found) // per_page)),
        }
        if start + per_page < len(found):
            cursor = base64.b64encode(str(start + per_page).encode()).decode()
            pages["next"] = {"per_page": per_page, "starting_after": cursor}
        return Response(
            200,
            {
                "type": "conversation.list",
                "pages": pages,
                "total_count": len(found),
                "conversations": chunk,
            },
        )


def _matches(conv: dict[str, Any], query: dict[str, Any]) -> bool:
    op = query.get("operator")
    if op in ("AND", "OR"):
        results = [_matches(conv, q) for q in query.get("value", [])]
        return all(results) if op == "AND" else any(results)
    value = conv.get(str(query.get("field")))
    wanted = query.get("value")
    if not isinstance(value, int) or not isinstance(wanted, int):
        return False
    return {">": value > wanted, "<": value < wanted, "=": value == wanted}.get(str(op), False)
