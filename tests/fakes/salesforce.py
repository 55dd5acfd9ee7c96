"""A fake Salesforce org speaking the REST API's shapes: OAuth 2.0 token endpoint
(username-password and JWT bearer flows), Task upsert and read by External ID, Account
update, SOQL query with query locators (`nextRecordsUrl`), and limits.

SOQL is not parsed in general: only the shapes the connector sends are recognised by a
small regex each (anything else is MALFORMED_QUERY). Every record keeps its fields as
Salesforce returns them; dates are `2030-03-04T09:30:00.000+0000`.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
import trustme
from typing_extensions import override

from fakes.server import FakeServer, Request, Response

DATA = r"/services/data/v(?P<version>\d+\.\d)"
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
ACCOUNT_BY_FIELD = re.compile(
    r"^SELECT Id FROM Account WHERE (?P<field>\w+) = '(?P<value>(?:[^'\\]|\\.)*)' LIMIT 1$"
)
CLOSED_TASKS = re.compile(
    r"^SELECT Id, (?P<field>\w+), LastModifiedDate, LastModifiedById FROM Task "
    r"WHERE IsClosed = true "
    r"AND LastModifiedDate >= (?P<since>\S+) AND (?P=field) != null$"
)
USER = re.compile(r"^SELECT Id FROM User LIMIT 1$")
USER_ID = "0055g0000000001AAA"  # the integration user the token belongs to
USER_BY_EMAIL = re.compile(
    r"^SELECT Id, IsActive FROM User WHERE Email = (?P<value>'(?:[^'\\]|\\.)*')$"
)
# a quoted SOQL string: a quote inside it must come escaped (\'), else the query is malformed
STRING = r"'(?:[^'\\\n]|\\.)*'"
CHANGED_ACCOUNTS = re.compile(
    r"^SELECT (?P<fields>\w+(?:\.\w+)?(?:, \w+(?:\.\w+)?)*) FROM Account "
    r"WHERE LastModifiedDate > (?P<since>\S+)"
    rf"(?P<filters>(?: AND \w+ IN \({STRING}(?:,{STRING})*\))*)"
    r" ORDER BY LastModifiedDate, Id$"
)
FILTER = re.compile(rf"AND (?P<field>\w+) IN \((?P<values>{STRING}(?:,{STRING})*)\)")
UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
SF_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"


def sf_now() -> str:
    return sf_date(datetime.now(UTC))


def sf_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000+0000"


def soql_string(quoted: str) -> str:
    """The value of a quoted SOQL string literal."""
    return re.sub(r"\\(.)", lambda m: UNESCAPE.get(m[1], m[1]), quoted[1:-1])


def errors(status: int, message: str, code: str, fields: list[str] | None = None) -> Response:
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return Response(status, [item])


class FakeSalesforce(FakeServer):
    error_body = [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}]

    def __init__(
        self,
        username: str = "csauto@example.com",
        password: str = "hunter2-and-security-token",
        client_id: str = "3MVG9-consumer-key",
        client_secret: str = "C0NSUMER-SECRET-1234",
        jwt_public_key: bytes | None = None,
        page_size: int = 2000,
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__(ca)
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.jwt_public_key = jwt_public_key
        self.page_size = page_size
        self.tokens: set[str] = set()
        # the org's daily API allocation: every REST answer reports it in Sforce-Limit-Info
        self.api_max = 15000
        self.api_used = 0
        self.token_requests: list[dict[str, str]] = []
        self.expire_after_refresh = False  # the next issued token is dead on arrival
        # an org's validation rules on Task: each returns its error message, or None
        self.task_rules: list[Callable[[dict[str, Any]], str | None]] = []
        self.tasks: dict[str, dict[str, Any]] = {}  # id -> fields
        self.accounts: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}  # id -> a User's fields
        self.soql: list[str] = []
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.route("POST", r"/services/oauth2/token", self.token)
        sobject = DATA + r"/sobjects/(?P<type>Task|Account)"
        self.route("PATCH", sobject + r"/(?P<field>\w+)/(?P<value>[^/]+)", self.upsert)
        self.route("GET", sobject + r"/(?P<field>\w+)/(?P<value>[^/]+)", self.get_by_field)
        self.route("PATCH", sobject + r"/(?P<id>[A-Za-z0-9]{15,18})", self.update)
        self.route("GET", DATA + r"/query/?", self.query)
        self.route("GET", DATA + r"/query/(?P<locator>[\w-]+)", self.query_more)
        self.route("GET", DATA + r"/limits/?", self.limits)

    @override
    def dispatch(self, req: Request) -> Response:
        """Each REST call counts against the org's daily allocation, and its answer says
        so: `Sforce-Limit-Info: api-usage=N/M` (REST API Developer Guide, Limit Info
        Header). The token endpoint is OAuth's, not the REST API's: no header."""
        if not req.path.startswith("/services/data/"):
            return super().dispatch(req)
        with self.lock:
            self.api_used += 1
            used = self.api_used
        resp = super().dispatch(req)
        limit = f"api-usage={used}/{self.api_max}"
        resp.headers = {**resp.headers, "Sforce-Limit-Info": limit}
        return resp

    @override
    def not_found_body(self, req: Request) -> Any:
        return [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]

    # -- helpers for tests ----------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}5g0{next(self._ids):09d}AAA"

    def add_account(self, field: str, value: str, **fields: Any) -> str:
        """An Account; `LastModifiedDate` (a datetime or Salesforce's text) defaults to now."""
        with self.lock:
            aid = self.new_id("001")
            self.accounts[aid] = {"Id": aid, field: value, "LastModifiedDate": sf_now()}
            self.touch_account(aid, **fields)
            return aid

    def touch_account(self, account_id: str, when: datetime | None = None, **fields: Any) -> None:
        """Change an Account as a user would: its LastModifiedDate moves to `when` (now)."""
        with self.lock:
            stamp = fields.pop("LastModifiedDate", None) or when
            if isinstance(stamp, datetime):
                stamp = sf_date(stamp)
            self.accounts[account_id] |= fields | {"LastModifiedDate": stamp or sf_now()}

    def add_user(self, email: str, name: str, user_id: str = "", active: bool = True) -> str:
        """A User (Email is not unique in Salesforce: two users may share one)."""
        with self.lock:
            uid = user_id or self.new_id("005")
            self.users[uid] = {"Id": uid, "Name": name, "Email": email, "IsActive": active}
            return uid

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def close_task(self, task_id: str, when: datetime | None = None, by: str = "") -> None:
        """Close a task as user `by` (a Salesforce user id) would."""
        with self.lock:
            stamp = sf_date(when) if when else sf_now()
            self.tasks[task_id] |= {"Status": "Completed", "IsClosed": True}
            self.tasks[task_id]["LastModifiedDate"] = stamp
            self.tasks[task_id]["LastModifiedById"] = by or USER_ID

    def task_by(self, field: str, value: str) -> dict[str, Any] | None:
        with self.lock:
            return next((t for t in self.tasks.values() if t.get(field) == value), None)

    # -- OAuth ----------------------------------------------------------------------------
    def token(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.token_requests.append(form)
        if not self._grant(form):
            return Response(
                400, {"error": "invalid_grant", "error_description": "authentication failure"}
            )
        token = f"00D5g000000{next(self._ids):04d}!AR" + secrets.token_urlsafe(48)
        if not self.expire_after_refresh:
            self.tokens.add(token)
        return Response(
            200,
            {
                "access_token": token,
                "instance_url": self.url,
                "id": f"{self.url}/id/00D5g0000000001EAA/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(datetime.now(UTC).timestamp() * 1000)),
                "signature": secrets.token_urlsafe(32),
            },
        )

    def _grant(self, form: dict[str, str]) -> bool:
        if form.get("grant_type") == "password":
            wanted = (self.client_id, self.client_secret, self.username, self.password)
            given = tuple(
                form.get(k) for k in ("client_id", "client_secret", "username", "password")
            )
            return given == wanted
        if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            if self.jwt_public_key is None:
                return False
            try:
                claims = jwt.decode(
                    form.get("assertion", ""),
                    self.jwt_public_key,
                    algorithms=["RS256"],
                    audience=self.url,
                )
            except jwt.InvalidTokenError:
                return False
            return claims.get("iss") == self.client_id and claims.get("sub") == self.username
        return False

    def _authorised(self, req: Request) -> bool:
        header = req.headers.get("authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    # -- sObjects -------------------------------------------------------------------------
    def _table(self, req: Request) -> dict[str, dict[str, Any]]:
        assert req.match is not None
        return self.tasks if req.match["type"] == "Task" else self.accounts

    def upsert(self, req: Request) -> Response:
        if not self._authorised(req):
            return Response(401, INVALID_SESSION)
        assert req.match is not None
        field, value, kind = req.match["field"], unquote(req.match["value"]), req.match["type"]
        table = self._table(req)
        fields = req.json()
        found = next((r for r in table.values() if r.get(field) == value), None)
        for rule in self.task_rules if kind == "Task" else []:
            if message := rule((found or {}) | fields):
                return errors(400, message, "FIELD_CUSTOM_VALIDATION_EXCEPTION", [])
        if found is None:
            if kind == "Task" and not fields.get("Subject"):
                return errors(
                    400,
                    "Required fields are missing: [Subject]",
                    "REQUIRED_FIELD_MISSING",
                    ["Subject"],
                )
            rid = self.new_id("00T" if kind == "Task" else "001")
            table[rid] = {"Id": rid, field: value, "LastModifiedDate": sf_now()} | fields
            if kind == "Task":
                table[rid].setdefault("IsClosed", False)
            return Response(201, {"id": rid, "success": True, "errors": [], "created": True})
        found |= fields | {"LastModifiedDate": sf_now()}
        if float(req.match["version"]) < 46.0:  # before API 46.0 an update answers 204
            return Response(204)
        return Response(200, {"id": found["Id"], "success": True, "errors": [], "created": False})

    def get_by_field(self, req: Request) -> Response:
        if not self._authorised(req):
            return Response(401, INVALID_SESSION)
        assert req.match is not None
        field, value = req.match["field"], unquote(req.match["value"])
        found = next((r for r in self._table(req).values() if r.get(field) == value), None)
        if found is None:
            return Response(404, self.not_found_body(req))
        return Response(200, self._record(req.match["type"], req.match["version"], found))

    def update(self, req: Request) -> Response:
        if not self._authorised(req):
            return Response(401, INVALID_SESSION)
        assert req.match is not None
        table = self._table(req)
        if req.match["id"] not in table:
            return Response(404, self.not_found_body(req))
        table[req.match["id"]] |= req.json() | {"LastModifiedDate": sf_now()}
        return Response(204)

    def _record(self, kind: str, version: str, fields: dict[str, Any]) -> dict[str, Any]:
        url = f"/services/data/v{version}/sobjects/{kind}/{fields['Id']}"
        return {"attributes": {"type": kind, "url": url}, **fields}

    # -- SOQL -----------------------------------------------------------------------------
    def query(self, req: Request) -> Response:
        if not self._authorised(req):
            return Response(401, INVALID_SESSION)
        assert req.match is not None
        soql = req.query.get("q", [""])[0]
        self.soql.append(soql)
        version = req.match["version"]
        if m := ACCOUNT_BY_FIELD.match(soql):
            value = re.sub(r"\\(.)", r"\1", m["value"])
            rows = [
                self._record("Account", version, {"Id": a["Id"]})
                for a in self.accounts.values()
                if a.get(m["field"]) == value
            ][:1]
        elif m := CLOSED_TASKS.match(soql):
            since = datetime.fromisoformat(m["since"])
            rows = [
                self._record("Task", version, {k: t.get(k) for k in ("Id", m["field"])})
                | {k: t.get(k) for k in ("LastModifiedDate", "LastModifiedById")}
                for t in self.tasks.values()
                if t.get("IsClosed")
                and t.get(m["field"]) is not None
                and datetime.strptime(t["LastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%f%z") >= since
            ]
        elif m := CHANGED_ACCOUNTS.match(soql):
            rows = self._changed_accounts(version, m)
        elif m := USER_BY_EMAIL.match(soql):
            # SOQL compares Email without regard to case, as Salesforce does for text
            email = soql_string(m["value"]).lower()
            rows = [
                self._record("User", version, {"Id": u["Id"], "IsActive": u["IsActive"]})
                for u in self.users.values()
                if u["Email"].lower() == email
            ]
        elif USER.match(soql):
            rows = [self._record("User", version, {"Id": USER_ID})]
        else:
            return errors(400, f"unexpected query: {soql}", "MALFORMED_QUERY")
        return Response(200, self._page(version, rows, len(rows)))

    def _changed_accounts(self, version: str, m: re.Match[str]) -> list[dict[str, Any]]:
        """Accounts modified after `since` (and matching every `Field IN (...)`), oldest
        first, with the selected fields (null when unset, as Salesforce answers)."""
        since = datetime.fromisoformat(m["since"])
        wanted = {
            f["field"]: {soql_string(v) for v in re.findall(STRING, f["values"])}
            for f in FILTER.finditer(m["filters"])
        }
        found = sorted(
            (
                a
                for a in self.accounts.values()
                if datetime.strptime(a["LastModifiedDate"], SF_TIME) > since
                and all(a.get(f) in values for f, values in wanted.items())
            ),
            key=lambda a: (datetime.strptime(a["LastModifiedDate"], SF_TIME), a["Id"]),
        )
        rows = []
        for account in found:
            row: dict[str, Any] = {}
            for field in m["fields"].split(", "):
                parent, _, child = field.partition(".")
                if child:  # a relationship: a nested record, or null
                    related = account.get(parent)
                    row[parent] = (
                        None
                        if related is None
                        else {"attributes": {"type": parent}, child: related.get(child)}
                    )
                else:
                    row[field] = account.get(field)
            rows.append(self._record("Account", version, row))
        return rows

    def _page(self, version: str, rows: list[dict[str, Any]], total: int) -> dict[str, Any]:
        page, rest = rows[: self.page_size], rows[self.page_size :]
        body: dict[str, Any] = {"totalSize": total, "done": not rest, "records": page}
        if rest:
            locator = f"01g5g{next(self._ids):013d}-{total - len(rest)}"
            self._cursors[locator] = rest
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
        return body

    def query_more(self, req: Request) -> Response:
        if not self._authorised(req):
            return Response(401, INVALID_SESSION)
        assert req.match is not None
        rest = self._cursors.get(req.match["locator"])
        if rest is None:
            return errors(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
        total = int(req.match["locator"].rsplit("-", 1)[1]) + len(rest)
        return Response(200, self._page(req.match["version"], rest, total))

    def limits(self, req: Request) -> Response:
        if not self._authorised(req):
            return Response(401, INVALID_SESSION)
        return Response(
            200,
            {
                "DailyApiRequests": {
                    "Max": self.api_max,
                    "Remaining": self.api_max - self.api_used,
                },
                "DataStorageMB": {"Max": 5, "Remaining": 5},
            },
        )
