"""HubSpot CRM tasks through the CRM v3 API, with `httpx` and a private app's token.

Exactly once per idempotency key: the key is written to a task property
(`idempotency_property`, created unique in HubSpot) and a search on it comes before every
create. HubSpot's search index lags a create by a few seconds, so a retry soon after a
create can miss it; the property's uniqueness then answers 409, and a second search
settles it. Completion sync searches completed tasks modified since a moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from csautomation.connectors.base import Completion, Receipt, TaskRequest
from csautomation.connectors.config import HubSpotConfig, secret
from csautomation.connectors.http import HttpConnector, classify_status, classify_transport
from csautomation.connectors.owners import Owners, UserMatch, pick
from csautomation.connectors.resilience import Guard
from csautomation.errors import ConnectorNotFoundError, ConnectorValidationError
from csautomation.facts.model import Account

TASK_TO_COMPANY = 192  # HUBSPOT_DEFINED association type: task -> company
PRIORITIES = {"critical": "HIGH", "high": "HIGH", "medium": "MEDIUM", "low": "LOW"}
PAGE = 100


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
        self.owners = Owners(
            config.id, "HubSpot", config.owners, config.fallback_owner, self._user, str.isdigit
        )

    def _call(self, operation: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One request, through the guard; every failure leaves as a ConnectorError."""
        return self._guarded(
            operation, lambda: self._request(operation, method, path, body, params)
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

    def _company(self, account: Account) -> str:
        if account.crm_ids.get(self.name):
            return account.crm_ids[self.name]
        prop = self.config.account_property
        hits = self._search("create_task", "companies", [eq(prop, account.id)], [prop, "name"])
        if not hits:
            raise ConnectorNotFoundError(
                self.name, "create_task", f"no HubSpot company has {prop} = {account.id}"
            )
        return str(hits[0]["id"])

    def _properties(self, request: TaskRequest) -> dict[str, str]:
        owner = self.owners.assign(request)
        level = request.priority.lower()
        priority = self.config.priorities.get(level) or PRIORITIES.get(level, "MEDIUM")
        return {
            "hs_timestamp": iso(request.due_at),
            "hs_task_subject": request.subject,
            "hs_task_body": owner.description(request.description),
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
        found = self._existing(request.idempotency_key)
        if found is not None:
            return Receipt(self.name, found, created=False)
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
            # the unique key exists though search missed it (index lag): look again
            found = self._existing(request.idempotency_key) if exc.status == 409 else None
            if found is None:
                raise
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
        self._call("check", "GET", "/crm/v3/objects/tasks", limit=1)
        return f"{self.config.url}: the token in {self.config.auth.token_env} can read tasks"
