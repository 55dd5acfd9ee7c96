"""A generic, signed webhook: one JSON POST per notification, with `httpx`.

Each delivery carries

    <timestamp_header>: <unix seconds>
    <signature_header>: sha256=<hex HMAC-SHA256 of f"{timestamp}.{body}" with the secret>
    Idempotency-Key:    <workflow id>:<step id>

Receivers check the signature with `verify_signature` (or its equivalent), reject stale
timestamps (replays), and deduplicate on Idempotency-Key: we retry on timeouts, so a
receiver may see the same delivery more than once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping

import httpx

from csautomation.connectors.base import NotifyRequest, Receipt
from csautomation.connectors.config import WebhookConfig, secret
from csautomation.connectors.http import HttpConnector, classify_status, classify_transport
from csautomation.connectors.resilience import Guard

PREFIX = "sha256="


def _bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(key: str, timestamp: int | str, body: bytes | str) -> str:
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + _bytes(body), hashlib.sha256)
    return PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether `signature` signs `body` at `timestamp` with `secret`, and the timestamp is
    within `tolerance` seconds of `now` (a replayed old delivery fails)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


class WebhookNotifier(HttpConnector):
    config: WebhookConfig

    def __init__(
        self,
        config: WebhookConfig,
        env: Mapping[str, str] | None = None,
        verify: str | bool = True,
        guard: Guard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # no base URL: the configured URL is posted to as is (a base_url adds a slash)
        super().__init__(config, env, verify, guard)
        self._clock = clock

    def notify(self, request: NotifyRequest) -> Receipt:
        return self._guarded("notify", lambda: self._notify(request))

    def _notify(self, request: NotifyRequest) -> Receipt:
        key = secret(self.name, self.config.secret_env, self._env)
        payload = {
            "idempotency_key": request.idempotency_key,
            "workflow_id": request.workflow_id,
            "step_id": request.step_id,
            "account_id": request.account.id,
            "channel": request.channel,
            "text": request.text,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        stamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            self.config.timestamp_header: str(stamp),
            self.config.signature_header: sign(key, stamp, body),
            "Idempotency-Key": request.idempotency_key,
        }
        try:
            resp = self._http().post(self.config.url, content=body, headers=headers)
        except httpx.TransportError as exc:  # timeouts, resets, refused connections
            raise classify_transport(self.name, "notify", exc, [key]) from exc
        if not resp.is_success:
            raise classify_status(
                self.name, "notify", resp.status_code, resp.headers, resp.content, [key]
            )
        return Receipt(self.name, request.idempotency_key, created=True)

    def check(self) -> str:
        # posting a test delivery would notify someone: only the secret is verified
        secret(self.name, self.config.secret_env, self._env)
        return f"{self.config.secret_env} is set; deliveries go to {self.config.url}"
