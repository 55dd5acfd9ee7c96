"""A fake Zendesk Support API (tickets, organizations, the incremental ticket export and
users/me) speaking Zendesk's request and response shapes, with basic auth as
`{email}/token:{token}`.

Paths are the ones zenpy calls: `tickets.json?external_id=`, `tickets.json` (POST),
`organizations/show_many.json?external_ids=` (or `?ids=`), the time-based
`incremental/tickets.json?start_time=`, the cursor-based
`incremental/tickets/cursor.json?start_time=` (or `?cursor=`) and `users/me.json`. A
ticket create with an `Idempotency-Key` header is answered once: a repeat with the same
key and body gets the first response (`x-idempotency-lookup: hit`), a repeat with another
body a 400 `IdempotentRequestError`. Errors have Zendesk's body:
`{"error": ..., "description": ..., "details": {field: [{"description": ...}]}}`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from datetime import UTC, datetime
from typing import Any

import trustme

from fakes.server import FakeServer, Request, Response


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def export_cursor(updated: int, ticket_id: int) -> str:
    """Zendesk's cursors are opaque; this one is base64 of `{unix}.0||{id}|`, as Zendesk's
    look, and stands for the position just after that ticket."""
    return base64.urlsafe_b64encode(f"{updated}.0||{ticket_id}|".encode()).decode()


def read_cursor(cursor: str) -> tuple[int, int] | None:
    try:
        updated, _, ticket_id = base64.urlsafe_b64decode(cursor).decode().rstrip("|").split("|")
        return int(float(updated)), int(ticket_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def invalid(field: str, description: str) -> Response:
    body = {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {field: [{"description": description, "error": "BlankValue"}]},
    }
    return Response(422, body)


class FakeZendesk(FakeServer):
    error_body = {"error": "InternalServerError", "description": "Something went wrong"}

    def __init__(
        self,
        email: str = "csauto@example.com",
        token: str = "zd-token-6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv",
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__(ca)
        self.email = email
        self.token = token
        self.anonymous = False  # users/me answers as Zendesk does without credentials
        # a proxy in front that fails a create and echoes the request's Authorization
        # header in its error body, as some gateways' debug pages do
        self.echo_authorization = False
        self.export_page_size = 1000  # the cursor-based export's tickets per page
        self.tickets: dict[int, dict[str, Any]] = {}
        self.organizations: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.idempotent: dict[str, tuple[bytes, Response]] = {}  # key -> (body, answer)
        self._ids = itertools.count(101)
        self._org_ids = itertools.count(360001)
        self.route("GET", r"/api/v2/users/me\.json", self.me)
        self.route("GET", r"/api/v2/users/search\.json", self.search_users)
        self.route("GET", r"/api/v2/tickets\.json", self.list_tickets)
        self.route("POST", r"/api/v2/tickets\.json", self.create_ticket)
        self.route("GET", r"/api/v2/organizations/show_many\.json", self.show_organizations)
        self.route("GET", r"/api/v2/incremental/tickets\.json", self.incremental)
        self.route("GET", r"/api/v2/incremental/tickets/cursor\.json", self.export)

    def not_found_body(self, _req: Request) -> Any:
        return {"error": "InvalidEndpoint", "description": "Not found"}

    # -- helpers for tests ----------------------------------------------------------------
    def add_organization(self, external_id: str, name: str = "Acme") -> int:
        with self.lock:
            oid = next(self._org_ids)
            self.organizations[oid] = {
                "id": oid,
                "url": f"{self.url}/api/v2/organizations/{oid}.json",
                "name": name,
                "external_id": external_id,
                "created_at": stamp(),
                "updated_at": stamp(),
            }
            return oid

    def add_user(
        self, email: str, name: str, user_id: int = 0, role: str = "agent", active: bool = True
    ) -> int:
        """A user: role end-user, agent or admin (only agents and admins take tickets)."""
        with self.lock:
            uid = user_id or 361000000000 + len(self.users) + 1
            self.users[uid] = {
                "id": uid,
                "url": f"{self.url}/api/v2/users/{uid}.json",
                "name": name,
                "email": email,
                "role": role,
                "active": active,
                "suspended": False,
                "verified": True,
                "created_at": stamp(),
                "updated_at": stamp(),
            }
            return uid

    def add_ticket(
        self,
        organization_id: int | None,
        subject: str = "Cannot log in",
        priority: str | None = "normal",
        tags: tuple[str, ...] = (),
        at: datetime | None = None,
        external_id: str | None = None,
        status: str = "open",
    ) -> int:
        """A ticket as a requester or an agent would open it (`at`: its creation time)."""
        with self.lock:
            tid = next(self._ids)
            when = stamp(at)
            self.tickets[tid] = {
                "id": tid,
                "url": f"{self.url}/api/v2/tickets/{tid}.json",
                "external_id": external_id,
                "type": "question",
                "subject": subject,
                "raw_subject": subject,
                "description": subject,
                "priority": priority,
                "status": status,
                "requester_id": 9100 + tid,
                "submitter_id": 9100 + tid,
                "assignee_id": None,
                "organization_id": organization_id,
                "group_id": None,
                "due_at": None,
                "tags": list(tags),
                "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
                "created_at": when,
                "updated_at": when,
            }
            return tid

    def update_ticket(self, ticket_id: int, at: datetime | None = None, **fields: Any) -> None:
        """Change a ticket as an agent would: its updated_at moves to `at` (now)."""
        with self.lock:
            if "tags" in fields:
                fields["tags"] = list(fields["tags"])
            self.tickets[ticket_id] |= fields | {"updated_at": stamp(at)}

    def solve(self, ticket_id: int, at: datetime | None = None, status: str = "solved") -> None:
        """Mark a ticket solved (or closed), as an agent would."""
        with self.lock:
            self.tickets[ticket_id] |= {"status": status, "updated_at": stamp(at)}

    # -- routes ---------------------------------------------------------------------------
    def _denied(self, req: Request) -> Response | None:
        expected = base64.b64encode(f"{self.email}/token:{self.token}".encode()).decode()
        if req.headers.get("authorization") == f"Basic {expected}":
            return None
        return Response(401, {"error": "Couldn't authenticate you"})

    def me(self, req: Request) -> Response:
        if self.anonymous or "authorization" not in req.headers:
            user = {"id": None, "name": "Anonymous user", "email": "invalid@example.com"}
            return Response(200, {"user": user | {"role": "end-user", "active": True}})
        if denied := self._denied(req):
            return denied
        user = {
            "id": 9001,
            "url": f"{self.url}/api/v2/users/9001.json",
            "name": "CS Automation",
            "email": self.email,
            "role": "admin",
            "active": True,
            "verified": True,
        }
        return Response(200, {"user": user})

    def search_users(self, req: Request) -> Response:
        """`users/search.json?query=`: Zendesk's search syntax; the fake knows `email:X`
        (a whole address, any case) and a bare word matched in part of a name or e-mail."""
        if denied := self._denied(req):
            return denied
        query = req.query.get("query", [""])[0].strip()
        if query.startswith("email:"):
            wanted = query.removeprefix("email:").strip('"').lower()
            found = [u for u in self.users.values() if u["email"].lower() == wanted]
        else:
            found = [
                u
                for u in self.users.values()
                if query.lower() in f"{u['name']} {u['email']}".lower()
            ]
        return self._page("users", found, req)

    @staticmethod
    def _page(key: str, items: list[dict[str, Any]], req: Request | None = None) -> Response:
        """One page: cursor pagination's shape when `page[size]` is asked for, else offset
        pagination's."""
        if req is not None and "page[size]" in req.query:
            meta = {"has_more": False, "after_cursor": None, "before_cursor": None}
            body = {key: items, "meta": meta, "links": {"next": None, "prev": None}}
            return Response(200, body)
        body = {key: items, "count": len(items), "next_page": None, "previous_page": None}
        return Response(200, body)

    def list_tickets(self, req: Request) -> Response:
        if denied := self._denied(req):
            return denied
        wanted = req.query.get("external_id", [None])[0]
        found = [t for t in self.tickets.values() if wanted in (None, t["external_id"])]
        return self._page("tickets", found, req)

    def show_organizations(self, req: Request) -> Response:
        if denied := self._denied(req):
            return denied
        if "ids" in req.query:
            ids = {int(i) for i in req.query["ids"][0].split(",") if i.isdigit()}
            found = [o for o in self.organizations.values() if o["id"] in ids]
            return self._page("organizations", found)
        wanted = set(req.query.get("external_ids", [""])[0].split(","))
        found = [o for o in self.organizations.values() if o["external_id"] in wanted]
        return self._page("organizations", found)

    def create_ticket(self, req: Request) -> Response:
        if denied := self._denied(req):
            return denied
        if self.echo_authorization:
            echoed = {"Authorization": req.headers["authorization"]}
            said = f"upstream refused the request; headers: {echoed}"
            return Response(502, {"error": "BadGateway", "description": said})
        key = req.headers.get("idempotency-key")
        if key is None:
            return self._create_ticket(req)
        if key in self.idempotent:
            first_body, first = self.idempotent[key]
            if first_body != req.body:
                return Response(
                    400,
                    {
                        "error": "IdempotentRequestError",
                        "description": "Request parameters don't match the original request",
                    },
                )
            return Response(first.status, first.body, {"x-idempotency-lookup": "hit"})
        answer = self._create_ticket(req)
        if answer.status < 500:
            self.idempotent[key] = (req.body, answer)
        return Response(answer.status, answer.body, {"x-idempotency-lookup": "miss"})

    def _create_ticket(self, req: Request) -> Response:
        body = (req.json() or {}).get("ticket") or {}
        comment = body.get("comment") or {}
        if not body.get("subject"):
            return invalid("subject", "Subject: cannot be blank")
        if not (comment.get("body") or comment.get("html_body")):
            return invalid("base", "Description: cannot be blank")
        if body.get("type") not in (None, "problem", "incident", "question", "task"):
            return invalid("type", f"Type: {body['type']} is not valid")
        tid = next(self._ids)
        now = stamp()
        ticket = {
            "id": tid,
            "url": f"{self.url}/api/v2/tickets/{tid}.json",
            "external_id": body.get("external_id"),
            "type": body.get("type"),
            "subject": body["subject"],
            "raw_subject": body["subject"],
            "description": comment.get("body", ""),
            "priority": body.get("priority"),
            "status": body.get("status", "new"),
            "requester_id": 9001,
            "submitter_id": 9001,
            "assignee_id": body.get("assignee_id"),
            "organization_id": body.get("organization_id"),
            "group_id": body.get("group_id"),
            "due_at": body.get("due_at"),
            "tags": body.get("tags", []),
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": now,
            "updated_at": now,
        }
        self.tickets[tid] = ticket
        audit = {
            "id": tid * 10,
            "ticket_id": tid,
            "created_at": now,
            "author_id": 9001,
            "events": [{"id": tid * 10 + 1, "type": "Comment", "body": ticket["description"]}],
        }
        return Response(201, {"ticket": ticket, "audit": audit})

    def incremental(self, req: Request) -> Response:
        """Time-based incremental export: tickets updated at or after start_time."""
        if denied := self._denied(req):
            return denied
        start = int(req.query.get("start_time", ["0"])[0])
        found = sorted(
            (t for t in self.tickets.values() if unix(t["updated_at"]) >= start),
            key=lambda t: (t["updated_at"], t["id"]),
        )
        end = unix(found[-1]["updated_at"]) if found else start
        base = f"{self.url}/api/v2/incremental/tickets.json"
        body = {
            "tickets": found,
            "count": len(found),
            "end_time": end,
            "next_page": f"{base}?start_time={end}",
            "end_of_stream": True,
        }
        return Response(200, body)

    def export(self, req: Request) -> Response:
        """Cursor-based incremental export: tickets in (updated_at, id) order, from
        `start_time` on, or after the position a `cursor` stands for. `after_cursor` is
        given on every page, the last one too: the next export resumes from it."""
        if denied := self._denied(req):
            return denied
        if "cursor" in req.query:
            position = read_cursor(req.query["cursor"][0])
            if position is None:
                body = {"error": "InvalidPaginationParameter", "description": "invalid cursor"}
                return Response(400, body)
        elif "start_time" in req.query:
            position = (int(req.query["start_time"][0]), -1)  # that second included
        else:
            return Response(400, {"error": "InvalidValue", "description": "start_time missing"})
        size = int(req.query.get("per_page", [self.export_page_size])[0])
        after = sorted(
            (unix(t["updated_at"]), t["id"])
            for t in self.tickets.values()
            if (unix(t["updated_at"]), t["id"]) > position
        )
        page = after[:size]
        last = page[-1] if page else position
        cursor = export_cursor(*last)
        base = f"{self.url}/api/v2/incremental/tickets/cursor.json"
        body = {
            "tickets": [self.tickets[tid] for _, tid in page],
            "after_url": f"{base}?cursor={cursor}",
            "after_cursor": cursor,
            "before_url": None,
            "before_cursor": None,
            "end_of_stream": len(after) <= size,
        }
        return Response(200, body)
