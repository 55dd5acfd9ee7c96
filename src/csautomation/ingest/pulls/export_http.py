"""One HTTPS client for the analytics exports: HTTP Basic credentials read from the
environment by name, a minimum interval between requests (Mixpanel allows 3 a second),
429 and 503 retried after their `Retry-After`, resets and 5xx after a short backoff, and
every failure turned into a ConnectorError through connectors/http.py's one classifier,
with the credentials redacted."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from csautomation.connectors.http import classify_status, classify_transport
from csautomation.errors import ConfigError, ConnectorAuthError, ConnectorError

T = TypeVar("T")
# the waits go through here: tests record them instead of waiting
sleep: Callable[[float], None] = time.sleep
clock: Callable[[], float] = time.monotonic


def credentials(pull: str, *names: str) -> tuple[str, ...]:
    """The values of these environment variables; a ConfigError names a missing one
    (never a value)."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise ConfigError(f"pull {pull}: the environment variable {missing[0]} is not set")
    return tuple(os.environ[n] for n in names)


class ExportClient:
    def __init__(
        self,
        vendor: str,
        base_url: str,
        auth: tuple[str, str],
        *,
        timeout: float,
        max_retries: int,
        max_wait: float,
        min_interval: float = 0.0,
    ) -> None:
        self.vendor = vendor
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.min_interval = min_interval
        self.requests = 0
        self._secrets = tuple(auth)
        self._last: float | None = None
        # httpx reads SSL_CERT_FILE (a private CA) from the environment, as curl does
        self._http = httpx.Client(base_url=base_url, auth=httpx.BasicAuth(*auth), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def get(
        self,
        operation: str,
        path: str,
        params: Mapping[str, Any],
        read: Callable[[httpx.Response], T],
    ) -> T:
        """`read` consumes a 2xx response (streamed); it is called afresh on a retry, and
        may raise a ConnectorError of its own (a body cut short)."""
        attempt = 0
        while True:
            self._throttle()
            try:
                return self._once(operation, path, params, read)
            except httpx.TransportError as exc:
                error = classify_transport(self.vendor, operation, exc, self._secrets)
            except ConnectorError as exc:
                error = exc
            self._retry_or_raise(error, attempt)
            attempt += 1

    def _once(
        self,
        operation: str,
        path: str,
        params: Mapping[str, Any],
        read: Callable[[httpx.Response], T],
    ) -> T:
        with self._http.stream("GET", path, params=dict(params)) as resp:
            if resp.status_code < 300:
                return read(resp)
            body = resp.read()
            raise classify_status(
                self.vendor, operation, resp.status_code, resp.headers, body, self._secrets
            )

    def _retry_or_raise(self, error: ConnectorError, attempt: int) -> None:
        if isinstance(error, ConnectorAuthError) or not error.retryable:
            raise error  # Basic credentials do not refresh: a 401 stays a 401
        wait = error.retry_after if error.retry_after is not None else min(2.0**attempt, 30.0)
        if attempt >= self.max_retries or wait > self.max_wait:
            raise error  # the next scheduled run goes on from the cursor
        sleep(wait)

    def _throttle(self) -> None:
        now = clock()
        if self._last is not None and self.min_interval > 0:
            left = self.min_interval - (now - self._last)
            if left > 0:
                sleep(left)
                now = clock()
        self._last = now
        self.requests += 1
