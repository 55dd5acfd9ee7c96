"""Slack notifications through an incoming webhook, with `httpx`.

The webhook's URL is itself a secret (anyone holding it can post to the channel): it is
read from the environment at call time and redacted, whole and by path, from every error.

At-least-once: Slack webhooks take no idempotency key, so a retry after a lost answer (a
timeout, a reset) can post the same message twice. The receipt's record id is our
idempotency key, since Slack returns no message id. Slack answers `ok` as plain text, and
errors as plain text too (`invalid_payload` 400, `no_service` 404, `channel_not_found`
404, `channel_is_archived` 410, 429 with Retry-After).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from csautomation.connectors.base import NotifyRequest, Receipt
from csautomation.connectors.config import SlackConfig, secret
from csautomation.connectors.http import HttpConnector, classify_status, classify_transport
from csautomation.errors import ConnectorAuthError


def url_secrets(url: str) -> list[str]:
    """The URL and its parts that identify the webhook, for redaction."""
    path = urlsplit(url).path
    return [url, path, path.rstrip("/").rsplit("/", 1)[-1]]


class SlackNotifier(HttpConnector):
    """No base URL: the whole webhook URL is the secret, read per call."""

    config: SlackConfig

    def _url(self, operation: str) -> str:
        url = secret(self.name, self.config.webhook_url_env, self._env)
        split = urlsplit(url)
        if split.scheme != "https" or not split.netloc or len(split.path) < 2:
            raise ConnectorAuthError(
                self.name,
                operation,
                f"environment variable {self.config.webhook_url_env} does not hold an "
                "https webhook URL (the value is not shown)",
                retryable=False,
            )
        return url

    def notify(self, request: NotifyRequest) -> Receipt:
        return self._guarded("notify", lambda: self._notify(request))

    def _notify(self, request: NotifyRequest) -> Receipt:
        url = self._url("notify")
        hidden = url_secrets(url)
        try:
            resp = self._http().post(url, json={"text": request.text})
        except httpx.TransportError as exc:  # timeouts, resets, refused connections
            raise classify_transport(self.name, "notify", exc, hidden) from exc
        if not resp.is_success:
            raise classify_status(
                self.name, "notify", resp.status_code, resp.headers, resp.content, hidden
            )
        return Receipt(self.name, request.idempotency_key, created=True)

    def check(self) -> str:
        # a webhook has no side-effect-free call: only the configuration is verified
        self._url("check")
        return f"{self.config.webhook_url_env} holds an https webhook URL (not called)"
