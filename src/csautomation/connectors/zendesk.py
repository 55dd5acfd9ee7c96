"""Zendesk Support tickets through `zenpy`, with an agent's email and API token.

Exactly once per idempotency key, twice over: the create carries Zendesk's own
`Idempotency-Key` header (a repeat within Zendesk's two hours answers with the first ticket,
even while the first request is still in flight), and the key is also the ticket's
`external_id`, looked up (`GET /api/v2/tickets.json?external_id=`) before every create, so
a re-drive days later finds the ticket the header has forgotten. Completion sync
reads the time-based incremental ticket export for solved and closed tickets; the
ticket pull (`csautomation.ingest.pulls`) reads the cursor-based one a page at a time.

zenpy is told not to wait or retry, because Temporal owns retries: on a 429 it would sleep
for Retry-After and ask again, inside the activity. A response hook turns a 429 into an
`APIException` before zenpy sees it, and the session we pass has no urllib3 retries (zenpy
mounts a three-retry adapter only on sessions it builds itself).
"""

from __future__ import annotations

import base64
import contextvars
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from csautomation import logs
from csautomation.connectors.base import Completion, Receipt, TaskRequest
from csautomation.connectors.config import ZendeskConfig, secret
from csautomation.connectors.http import classify_status, classify_transport
from csautomation.connectors.owners import SOURCES, Owners, UserMatch, pick
from csautomation.connectors.resilience import Guard, Guardable
from csautomation.errors import ConnectorAuthError, ConnectorValidationError

PRIORITIES = {"critical": "urgent", "high": "high", "medium": "normal", "low": "low"}
DONE = ("solved", "closed")

T = TypeVar("T")


@dataclass(frozen=True)
class ExportedTicket:
    id: int
    external_id: str | None  # ours when csautomation made the ticket (its idempotency key)
    organization_id: int | None
    priority: str | None  # low, normal, high, urgent; None when unset
    subject: str
    tags: tuple[str, ...]
    status: str
    updated_at: str  # as Zendesk wrote it, e.g. 2030-03-04T09:30:00Z


@dataclass(frozen=True)
class TicketPage:
    """One page of the cursor-based incremental ticket export. `after_cursor` resumes
    after this page (kept even at the end of the stream, for the next export)."""

    tickets: list[ExportedTicket]
    after_cursor: str | None
    end_of_stream: bool


def zendesk_time(moment: datetime) -> str:
    """Zendesk's datetime form: UTC, seconds, 'Z'. A naive datetime is taken as UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _refuse_rate_limit(response: requests.Response, **_kwargs: Any) -> None:
    """zenpy sleeps on a 429's Retry-After and asks again; raise first, with the response."""
    if response.status_code == 429:
        raise APIException("rate limited", response=response)


# the Idempotency-Key of the create in progress on this thread (zenpy takes no headers)
_IDEMPOTENCY_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zendesk_idempotency_key", default=None
)


class _Session(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE override a session's `verify`; a CA file or False
    given to the connector must win (True still honours the environment's bundle). A POST
    made while `_IDEMPOTENCY_KEY` is set carries it as Zendesk's `Idempotency-Key`."""

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        key = _IDEMPOTENCY_KEY.get()
        if key is not None and method == "POST":
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Idempotency-Key": key}
        return super().request(method, url, *args, **kwargs)

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
        if self.verify is not True:
            settings["verify"] = self.verify
        return settings


class ZendeskTicketing(Guardable):
    def __init__(
        self,
        config: ZendeskConfig,
        env: Mapping[str, str] | None = None,
        verify: str | bool = True,
        guard: Guard | None = None,
    ) -> None:
        super().__init__(guard)
        self.config = config
        self.name = config.id
        self._env = env
        self._verify = verify
        # one zenpy.Zenpy per thread, built on first use, all on one session: zenpy keeps
        # the object a create is serializing on its shared endpoint (`_dirty_object`) and
        # clears it when any response on that endpoint is processed, so a lookup finishing
        # on another activity thread could strip a ticket's comment mid-serialization
        # (Zendesk then answered 422 "Description: cannot be blank", a dead letter)
        self._local = threading.local()
        self._session: _Session | None = None
        self._generation = 0  # close() bumps it: a thread's older client is rebuilt
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._organizations: dict[str, int | None] = {}  # our account id -> Zendesk's
        self.owners = Owners(
            config.id, "Zendesk", config.owners, config.fallback_owner, self._user, str.isdigit
        )

    def _where(self) -> tuple[str, str]:
        """zenpy builds `https://{subdomain}.{domain}/api/v2`: split a URL's host at its
        first dot (`https://127.0.0.1:8443` is subdomain `127`, domain `0.0.1:8443`)."""
        if self.config.url is None:
            if not self.config.subdomain:
                raise ConnectorValidationError(
                    self.name, "configure", "set either subdomain or url for Zendesk"
                )
            return self.config.subdomain, "zendesk.com"
        parts = urlsplit(self.config.url)
        subdomain, dot, domain = parts.netloc.partition(".")
        if parts.scheme != "https" or parts.path.strip("/") or not dot or not subdomain:
            raise ConnectorValidationError(
                self.name,
                "configure",
                f"url must be https://host[:port] with a dotted host, found {self.config.url}",
            )
        return subdomain, domain

    def _zenpy(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is not None and self._local.generation == self._generation:
            return client
        with self._lock:  # the session and the secrets are shared by every thread's client
            if self._session is None:
                email = secret(self.name, self.config.auth.email_env, self._env)
                token = secret(self.name, self.config.auth.token_env, self._env)
                session = _Session()
                session.verify = self._verify
                session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=32))
                session.hooks["response"].append(_refuse_rate_limit)
                # what goes on the wire is `Basic base64(email/token:token)`: an upstream
                # that echoes the Authorization header echoes that, not the token
                basic = base64.b64encode(f"{email}/token:{token}".encode()).decode()
                logs.register(basic)
                self._secrets = (token, email, basic)
                self._session = session
            session, generation = self._session, self._generation
            token, email = self._secrets[:2]
        subdomain, domain = self._where()
        client = Zenpy(
            subdomain=subdomain,
            domain=domain,
            email=email,
            token=token,
            session=session,
            timeout=self.config.timeout.total_seconds(),
            proactive_ratelimit=None,
            ratelimit_budget=0,  # should a 429 slip past the hook: raise, never sleep
            disable_cache=True,  # a cached ticket would hide its new status
        )
        self._local.client, self._local.generation = client, generation
        return client

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            self._generation += 1

    def _call(self, operation: str, action: Callable[[Any], T]) -> T:
        """Run `action(zenpy)` through the guard; every failure leaves here as a
        ConnectorError, with the token and email redacted. zenpy's generators call the
        API while iterated, so `action` must consume them."""
        return self._guarded(operation, lambda: self._request(operation, action))

    def _request(self, operation: str, action: Callable[[Any], T]) -> T:
        client = self._zenpy()
        secrets = self._secrets
        try:
            return action(client)
        # `from None` below: zenpy's exception holds the response unredacted
        except APIException as exc:
            resp = exc.response
            if resp is None:
                raise classify_transport(self.name, operation, exc, secrets) from None
            raise classify_status(
                self.name, operation, resp.status_code, resp.headers, resp.text, secrets
            ) from None
        except RatelimitBudgetExceeded as exc:
            raise classify_status(self.name, operation, 429, None, str(exc), secrets) from None
        except requests.HTTPError as exc:  # an error status whose body is not JSON
            resp = exc.response
            status = resp.status_code if resp is not None else 502
            text = resp.text if resp is not None else ""
            headers = resp.headers if resp is not None else None
            raise classify_status(self.name, operation, status, headers, text, secrets) from None
        except requests.RequestException as exc:  # timeouts, resets, refusals, TLS
            raise classify_transport(self.name, operation, exc, secrets) from exc
        except (ZenpyException, ValueError) as exc:  # a 2xx that is not Zendesk's JSON
            raise classify_transport(self.name, operation, exc, secrets) from exc

    def _existing(self, key: str) -> str | None:
        def look(zd: Any) -> list[Any]:
            # zenpy puts query values into the URL unencoded: encode them here
            return list(zd.tickets(external_id=quote(key, safe="")))

        hits = [t for t in self._call("create_task", look) if t.external_id == key]
        return str(hits[0].id) if hits else None

    def _organization(self, account_id: str) -> int | None:
        """The account's organization, looked up once per account for the connector's
        life (an organization's id does not change; one made later is found after a
        worker restart)."""
        if account_id in self._organizations:
            return self._organizations[account_id]

        def look(zd: Any) -> list[Any]:
            # not organizations.external(): zenpy appends its paging to that URL's query
            return list(zd.organizations(external_id=quote(account_id, safe="")))

        hits = [o for o in self._call("create_task", look) if o.external_id == account_id]
        found = int(hits[0].id) if hits else None
        if found is not None:  # an account without one yet may get one: ask again
            self._organizations[account_id] = found
        return found

    def _ticket(self, request: TaskRequest, organization: int | None) -> Ticket:
        level = request.priority.lower()
        owner = self.owners.assign(request)
        fields: dict[str, Any] = {
            "subject": request.subject,
            # a private note: the account's health is for agents, not for requesters
            # Zendesk needs a first comment: a step without a description sends its subject
            "comment": Comment(
                body=owner.description(request.description) or request.subject, public=False
            ),
            "external_id": request.idempotency_key,
            "type": "task",
            "due_at": zendesk_time(request.due_at),
            "priority": self.config.priorities.get(level) or PRIORITIES.get(level, "normal"),
        }
        if not owner.user_id.isdigit():
            where = SOURCES[owner.source]
            raise ConnectorValidationError(
                self.name, "create_task", f"'{owner.user_id}' ({where}) is not a Zendesk user id"
            )
        fields["assignee_id"] = int(owner.user_id)
        if self.config.group_id is not None:
            fields["group_id"] = self.config.group_id
        if organization is not None:
            fields["organization_id"] = organization
        return Ticket(**fields)

    def _user(self, email: str) -> UserMatch:
        """The agent with this e-mail (users/search, Zendesk's search syntax): only agents
        and admins can be a ticket's assignee."""

        def look(zd: Any) -> list[Any]:
            return list(zd.users.search(query=f"email:{email}"))

        users = [u for u in self._call("find_user", look) if _same(u.email, email)]
        return pick("Zendesk", email, [(str(u.id), _unassignable(u)) for u in users])

    def create_task(self, request: TaskRequest) -> Receipt:
        found = self._existing(request.idempotency_key)
        if found is not None:
            return Receipt(self.name, found, created=False)
        ticket = self._ticket(request, self._organization(request.account.id))
        token = _IDEMPOTENCY_KEY.set(request.idempotency_key)
        try:
            made = self._call("create_task", lambda zd: zd.tickets.create(ticket))
        finally:
            _IDEMPOTENCY_KEY.reset(token)
        # Zendesk answers a create with the ticket and its audit: zenpy's TicketAudit
        made = getattr(made, "ticket", made)
        return Receipt(self.name, str(made.id), created=True)

    def completed_since(self, since: datetime) -> list[Completion]:
        start = since.replace(tzinfo=UTC) if since.tzinfo is None else since

        def export(zd: Any) -> list[Any]:
            return list(zd.tickets.incremental(start_time=start, paginate_by_time=True))

        done: dict[str, Completion] = {}
        for ticket in self._call("completed_since", export):
            if ticket.status not in DONE or not ticket.external_id:
                continue  # open, or a ticket someone made by hand
            when = parse_time(ticket.updated_at)
            done[str(ticket.id)] = Completion(str(ticket.id), ticket.external_id, when)
        return list(done.values())

    def export_tickets(
        self, start: datetime | None = None, cursor: str | None = None
    ) -> TicketPage:
        """One page of `GET incremental/tickets/cursor.json`: from `start` on a first
        export, else after `cursor` (exactly one of the two)."""

        def page(zd: Any) -> TicketPage:
            if cursor is not None:
                gen = zd.tickets.incremental(cursor=cursor)
            else:
                assert start is not None, "give start or cursor"
                moment = start.replace(tzinfo=UTC) if start.tzinfo is None else start
                gen = zd.tickets.incremental(start_time=moment)
            # zenpy fetched the first page to build its generator and copied the page's
            # scalar fields onto it; iterating further would fetch the next page
            tickets = [_exported(t) for t in (gen.values or [])]
            return TicketPage(
                tickets,
                getattr(gen, "after_cursor", None),
                bool(getattr(gen, "end_of_stream", True)),
            )

        return self._call("export_tickets", page)

    def organization_external_ids(self, ids: Collection[int]) -> dict[int, str | None]:
        """Organization id -> its external_id (None when unset); ids Zendesk does not
        know are left out. One `organizations/show_many.json?ids=` per 100 ids."""
        wanted = sorted(set(ids))
        found: dict[int, str | None] = {}
        for start in range(0, len(wanted), 100):
            orgs = self._call("organizations", _show_many(wanted[start : start + 100]))
            found |= {int(o.id): (str(o.external_id) if o.external_id else None) for o in orgs}
        return found

    def check(self) -> str:
        me = self._call("check", lambda zd: zd.users.me())
        if me is None or me.id is None:
            raise ConnectorAuthError(
                self.name, "check", "Zendesk answered as an anonymous user: credentials ignored"
            )
        return f"authenticated as {me.name} <{me.email}>"


def _show_many(ids: list[int]) -> Callable[[Any], list[Any]]:
    return lambda zd: list(zd.organizations(ids=ids))


def _exported(ticket: Any) -> ExportedTicket:
    return ExportedTicket(
        id=int(ticket.id),
        external_id=ticket.external_id or None,
        organization_id=int(ticket.organization_id) if ticket.organization_id else None,
        priority=ticket.priority or None,
        subject=ticket.subject or "",
        tags=tuple(ticket.tags or ()),
        status=ticket.status or "",
        updated_at=str(ticket.updated_at),
    )


def _same(found: str | None, email: str) -> bool:
    return (found or "").lower() == email.lower()  # the search also matches in part


def _unassignable(user: Any) -> str:
    """Why a Zendesk user cannot be a ticket's assignee; "" when they can."""
    if user.role not in ("agent", "admin"):
        return f"is an {user.role}, not an agent"
    if getattr(user, "suspended", False) or not getattr(user, "active", True):
        return "is suspended or deleted"
    return ""
