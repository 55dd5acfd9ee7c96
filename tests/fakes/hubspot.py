"""A fake HubSpot CRM v3 (tasks and companies) speaking HubSpot's request and response shapes.

Search is `POST /crm/v3/objects/{tasks,companies}/search` with filterGroups (OR of ANDs,
operators EQ, NEQ, GTE, LTE), sorts, properties, limit and an `after` cursor. `search_lag` hides a
new task from that many searches, `index_delay` for that many seconds after its create,
like HubSpot's search index; the unique idempotency property is enforced on create anyway
(409), as HubSpot enforces properties with `hasUniqueValue`, and its definition is read at
`GET /crm/v3/properties/tasks/{name}`. `search_per_second` (None: off) answers searches
beyond that many in a second, per token, with HubSpot's 429 body (policyName SECONDLY).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import trustme

from fakes.server import FakeServer, Request, Response

TASK_TO_COMPANY = 192
MODIFIED = "hs_lastmodifieddate"
DATES = {"hs_timestamp", "hs_lastmodifieddate", "hs_createdate", "hs_task_completion_date"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _comparable(prop: str, value: str) -> Any:
    if prop in DATES:  # HubSpot takes epoch milliseconds or ISO 8601 for datetimes
        if value.isdigit():
            return int(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return int(moment.timestamp() * 1000)
    return value


def error(status: int, message: str, category: str) -> Response:
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    return Response(status, body)


class FakeHubSpot(FakeServer):
    error_body = {
        "status": "error",
        "message": "internal error",
        "correlationId": "00000000-0000-0000-0000-000000000000",
        "category": "INTERNAL_ERROR",
    }

    def __init__(
        self,
        token: str = "pat-na1-11111111-2222-3333-4444-555555555555",
        unique: tuple[str, ...] = ("csauto_key",),
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__(ca)
        self.token = token
        self.unique = unique
        self.search_lag = 0
        self.index_delay = 0.0  # seconds a new task stays out of search results
        self.search_per_second: int | None = None
        self.search_429s = 0
        self._searched: list[float] = []  # when each recent search came
        self.clock: Callable[[], float] = time.monotonic  # the search limit's clock
        self._indexed_at: dict[str, float] = {}  # task id -> when search shows it
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"tasks": {}, "companies": {}}
        self.associations: dict[str, list[dict[str, Any]]] = {}  # task id -> as created
        self.owner_records: dict[str, dict[str, Any]] = {}  # owner id -> as the API shows it
        self._hidden: dict[str, int] = {}  # task id -> searches it stays invisible to
        self._ids = itertools.count(90001)
        self.route("POST", r"/crm/v3/objects/(?P<kind>tasks|companies)/search", self.search)
        self.route("POST", r"/crm/v3/objects/tasks", self.create_task)
        self.route("GET", r"/crm/v3/objects/tasks", self.list_tasks)
        self.route("GET", r"/crm/v3/owners/?", self.owners)
        self.route("GET", r"/crm/v3/properties/tasks/(?P<name>\w+)", self.task_property)

    def not_found_body(self, req: Request) -> Any:
        return error(404, f"Unable to route {req.method} {req.path}", "OBJECT_NOT_FOUND").body

    # -- helpers for tests ----------------------------------------------------------------
    def _store(self, kind: str, properties: dict[str, str]) -> dict[str, Any]:
        oid = str(next(self._ids))
        stamp = now_iso()
        props = {"hs_object_id": oid, "hs_createdate": stamp, "hs_lastmodifieddate": stamp}
        obj = {
            "id": oid,
            "properties": props | properties,
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
        }
        self.objects[kind][oid] = obj
        return obj

    def add_company(self, account_id: str, name: str = "Acme") -> str:
        with self.lock:
            return str(
                self._store("companies", {"csauto_account_id": account_id, "name": name})["id"]
            )

    def add_owner(self, email: str, name: str, owner_id: str = "", archived: bool = False) -> str:
        """An owner (a HubSpot user who can own records): `id` is what hubspot_owner_id
        takes, `userId` is the user's other id."""
        first, _, last = name.partition(" ")
        with self.lock:
            oid = owner_id or str(next(self._ids))
            stamp = now_iso()
            self.owner_records[oid] = {
                "id": oid,
                "email": email,
                "type": "PERSON",
                "firstName": first,
                "lastName": last,
                "userId": int(oid) + 1_000_000,
                "userIdIncludingInactive": int(oid) + 1_000_000,
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": archived,
                "teams": [],
            }
            return oid

    def put_company(self, properties: dict[str, str], modified: datetime) -> str:
        """A company with these properties, last modified at `modified` (an edit in
        HubSpot); returns its id."""
        stamp = modified.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.lock:
            company = self._store("companies", properties)
            company["properties"] |= {MODIFIED: stamp}
            company["updatedAt"] = stamp
            return str(company["id"])

    def edit_company(self, company_id: str, properties: dict[str, str], modified: datetime) -> None:
        stamp = modified.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.lock:
            company = self.objects["companies"][company_id]
            company["properties"] |= properties | {MODIFIED: stamp}
            company["updatedAt"] = stamp

    def complete(self, task_id: str, at: datetime | None = None) -> None:
        """Mark a task done, as a CSM ticking it off in HubSpot would."""
        stamp = (at or datetime.now(UTC)).isoformat(timespec="milliseconds")
        stamp = stamp.replace("+00:00", "Z")
        with self.lock:
            task = self.objects["tasks"][task_id]
            task["properties"] |= {
                "hs_task_status": "COMPLETED",
                "hs_task_completion_date": stamp,
                "hs_lastmodifieddate": stamp,
            }
            task["updatedAt"] = stamp

    @property
    def tasks(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects["tasks"].values())

    # -- routes ---------------------------------------------------------------------------
    def _authorized(self, req: Request) -> Response | None:
        if req.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication "
            "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
            "oauth-overview",
            "INVALID_AUTHENTICATION",
        )

    @staticmethod
    def _matches(obj: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
        props = obj["properties"]
        for f in filters:
            name, op = f["propertyName"], f["operator"]
            have = props.get(name)
            if have is None:
                if op != "NEQ":
                    return False
                continue
            mine, theirs = _comparable(name, str(have)), _comparable(name, str(f["value"]))
            ok = {
                "EQ": mine == theirs,
                "NEQ": mine != theirs,
                "GTE": mine >= theirs,
                "LTE": mine <= theirs,
            }[op]
            if not ok:
                return False
        return True

    def _over_search_limit(self) -> Response | None:
        """HubSpot's secondly limit on search: its 429 body, with the policy it hit."""
        if self.search_per_second is None:
            return None
        now = self.clock()
        self._searched = [t for t in self._searched if now - t < 1.0]
        if len(self._searched) < self.search_per_second:
            self._searched.append(now)
            return None
        self.search_429s += 1
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "SECONDLY",
        }
        return Response(429, body, {"Retry-After": "1"})

    def search(self, req: Request) -> Response:
        if denied := self._authorized(req):
            return denied
        if limited := self._over_search_limit():
            return limited
        kind = req.match.group("kind") if req.match else "tasks"
        body = req.json() or {}
        groups = body.get("filterGroups") or [{"filters": []}]
        found = []
        now = time.monotonic()
        for oid, obj in self.objects[kind].items():
            if self._indexed_at.get(oid, 0.0) > now:
                continue
            if self._hidden.get(oid, 0) > 0:
                self._hidden[oid] -= 1
                continue
            if any(self._matches(obj, g.get("filters", [])) for g in groups):
                found.append(obj)
        for sort in reversed(body.get("sorts") or []):  # HubSpot takes one sort; a stable order
            prop = sort["propertyName"]
            found.sort(
                key=lambda o, p=prop: _comparable(p, str(o["properties"].get(p) or "0")),
                reverse=sort.get("direction") == "DESCENDING",
            )
        start, limit = int(body.get("after") or 0), int(body.get("limit") or 10)
        wanted = set(body.get("properties") or []) | {
            "hs_object_id",
            "hs_createdate",
            "hs_lastmodifieddate",
        }
        results = [
            obj | {"properties": {k: v for k, v in obj["properties"].items() if k in wanted}}
            for obj in found[start : start + limit]
        ]
        answer: dict[str, Any] = {"total": len(found), "results": results}
        if start + limit < len(found):
            after = str(start + limit)
            answer["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
        return Response(200, answer)

    def create_task(self, req: Request) -> Response:
        if denied := self._authorized(req):
            return denied
        body = req.json() or {}
        props: dict[str, str] = body.get("properties") or {}
        if not props.get("hs_timestamp"):
            return error(
                400,
                'Property values were not valid: [{"isValid":false,"message":"hs_timestamp is '
                'required","error":"REQUIRED_FIELD","name":"hs_timestamp"}]',
                "VALIDATION_ERROR",
            )
        for name in self.unique:
            value = props.get(name)
            clash = [
                t for t in self.objects["tasks"].values() if t["properties"].get(name) == value
            ]
            if value and clash:
                return error(
                    409,
                    f"Unique property {name} already has value {value} on object {clash[0]['id']}",
                    "CONFLICT",
                )
        for assoc in body.get("associations") or []:
            if assoc["to"]["id"] not in self.objects["companies"]:
                return error(400, f"No company with id {assoc['to']['id']}", "VALIDATION_ERROR")
        task = self._store("tasks", props)
        self.associations[task["id"]] = body.get("associations") or []
        if self.search_lag:
            self._hidden[task["id"]] = self.search_lag
        if self.index_delay:
            self._indexed_at[task["id"]] = time.monotonic() + self.index_delay
        return Response(201, task)

    def task_property(self, req: Request) -> Response:
        """A property's definition, as the properties API answers it (abridged)."""
        if denied := self._authorized(req):
            return denied
        name = req.match.group("name") if req.match else ""
        if name not in self.unique and not name.startswith("hs_"):
            return error(404, f"Unable to find property {name} for tasks", "OBJECT_NOT_FOUND")
        return Response(
            200,
            {
                "name": name,
                "label": name,
                "type": "string",
                "fieldType": "text",
                "groupName": "taskinformation",
                "hasUniqueValue": name in self.unique,
                "hidden": False,
                "formField": False,
            },
        )

    def list_tasks(self, req: Request) -> Response:
        if denied := self._authorized(req):
            return denied
        limit = int(req.query.get("limit", ["10"])[0])
        return Response(200, {"results": list(self.objects["tasks"].values())[:limit]})

    def owners(self, req: Request) -> Response:
        """`GET /crm/v3/owners?email=&archived=&limit=&after=`: owners, active ones unless
        `archived=true` (then only archived ones, as HubSpot answers), by exact e-mail."""
        if denied := self._authorized(req):
            return denied
        email = req.query.get("email", [""])[0].lower()
        archived = req.query.get("archived", ["false"])[0] == "true"
        found = [
            o
            for o in self.owner_records.values()
            if o["archived"] == archived and (not email or o["email"].lower() == email)
        ]
        limit = int(req.query.get("limit", ["100"])[0])
        start = int(req.query.get("after", ["0"])[0])
        body: dict[str, Any] = {"results": found[start : start + limit]}
        if start + limit < len(found):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return Response(200, body)
