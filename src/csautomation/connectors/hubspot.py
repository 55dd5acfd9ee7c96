"""HubSpot CRM tasks through the CRM v3 API, with `httpx` and a private app's token.

Exactly once per idempotency key rests on HubSpot itself: the key is written to a task
property (`idempotency_property`) created with "require unique values" (`hasUniqueValue`
in the properties API), and HubSpot refuses a second record holding a value such a
property already has (409 Conflict). So a create is sent first, with no search before
it; a 409 means the task exists (an earlier attempt's answer was lost), and it is looked
up by a search. HubSpot's search index lags a create by a few seconds, so that search is
repeated with growing delays (`index_wait`) until the task shows; a task still unseen is
a retryable error, never a dead letter. `check` verifies that the property is unique.

Searches take the connector's `search` bucket: HubSpot limits its search endpoints on
their own, below the account's general limit. Companies found for an account are kept
for the connector's life. Completion sync searches completed tasks modified since a moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from csautomation.connectors.base import Completion, Receipt, TaskRequest
from csautomation.connectors.config import HubSpotConfig, secret
from csautomation.connectors.fields import Limits, fit_task
from csautomation.connectors.http import HttpConnector, classify_status, classify_transport
from csautomation.connectors.owners import Owners, UserMatch, pick
from csautomation.connectors.resilience import Guard
from csautomation.errors import (
    ConnectorError,
    ConnectorNotFoundError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from csautomation.facts.model import Account

TASK_TO_COMPANY = 192  # HUBSPOT_DEFINED association type: task -> company
PRIORITIES = {"critical": "HIGH", "high": "HIGH", "medium": "MEDIUM", "low": "LOW"}
PAGE = 100
# a text property holds 65,536 characters added through the CRM (HubSpot Knowledge Base,
# "Property field types in HubSpot")
LIMITS = Limits("hs_task_subject", 65_536, "hs_task_body", 65_536)


def iso(moment: datetime) -> str:
    """HubSpot's datetime form: UTC, milliseconds, 'Z'. A naive datetime is taken as UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp() * 1000)


def parse_time(value: str) -> datetime:
    """A HubSpot datetime property: ISO 8601, or epoch milliseconds as a string."""
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def eq(prop: str, value: str) -> dict[str, str]:
    return {"propertyName": prop, "operator": "EQ", "value": value}


class HubSpotCrm(HttpConnector):
    config: HubSpotConfig

    def __init__(
        self,
        config: HubSpotConfig,
        env: Mapping[str, str] | None = None,
        verify: str | bool = True,
        guard: Guard | None = None,
    ) -> None:
        super().__init__(config, env, verify, guard)
        self.base_url = config.url
        self._companies: dict[str, str] = {}  # our account id -> HubSpot company id
        self.sleep: Callable[[float], None] = time.sleep  # tests may record the waits
        self.owners = Owners(
            config.id, "HubSpot", config.owners, config.fallback_owner, self._user, str.isdigit
        )

    def _call(self, operation: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One request, through the guard (a search takes a `search` token); every
        failure leaves as a ConnectorError."""
        endpoint = "search" if path.endswith("/search") else ""
        return self._guarded(
            operation, lambda: self._request(operation, method, path, body, params), endpoint
        )

    def _request(
        self, operation: str, method: str, path: str, body: Any, params: dict[str, Any]
    ) -> Any:
        token = secret(self.name, self.config.auth.token_env, self._env)
        try:
            resp = self._http().request(
                method,
                path,
                json=body,
                params=params or None,
                headers={"Authorization": f"Bearer {token}"},
            )
            if not resp.is_success:
                raise classify_status(
                    self.name, operation, resp.status_code, resp.headers, resp.content, [token]
                )
            return resp.json() if resp.content else None
        except httpx.TransportError as exc:  # timeouts, resets, refused connections
            raise classify_transport(self.name, operation, exc, [token]) from exc
        except ValueError as exc:  # a success whose body is not JSON: a proxy, not HubSpot
            raise classify_transport(self.name, operation, exc, [token]) from exc

    def _search(
        self, operation: str, objects: str, filters: list[dict[str, str]], props: list[str]
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": filters}],
                "properties": props,
                "limit": PAGE,
            }
            if after is not None:
                body["after"] = after
            page = self._call(operation, "POST", f"/crm/v3/objects/{objects}/search", body)
            found.extend(page.get("results", []))
            after = page.get("paging", {}).get("next", {}).get("after")
            if after is None:
                return found

    def _existing(self, key: str) -> str | None:
        prop = self.config.idempotency_property
        hits = self._search("create_task", "tasks", [eq(prop, key)], [prop])
        return str(hits[0]["id"]) if hits else None

    def _found_after_conflict(self, key: str, conflict: ConnectorError) -> str:
        """The task a 409 says holds `key`, searched for until HubSpot's search index
        shows it: `index_wait.attempts` searches with doubling delays between them."""
        wait = self.config.index_wait
        delay, waited = wait.initial.total_seconds(), 0.0
        for attempt in range(wait.attempts):
            if attempt:
                self.sleep(delay)
                waited += delay
                delay = min(delay * 2, wait.maximum.total_seconds())
            found = self._existing(key)
            if found is not None:
                return found
        raise ConnectorUnavailableError(
            self.name,
            "create_task",
            f"HubSpot holds a task with {self.config.idempotency_property} = {key} (409: "
            f"{conflict.message}) but its search index has not shown it after "
            f"{wait.attempts} searches over {waited:.1f} s; the action will ask again",
            status=409,
        )

    def _company(self, account: Account) -> str:
        if account.crm_ids.get(self.name):
            return account.crm_ids[self.name]
        if account.id in self._companies:
            return self._companies[account.id]
        prop = self.config.account_property
        hits = self._search("create_task", "companies", [eq(prop, account.id)], [prop, "name"])
        if not hits:
            raise ConnectorNotFoundError(
                self.name, "create_task", f"no HubSpot company has {prop} = {account.id}"
            )
        self._companies[account.id] = str(hits[0]["id"])
        return self._companies[account.id]

    def _properties(self, request: TaskRequest) -> dict[str, str]:
        owner = self.owners.assign(request)
        level = request.priority.lower()
        priority = self.config.priorities.get(level) or PRIORITIES.get(level, "MEDIUM")
        subject, body = fit_task(
            self.name,
            request.idempotency_key,
            request.subject,
            owner.description(request.description),
            LIMITS,
        )
        return {
            "hs_timestamp": iso(request.due_at),
            "hs_task_subject": subject,
            "hs_task_body": body,
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": priority,
            "hubspot_owner_id": owner.user_id,
            self.config.idempotency_property: request.idempotency_key,
        }

    def _user(self, email: str) -> UserMatch:
        """The owner with this e-mail (`GET /crm/v3/owners?email=`, active owners only,
        as HubSpot answers without `archived=true`); its `id`, not its `userId`, is what
        hubspot_owner_id takes."""
        page = self._call("find_user", "GET", "/crm/v3/owners", email=email, limit=PAGE)
        found = [
            (str(o["id"]), "is archived" if o.get("archived") else "")
            for o in page.get("results", [])
            if (o.get("email") or "").lower() == email.lower()
        ]
        return pick("HubSpot", email, found)

    def create_task(self, request: TaskRequest) -> Receipt:
        properties = self._properties(request)  # a mapping problem fails before any call
        company = self._company(request.account)
        association = {
            "associationCategory": "HUBSPOT_DEFINED",
            "associationTypeId": TASK_TO_COMPANY,
        }
        body = {
            "properties": properties,
            "associations": [{"to": {"id": company}, "types": [association]}],
        }
        try:
            made = self._call("create_task", "POST", "/crm/v3/objects/tasks", body)
        except ConnectorValidationError as exc:
            if exc.status != 409:
                raise
            # the unique key is taken: an earlier attempt made the task
            found = self._found_after_conflict(request.idempotency_key, exc)
            return Receipt(self.name, found, created=False)
        return Receipt(self.name, str(made["id"]), created=True)

    def completed_since(self, since: datetime) -> list[Completion]:
        prop = self.config.idempotency_property
        filters = [
            eq("hs_task_status", "COMPLETED"),
            {
                "propertyName": "hs_lastmodifieddate",
                "operator": "GTE",
                "value": str(epoch_ms(since)),
            },
        ]
        props = [prop, "hs_task_status", "hs_task_completion_date", "hs_lastmodifieddate"]
        done: list[Completion] = []
        for task in self._search("completed_since", "tasks", filters, props):
            values = task.get("properties") or {}
            key = values.get(prop)
            if not key:
                continue  # a task someone made by hand, not one of ours
            when = (
                values.get("hs_task_completion_date")
                or values.get("hs_lastmodifieddate")
                or task["updatedAt"]
            )
            done.append(Completion(str(task["id"]), key, parse_time(when)))
        return done

    def check(self) -> str:
        """One read of tasks, and the idempotency property's definition: exactly-once
        rests on HubSpot refusing a second task with the same key, which only a property
        with `hasUniqueValue` does."""
        self._call("check", "GET", "/crm/v3/objects/tasks", limit=1)
        prop = self.config.idempotency_property
        try:
            defined = self._call("check", "GET", f"/crm/v3/properties/tasks/{prop}")
        except ConnectorNotFoundError as exc:
            raise ConnectorValidationError(
                self.name,
                "check",
                f"tasks have no property {prop}: create it with "
                '"require unique values" on (hasUniqueValue)',
                status=exc.status,
            ) from exc
        if not (isinstance(defined, dict) and defined.get("hasUniqueValue")):
            raise ConnectorValidationError(
                self.name,
                "check",
                f"the task property {prop} does not require unique values (hasUniqueValue "
                "is false): HubSpot would not refuse a repeated create, so a retry could "
                "make a second task",
            )
        return (
            f"{self.config.url}: the token in {self.config.auth.token_env} can read tasks; "
            f"{prop} requires unique values"
        )
