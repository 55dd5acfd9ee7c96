"""Salesforce tasks, account fields and completion sync, through `simple-salesforce`.

Login is ours: simple-salesforce only logs in at `https://{domain}.salesforce.com`, so the
OAuth 2.0 token request (username-password or JWT bearer flow) goes to `login_url` with
`requests`, and simple-salesforce is handed the session (`session` method: straight from
the environment). An expired session (401 INVALID_SESSION_ID) is refreshed once and the
call retried once; a second 401 is a ConnectorAuthError.

Exactly once: a Task is upserted by its External ID field holding our idempotency key
(`PATCH .../sobjects/Task/<field>/<key>`), so a retry after a lost answer updates the
Task it already created. 201 means created; 200 (API 46.0+) or 204 means updated.

Every failure leaves through `_failure` (simple-salesforce's SalesforceError: status and
body; the headers, which it drops, from the session) or `classify_transport` (timeouts,
resets), with every credential redacted.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import jwt
import requests
from requests.structures import CaseInsensitiveDict
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from simple_salesforce.format import format_external_id, format_soql

from csautomation import logs
from csautomation.connectors.base import Completion, FieldUpdate, Receipt, TaskRequest
from csautomation.connectors.config import SalesforceConfig, secret
from csautomation.connectors.fields import Limits, fit_task
from csautomation.connectors.http import classify_status, classify_transport
from csautomation.connectors.owners import Owners, UserMatch, pick
from csautomation.connectors.resilience import Guard, Guardable
from csautomation.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorNotFoundError,
    ConnectorValidationError,
)

T = TypeVar("T")

PRIORITIES = {"critical": "High", "high": "High", "medium": "Normal", "low": "Low"}
TRANSPORT = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
USER_ID = re.compile(r"^005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")  # a User's 15 or 18 characters
USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
# the Task fields' lengths (Object Reference, Task: Subject 255, Description 32,000)
TASK_LIMITS = Limits("Subject", 255, "Description", 32_000)


def api_usage(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(used, allocation) from `Sforce-Limit-Info: api-usage=18/5000` (REST API Developer
    Guide, "Limit Info Header": returned on each REST call; other fields may follow `;`)."""
    value = headers.get("Sforce-Limit-Info") or ""
    found = USAGE.search(value)
    return (int(found[1]), int(found[2])) if found else None


class _Session(requests.Session):
    """Puts the connector's timeout and CA on every call (simple-salesforce's SObject methods
    take neither), keeps each thread's last answer headers, which SalesforceError drops
    (Retry-After), and passes on each answer's API usage."""

    def __init__(
        self,
        timeout: float,
        verify: str | bool,
        on_usage: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.verify = verify
        self.timeout = timeout
        self.on_usage = on_usage
        self._local = threading.local()

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        # per call: REQUESTS_CA_BUNDLE would otherwise override the session's CA (psf/requests#3829)
        kwargs.setdefault("verify", self.verify)
        response = super().request(method, url, *args, **kwargs)
        self._local.headers = response.headers
        usage = api_usage(response.headers)
        if usage is not None and self.on_usage is not None:
            self.on_usage(*usage)
        return response

    @property
    def last_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = getattr(self._local, "headers", CaseInsensitiveDict())
        return headers


class SalesforceCrm(Guardable):
    def __init__(
        self,
        config: SalesforceConfig,
        env: Mapping[str, str] | None = None,
        verify: str | bool = True,
        guard: Guard | None = None,
    ) -> None:
        super().__init__(guard)
        self.config = config
        self.name = config.id
        self._env = env
        self._http = _Session(config.timeout.total_seconds(), verify, self._usage)
        self.api_usage: tuple[int, int] | None = None  # (used, allocation), last reported
        self._lock = threading.Lock()
        self._sf: Salesforce | None = None
        self._secrets: set[str] = set()
        self._accounts: dict[str, str] = {}  # our account id -> Salesforce Account Id
        self.owners = Owners(
            config.id,
            "Salesforce",
            config.owners,
            config.fallback_owner,
            self._user,
            lambda value: bool(USER_ID.match(value)),
        )

    def close(self) -> None:
        self._http.close()

    def _usage(self, used: int, limit: int) -> None:
        self.api_usage = (used, limit)
        if self.guard is not None and self.guard.quota is not None:
            self.guard.quota.observe(used, limit)

    # -- session -----------------------------------------------------------------------------
    def _secret(self, env_name: str | None) -> str:
        value = secret(self.name, env_name, self._env)
        self._secrets.add(value)
        return value

    def _login(self) -> tuple[str, str]:
        """(access token, instance URL) from the token endpoint, or the environment."""
        auth = self.config.auth
        if auth.method == "session":
            return self._secret(auth.session_id_env), self._secret(auth.instance_url_env)
        form = {"client_id": self._secret(auth.client_id_env)}
        if auth.method == "password":
            form |= {
                "grant_type": "password",
                "client_secret": self._secret(auth.client_secret_env),
                "username": self._secret(auth.username_env),
                "password": self._secret(auth.password_env),
            }
        else:
            claims = {
                "iss": form.pop("client_id"),
                "sub": self._secret(auth.username_env),
                "aud": self.config.login_url,
                "exp": int(time.time()) + 180,
            }
            key = self._secret(auth.private_key_env)
            try:
                assertion = jwt.encode(claims, key, "RS256")
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise ConnectorAuthError(
                    self.name,
                    "login",
                    f"environment variable {auth.private_key_env} does not hold a PEM RSA "
                    "private key (the value is not shown)",
                    retryable=False,
                ) from exc
            form |= {"grant_type": JWT_BEARER, "assertion": assertion}
        url = self.config.login_url.rstrip("/") + "/services/oauth2/token"
        try:
            resp = self._http.post(url, data=form)
        except TRANSPORT as exc:
            raise classify_transport(self.name, "login", exc, self._secrets) from exc
        body = _json(resp)
        if not resp.ok:
            # the token endpoint says {"error", "error_description"}
            if isinstance(body, dict) and "error_description" in body:
                body = {"error": body.get("error"), "description": body["error_description"]}
            error = classify_status(
                self.name, "login", resp.status_code, resp.headers, body, self._secrets
            )
            if isinstance(error, ConnectorValidationError):  # invalid_grant, invalid_client
                raise ConnectorAuthError(
                    self.name, "login", error.message, status=error.status, retryable=False
                )
            raise error
        if not isinstance(body, dict) or "access_token" not in body:
            raise ConnectorAuthError(self.name, "login", "the token answer holds no access_token")
        self._secrets.add(body["access_token"])
        logs.register(body["access_token"])
        return body["access_token"], body.get("instance_url") or self.config.login_url

    def _client(self) -> Salesforce:
        with self._lock:
            if self._sf is None:
                token, instance_url = self._login()
                self._sf = Salesforce(
                    instance_url=instance_url,
                    session_id=token,
                    version=self.config.api_version,
                    session=self._http,
                )
            return self._sf

    def _forget(self, sf: Salesforce) -> None:
        with self._lock:
            if self._sf is sf:
                self._sf = None

    def _call(self, operation: str, call: Callable[[Salesforce], T]) -> T:
        """One vendor call, through the guard; an expired session is refreshed once and
        the call retried once."""
        return self._guarded(operation, lambda: self._request(operation, call))

    def _request(self, operation: str, call: Callable[[Salesforce], T]) -> T:
        for attempt in (1, 2):
            sf = self._client()
            try:
                return call(sf)
            except SalesforceExpiredSession as exc:
                self._forget(sf)
                if attempt == 2 or "INVALID_SESSION_ID" not in str(exc.content):
                    raise self._failure(operation, exc) from exc
            except SalesforceError as exc:
                raise self._failure(operation, exc) from exc
            except TRANSPORT as exc:
                raise classify_transport(self.name, operation, exc, self._secrets) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, operation: str, exc: SalesforceError) -> ConnectorError:
        # 300: the external id is held by more than one record, a conflict to fix by hand
        status = 409 if exc.status == 300 else exc.status
        headers = self._http.last_headers
        return classify_status(self.name, operation, status, headers, exc.content, self._secrets)

    # -- capabilities ------------------------------------------------------------------------
    def _account_id(self, operation: str, account_id: str, known: Mapping[str, str]) -> str:
        if self.name in known:
            return known[self.name]
        if account_id not in self._accounts:
            soql = format_soql(
                "SELECT Id FROM Account WHERE {:literal} = {} LIMIT 1",
                self.config.account_field,
                account_id,
            )
            records = self._call(operation, lambda sf: sf.query(soql)["records"])
            if not records:
                raise ConnectorNotFoundError(
                    self.name,
                    operation,
                    f"no Account has {self.config.account_field} = {account_id!r}",
                )
            self._accounts[account_id] = records[0]["Id"]
        return self._accounts[account_id]

    def create_task(self, request: TaskRequest) -> Receipt:
        op = "create_task"
        field, key = self.config.idempotency_field, request.idempotency_key
        priorities = PRIORITIES | self.config.priorities
        owner = self.owners.assign(request, op)
        subject, description = fit_task(
            self.name, key, request.subject, owner.description(request.description), TASK_LIMITS
        )
        data: dict[str, Any] = {
            "Subject": subject,
            "Description": description,
            "OwnerId": owner.user_id,
            "WhatId": self._account_id(op, request.account.id, request.account.crm_ids),
            "ActivityDate": request.due_at.date().isoformat(),
            "Priority": priorities.get(request.priority, "Normal"),
            "Status": self.config.task_status,
        }
        # the key holds ':' (and may hold '/'): quoted whole, as one path segment
        external = format_external_id(field, key)
        resp = self._call(
            op, lambda sf: _sobject(sf, "Task").upsert(external, data, raw_response=True)
        )
        body = _json(resp)
        if isinstance(body, dict) and body.get("id"):
            return Receipt(self.name, body["id"], created=resp.status_code == 201)
        # 204 (before API 46.0): updated, no body; the id is looked up by the external id
        found = self._call(op, lambda sf: _sobject(sf, "Task").get_by_custom_id(field, key))
        return Receipt(self.name, found["Id"], created=resp.status_code == 201)

    def _user(self, email: str) -> UserMatch:
        """The active User with this Email (not a unique field); a Task owned by an inactive
        user is refused (INACTIVE_OWNER_OR_USER)."""
        soql = format_soql("SELECT Id, IsActive FROM User WHERE Email = {}", email)
        users = self._call("find_user", lambda sf: sf.query(soql)["records"])
        found = [(u["Id"], "" if u.get("IsActive") else "is inactive") for u in users]
        return pick("Salesforce", email, found)

    def update_account(self, request: FieldUpdate) -> Receipt:
        op = "update_account"
        account_id = self._account_id(op, request.account.id, request.account.crm_ids)
        self._call(
            op,
            lambda sf: _sobject(sf, "Account").update(account_id, {request.field: request.value}),
        )
        return Receipt(self.name, account_id, created=False)

    def completed_since(self, since: datetime) -> list[Completion]:
        soql = format_soql(
            "SELECT Id, {field:literal}, LastModifiedDate, LastModifiedById FROM Task "
            "WHERE IsClosed = true "
            "AND LastModifiedDate >= {since} AND {field:literal} != null",
            field=self.config.idempotency_field,
            since=since,
        )
        records = self._call("completed_since", lambda sf: sf.query_all(soql)["records"])
        return [
            Completion(
                record_id=r["Id"],
                idempotency_key=r[self.config.idempotency_field],
                completed_at=datetime.strptime(r["LastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%f%z"),
                # the user who last changed the closed task: who closed it, unless someone
                # edited it after (Salesforce keeps no "closed by" of its own)
                completed_by=r.get("LastModifiedById") or "",
            )
            for r in records
        ]

    def query_pages(self, operation: str, soql: str) -> Iterator[list[dict[str, Any]]]:
        """A SOQL query's records a page at a time: `query`, then `query_more` on each
        `nextRecordsUrl`. Each request passes the guard and the session refresh, so a
        caller can keep what it has and stop at the first error. Build `soql` with
        format_soql."""
        result = self._call(operation, lambda sf: sf.query(soql))
        while True:
            yield list(result["records"])
            if result.get("done", True):
                return
            result = self._call(operation, _more(result["nextRecordsUrl"]))

    def check(self) -> str:
        limits = self._call("check", lambda sf: sf.limits())
        sf = self._client()
        daily = limits.get("DailyApiRequests", {})
        return (
            f"{self.name}: authenticated ({self.config.auth.method}) to https://{sf.sf_instance}"
            f", API v{self.config.api_version}; daily API requests remaining: "
            f"{daily.get('Remaining', '?')} of {daily.get('Max', '?')} (csautomation stops at "
            f"{self.config.daily_api.stop_at:.0%} used)"
        )


def _more(url: str) -> Callable[[Salesforce], Any]:
    return lambda sf: sf.query_more(url, identifier_is_url=True)


def _sobject(sf: Salesforce, name: str) -> SFType:
    sobject = getattr(sf, name)  # typed as a union with the bulk handlers
    assert isinstance(sobject, SFType)
    return sobject


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text
