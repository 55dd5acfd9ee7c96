"""The Intercom conversations pull: a backfill of what the Intercom webhook brings
(ingest/vendor_push.py), through the same mapping (the `mapping:` of the sources.yaml
source named by `source`), so a conversation seen both ways is one signal.

Intercom's REST API (developers.intercom.com): `POST /conversations/search` with
`{"query": {"field": "updated_at", "operator": ">", "value": <unix>}, "pagination":
{"per_page": n, "starting_after": <cursor>}}`, `Authorization: Bearer <access token>` and
the `Intercom-Version` header; the answer's `pages.next.starting_after` is the next page's
cursor, absent on the last page. Rate limits: a 429 with `X-RateLimit-Reset` (a Unix time);
a `Retry-After`, when one is sent, is honoured first.

Each conversation is read as the notifications that describe it (Intercom's topics:
`conversation.user.created`; `conversation.rating.added` when it is rated;
`conversation.priority.updated` when it is marked priority) and mapped as the webhook maps
them. A conversation that cannot become a signal (no account, a rating the mapping does not
know) is held in the quarantine with its reason under the source's name; a re-run holds it
once (the same row, seen again). The cursor `<since>:<newest updated_at>:<starting_after>`
is saved after each page's signals are stored; at the end of the search the next run
searches from the newest `updated_at` seen, less a minute.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, ValidationError

from csautomation.connectors.http import classify_status, classify_transport, tls
from csautomation.errors import ConfigError, ConnectorAuthError, ConnectorError
from csautomation.facts.model import Signal
from csautomation.ingest.mapping import Event, VendorMapping, translate
from csautomation.ingest.pulls.common import PullContext, PullOptions, Tally, short_errors
from csautomation.ingest.sources import load_sources
from csautomation.store.identities import user_account
from csautomation.store.pull_tables import load_cursor, save_cursor
from csautomation.store.quarantine import Held, quarantine

log = logging.getLogger(__name__)
KIND_IC = "intercom_conversations"
SLEEP: Callable[[float], None] = time.sleep  # tests record the waits instead
MAX_WAIT = 60.0  # seconds: a longer reset ends the run; the next one resumes


class IntercomConversationsOptions(PullOptions):
    token_env: str = Field(default="CSAUTO_INTERCOM_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    source: str = "intercom"  # the sources.yaml source whose mapping applies
    sources_file: Path = Path("sources.yaml")
    base_url: str = Field(default="https://api.intercom.io", pattern=r"^https://")
    version: str = "2.11"  # the Intercom-Version header
    ca_bundle: str | None = None  # a CA file for the vendor's certificate (default: system)
    per_page: int = Field(default=50, ge=1, le=150)
    first_days: int = Field(default=30, ge=1, le=3650)  # how far back the first search starts
    max_pages: int = Field(default=20, ge=1, le=1000)  # per run; the rest on the next
    retries: int = Field(default=5, ge=0, le=20)  # per request, on 429, 5xx and resets
    timeout: float = Field(default=30.0, gt=0, le=300)

    def cursor_name(self) -> str:
        return self.name or self.source


def pull_intercom_conversations(
    opts: IntercomConversationsOptions, ctx: PullContext, tally: Tally
) -> str:
    token = os.environ.get(opts.token_env, "")
    if not token:
        raise ConfigError(f"pull {KIND_IC}: {opts.token_env} is not set (the access token)")
    mapping = _mapping(opts)
    name = opts.cursor_name()
    saved = load_cursor(ctx.store.engine, KIND_IC, name)
    since, newest, after = _read_cursor(
        saved, int((ctx.now - timedelta(days=opts.first_days)).timestamp())
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "Intercom-Version": opts.version,
        "Accept": "application/json",
    }
    with httpx.Client(
        base_url=opts.base_url,
        headers=headers,
        timeout=opts.timeout,
        verify=tls(opts.ca_bundle or True),
    ) as http:
        for _ in range(opts.max_pages):
            body: dict[str, Any] = {
                "query": {"field": "updated_at", "operator": ">", "value": since},
                "pagination": {"per_page": opts.per_page},
            }
            if after:
                body["pagination"]["starting_after"] = after
            page = _search(http, body, opts.retries, token)
            found = [c for c in page.get("conversations") or [] if isinstance(c, dict)]
            tally.fetched += len(found)
            tally.stored += _store(ctx, opts.source, mapping, found)
            for c in found:
                if isinstance(c.get("updated_at"), int):
                    newest = max(newest, c["updated_at"])
            nxt = (page.get("pages") or {}).get("next") or {}
            after = nxt.get("starting_after") if isinstance(nxt, dict) else None
            if not after:  # the end: the next run searches from what was seen
                since, newest, after = max(since, newest - 60), max(since, newest - 60), None
            cursor = f"{since}:{newest}:{after or ''}"
            save_cursor(ctx.store.engine, KIND_IC, name, cursor, ctx.now)
            if not after:
                break
    return f"{since}:{newest}:{after or ''}"


def _mapping(opts: IntercomConversationsOptions) -> VendorMapping:
    spec = load_sources(opts.sources_file, {}).declared.get(opts.source)
    if spec is None or spec.auth != "intercom":
        raise ConfigError(
            f"pull {KIND_IC}: no source '{opts.source}' with auth: intercom in {opts.sources_file}"
        )
    return spec.mapping


def _read_cursor(saved: str | None, first: int) -> tuple[int, int, str | None]:
    if not saved:
        return first, first, None
    since, _, rest = saved.partition(":")
    newest, _, after = rest.partition(":")
    try:
        return int(since), int(newest or since), after or None
    except ValueError:
        log.warning("Intercom cursor %r unreadable: starting %s", saved, first)
        return first, first, None


def _search(http: httpx.Client, body: dict[str, Any], retries: int, token: str) -> dict[str, Any]:
    op = "search conversations"
    for attempt in range(retries + 1):
        error: ConnectorError
        try:
            r = http.post("/conversations/search", json=body)
        except httpx.TransportError as exc:
            error = classify_transport("intercom", op, exc, [token])
        else:
            if r.status_code == 200:
                data = r.json()
                if not isinstance(data, dict):
                    raise classify_status("intercom", op, 502, r.headers, "not a conversation.list")
                return data
            error = classify_status("intercom", op, r.status_code, r.headers, r.content, [token])
            if r.status_code == 429 and error.retry_after is None:
                error.retry_after = _reset_wait(r.headers)
        # a refused token stays refused however often it is sent
        if isinstance(error, ConnectorAuthError) or not error.retryable or attempt == retries:
            raise error
        wait = error.retry_after if error.retry_after is not None else min(2.0**attempt, 30.0)
        if wait > MAX_WAIT:
            raise error
        log.info("Intercom %s: %s; retrying in %.1f s", op, error, wait)
        SLEEP(wait)
    raise AssertionError("unreachable")


def _reset_wait(headers: httpx.Headers) -> float | None:
    reset = headers.get("x-ratelimit-reset", "")
    return max(0.0, int(reset) - time.time()) if reset.isdigit() else None


def _notifications(conv: dict[str, Any]) -> list[Event]:
    """The conversation as the webhook's notifications of its state."""
    doc = {"type": "notification_event", "data": {"item": conv}}
    cid = str(conv.get("id", ""))
    out = [Event("conversation.user.created", doc, cid, "data.item.created_at", "unix_seconds")]
    rating = conv.get("conversation_rating")
    if isinstance(rating, dict) and rating.get("rating") is not None:
        at = "data.item.conversation_rating.created_at"
        if not isinstance(rating.get("created_at"), int):
            at = "data.item.updated_at"
        out.append(Event("conversation.rating.added", doc, cid, at, "unix_seconds"))
    if conv.get("priority") == "priority":
        out.append(
            Event("conversation.priority.updated", doc, cid, "data.item.updated_at", "unix_seconds")
        )
    return out


def _store(
    ctx: PullContext, source: str, mapping: VendorMapping, found: list[dict[str, Any]]
) -> int:
    """Signals stored (new ones counted); the conversations that cannot become one held."""
    signals: list[Signal] = []
    bad: list[Held] = []

    def users(user: str) -> str | None:
        return user_account(ctx.store, source, user)

    for conv in found:
        errors: list[dict[str, str]] = []
        for event in _notifications(conv):
            done = translate("intercom", mapping, event, users)
            if done is None:
                continue
            errors += [e.to_dict() for e in done.errors]
            if done.no_account:
                paths = ", ".join(r.from_ for r in mapping.account) or "none"
                errors.append({"field": "account_id", "message": f"no account found ({paths})"})
            for item in done.signals:
                try:
                    signals.append(Signal.model_validate(item))
                except ValidationError as exc:
                    errors.append({"field": "", "message": short_errors(exc)})
        if errors:
            bad.append(Held(source, _raw(conv), _unique(errors)))
    known = ctx.store.known_accounts({s.account_id for s in signals})
    for s in signals:
        if s.account_id not in known:
            why = {"field": "account_id", "message": f"unknown account '{s.account_id}'"}
            bad.append(
                Held(source, s.model_dump_json(), [why], fingerprint=f"ic:{s.idempotency_key}")
            )
    stored = ctx.store.add_signals([s for s in signals if s.account_id in known])
    if bad:
        quarantine(ctx.store, bad)
        log.warning("Intercom: %d conversation(s) held in the quarantine", len(bad))
    return stored


def _raw(conv: dict[str, Any]) -> str:
    return json.dumps(conv, ensure_ascii=False, sort_keys=True)


def _unique(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for e in errors:
        if e not in out:
            out.append(e)
    return out
