"""Errors from vendors, classified in one place.

Every vendor module turns what its client library raised (an HTTP status with headers and a
body, a timeout, a reset connection) into one `ConnectorError` through `classify_status` or
`classify_transport`, so retry decisions are made the same way for every vendor:

    400, 409, 422 and other 4xx  ConnectorValidationError   never retried: dead letter
    404, 410                     ConnectorNotFoundError     never retried: dead letter
    401, 403                     ConnectorAuthError         session refreshed once, retried
    429                          ConnectorRateLimitedError  retried after Retry-After
    5xx                          ConnectorUnavailableError  retried with backoff (503:
                                                            after Retry-After when given)
    timeouts, resets, refused    ConnectorUnavailableError  retried with backoff

Messages keep the vendor's own words (they say what to fix), with any secret removed.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from csautomation.connectors.resilience import Guard, Guardable
from csautomation.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorNotFoundError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)

MAX_MESSAGE = 500


def tls(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx wants an SSLContext for a CA file (a path string is deprecated)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class HttpConnector(Guardable):
    """What the httpx vendors share: their configuration, credentials read per call from
    `env` (the process environment when None), one lazily built client, and the guard
    each request passes."""

    base_url = ""  # subclasses with a fixed API root set it from their config

    def __init__(
        self,
        config: Any,
        env: Mapping[str, str] | None = None,
        verify: str | bool = True,
        guard: Guard | None = None,
    ) -> None:
        super().__init__(guard)
        self.config = config
        self.name: str = config.id
        self._env = env
        self._verify = verify
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()  # activity threads share the one client

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.base_url,
                    timeout=self.config.timeout.total_seconds(),
                    verify=tls(self._verify),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def retry_after(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def vendor_message(body: Any) -> str:
    """The vendor's own explanation from an error body (Salesforce's list of
    {message, errorCode}, Zendesk's {error, description, details}, HubSpot's
    {message, category}), or the body's start."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text: str = body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:MAX_MESSAGE]
    parts: list[str] = []
    if isinstance(body, list):
        for item in body:
            if isinstance(item, Mapping):
                code = item.get("errorCode")
                msg = item.get("message", "")
                fields = item.get("fields")
                where = f" ({', '.join(map(str, fields))})" if fields else ""
                parts.append(f"{code}: {msg}{where}" if code else f"{msg}{where}")
    elif isinstance(body, Mapping):
        for key in ("error", "message", "description"):
            value = body.get(key)
            if isinstance(value, str) and value and value not in parts:
                parts.append(value)
            elif isinstance(value, Mapping):
                parts.append(vendor_message(value))
        details = body.get("details")
        if isinstance(details, Mapping):
            for field, issues in details.items():
                for issue in issues if isinstance(issues, list) else [issues]:
                    said = issue.get("description") if isinstance(issue, Mapping) else issue
                    parts.append(f"{field}: {said}")
        if not parts and "category" in body:
            parts.append(str(body["category"]))
    joined = "; ".join(p for p in parts if p) or json.dumps(body)[:MAX_MESSAGE]
    return joined[:MAX_MESSAGE]


# a credential after an auth scheme, wherever an upstream echoed it ("Authorization: Basic
# ...", a JSON dump of the request's headers): redacted even when it is no value we know
# (a proxy's own credential, a token since rotated)
AUTH_VALUE = re.compile(r"\b(Basic|Bearer|Token|OAuth)(\s+|%20)[A-Za-z0-9+/=._~-]{8,}", re.I)
AUTH_HEADER = re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+", re.I)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = AUTH_VALUE.sub(r"\1 [redacted]", text)
    return AUTH_HEADER.sub(r"\1[redacted]", text)


def classify_status(
    connector: str,
    operation: str,
    status: int,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    secrets: Iterable[str] = (),
) -> ConnectorError:
    message = redact(vendor_message(body) if body not in (None, "", b"") else "", secrets)
    message = message or f"HTTP {status}"
    kind: type[ConnectorError]
    wait = None
    if status in (401, 403):
        kind = ConnectorAuthError
    elif status == 429:
        kind, wait = ConnectorRateLimitedError, retry_after(headers)
    elif status in (404, 410):
        kind = ConnectorNotFoundError
    elif 400 <= status < 500:
        kind = ConnectorValidationError
    else:
        kind, wait = ConnectorUnavailableError, retry_after(headers)
    return kind(connector, operation, message, status=status, retry_after=wait)


def classify_transport(
    connector: str, operation: str, exc: BaseException, secrets: Iterable[str] = ()
) -> ConnectorError:
    """A timeout, reset or refused connection: the vendor may be fine in a moment."""
    name = type(exc).__name__
    text = redact(str(exc), secrets)[:MAX_MESSAGE]
    return ConnectorUnavailableError(connector, operation, f"{name}: {text}" if text else name)
