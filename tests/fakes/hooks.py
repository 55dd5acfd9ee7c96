"""A fake receiver for Slack incoming webhooks and our signed generic webhook.

`POST /slack/<token>` answers like Slack: `ok` as text/plain, or a plain-text error
(`no_service` 404 for an unknown token, `invalid_payload` 400 for a body without text).
`POST /hook` verifies the signature with `verify_signature`, answers 401 when it fails,
and keeps one delivery per Idempotency-Key (repeats are counted, as a receiver would).
"""

from __future__ import annotations

import json
from typing import Any

import trustme

from csautomation.connectors.webhook import verify_signature
from fakes.server import FakeServer, Request, Response

TEXT = {"Content-Type": "text/plain; charset=utf-8"}


class FakeHooks(FakeServer):
    error_body = "internal_error"

    def __init__(
        self,
        secret: str = "whsec-test-0123456789abcdef",
        tokens: tuple[str, ...] = ("T0001/B0001/abcdefghijklmnopqrstuvwx",),
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__(ca)
        self.secret = secret
        self.tokens = set(tokens)
        self.signature_header = "x-csauto-signature"
        self.timestamp_header = "x-csauto-timestamp"
        self.slack_messages: list[dict[str, Any]] = []
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.repeats = 0
        self.route("POST", r"/slack/(?P<token>.+)", self.slack)
        self.route("POST", r"/hook", self.hook)

    def not_found_body(self, req: Request) -> Any:  # noqa: ARG002
        return "no_service"

    def slack_url(self, token: str | None = None) -> str:
        return f"{self.url}/slack/{token or next(iter(self.tokens))}"

    def slack(self, req: Request) -> Response:
        if req.match is None or req.match.group("token") not in self.tokens:
            return Response(404, "no_service", TEXT)
        try:
            payload = req.json()
        except ValueError:
            return Response(400, "invalid_payload", TEXT)
        if not isinstance(payload, dict) or not payload.get("text"):
            return Response(400, "invalid_payload", TEXT)
        self.slack_messages.append(payload)
        return Response(200, "ok", TEXT)

    def hook(self, req: Request) -> Response:
        stamp = req.headers.get(self.timestamp_header, "")
        signature = req.headers.get(self.signature_header, "")
        if not verify_signature(self.secret, stamp, req.body, signature):
            return Response(401, {"error": "invalid signature"})
        key = req.headers.get("idempotency-key", "")
        if key in self.deliveries:
            self.repeats += 1
            return Response(200, {"received": key, "duplicate": True})
        self.deliveries[key] = json.loads(req.body)
        return Response(200, {"received": key, "duplicate": False})
