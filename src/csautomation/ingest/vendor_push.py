"""Vendors' own webhooks as signals: Intercom notifications and Segment-spec calls.

Intercom (developers.intercom.com, "Signed notifications" and "Webhook models"): each
notification is `{"type": "notification_event", "id": "notif_...", "topic": ...,
"created_at": <unix seconds>, "data": {"item": {...}}}`, signed with the app's client
secret: `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body>`. Intercom sends topic
`ping` when the URL is set up; it is answered and stores nothing.

Segment (Twilio Segment docs, "Webhooks (Actions) destination" and "HTTP API source"): one
call per request (`track`, `identify`, `group`, `page`, ...) signed with the destination's
shared secret, `X-Signature: <hex HMAC-SHA1 of the raw body>`; or, as Segment's HTTP
Tracking API and the CDPs that speak it send, `Authorization: Basic base64("<write key>:")`
and the batch shape `{"batch": [calls], "context": {...}}` (the batch's context applies to
every call). Webhooks (Actions) with batching turned on signs only the first event of a
batch (Twilio support, "How Segment computes x-signature for batched webhooks"): such a
body is refused, since the rest of it would be unproven; use the write key for batches.

Neither vendor signs a timestamp, so a replayed delivery is not refused: it is answered
and stores nothing, since every signal's key comes from the vendor's ids (Intercom's
notification or conversation id, Segment's messageId).

What a proven sender gets back is 200 whatever became of each event: both vendors retry
what is not 2xx (a 4xx from Segment's point of view is dropped), and an event that cannot
become a signal is held in the quarantine with its reason, named in the answer, where
retrying would change nothing. Only a request that proves no source is refused (401).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from csautomation import metrics
from csautomation.ingest.intake import Intake, ItemError, Outcome
from csautomation.ingest.mapping import MISSING, AccountRule, Event, find_account, lookup
from csautomation.ingest.mapping import translate as map_event
from csautomation.ingest.sources import Caller, SourceAuthError, Sources
from csautomation.ingest.validate import FieldError
from csautomation.store.identities import link_user, user_account
from csautomation.store.quarantine import Held, quarantine

INTERCOM_SIGNATURE = "x-hub-signature"
SEGMENT_SIGNATURE = "x-signature"
SEGMENT_CALLS = ("track", "identify", "group", "page", "screen", "alias")
GROUP_DEFAULT = [AccountRule.model_validate({"from": "groupId"})]


def _matches(secret: str, body: bytes, sent: str) -> bool:
    """`sent` is the hex HMAC-SHA1 of `body` (compared as bytes: a header may hold any
    character, and compare_digest refuses non-ASCII text)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest().encode()
    return hmac.compare_digest(sent.strip().lower().encode("utf-8", "replace"), digest)


def prove(
    sources: Sources, name: str, auth: str, headers: Mapping[str, str], body: bytes
) -> Caller:
    """The source `name` of kind `auth` when the request carries its proof; SourceAuthError
    (401) naming what is missing, never a secret."""
    spec = sources.specs.get(name)
    if spec is None or spec.auth != auth:
        raise SourceAuthError(f"no enabled {auth} source named '{name[:64]}' in sources.yaml")
    secret = sources.env.get(spec.secret_env, "")
    if not secret:
        raise SourceAuthError(f"source '{name}' has no secret: {spec.secret_env} is not set")
    if auth == "intercom":
        sent = headers.get(INTERCOM_SIGNATURE, "")
        if not sent.startswith("sha1="):
            raise SourceAuthError("send X-Hub-Signature: sha1=<HMAC-SHA1 of the body>")
        if not _matches(secret, body, sent[5:]):
            raise SourceAuthError("X-Hub-Signature does not match the body")
        return Caller(name, spec)
    sent = headers.get(SEGMENT_SIGNATURE, "").strip().lower()
    if sent:
        if not _matches(secret, body, sent):
            raise SourceAuthError("X-Signature does not match the body")
        return Caller(name, spec)
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise SourceAuthError(
            "send X-Signature (HMAC-SHA1 of the body) or Authorization: Basic <write key>"
        )
    try:
        user = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise SourceAuthError("Authorization: Basic is not base64 of '<write key>:'") from None
    if not hmac.compare_digest(user.encode(), secret.encode()):
        raise SourceAuthError("unknown write key")
    return Caller(name, spec)


@dataclass
class Answer:
    """What one delivery became, as the JSON answered."""

    events: int = 0
    ignored: list[dict[str, Any]] = field(default_factory=list)
    linked: int = 0
    held: list[dict[str, Any]] = field(default_factory=list)
    quarantine_ids: list[int] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)

    def to_json(self) -> dict[str, Any]:
        body = {
            "events": self.events,
            "stored": len(self.outcome.stored),
            "duplicates": len(self.outcome.duplicates),
            "linked": self.linked,
            "ignored": self.ignored,
            "signals": self.outcome.to_json()["signals"],
        }
        held = self.held + [e.to_dict() for e in self.outcome.errors]
        if held:
            body["held"] = held
            body["quarantine_ids"] = self.quarantine_ids + self.outcome.quarantined
            body["detail"] = "; ".join(
                f"[{h['index']}] {h['field']}: {h['message']}" if h["field"] else h["message"]
                for h in held[:20]
            )
        return body


class VendorIntake:
    """Intercom notifications and Segment calls to stored signals, through `Intake` (the
    same checks, quarantine and group commit as POST /v1/signals)."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.store = intake.store

    async def hold(
        self,
        caller: Caller,
        answer: Answer,
        index: int | None,
        raw: Any,
        errors: Sequence[FieldError],
    ) -> None:
        """Keep `raw` in the quarantine with its errors (committed before this returns)."""
        text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
        found = [{"field": e.field, "message": e.message} for e in errors]
        ids = await asyncio.to_thread(quarantine, self.store, [Held(caller.name, text, found)])
        answer.quarantine_ids += ids
        answer.held += [{"index": index, **f} for f in found]
        metrics.count_rejected(caller.name, ["invalid"] * len(found))

    async def intercom(self, caller: Caller, data: Any, raw: str) -> Answer:
        answer = Answer()
        why = _intercom_problem(data)
        if why:
            await self.hold(caller, answer, None, raw, [why])
            return answer
        if data["topic"] == "ping":
            answer.ignored.append({"index": 0, "event": "ping", "reason": "Intercom's test"})
            return answer
        event = Event(data["topic"], data, data["id"], "created_at", "unix_seconds")
        await self._signals(caller, answer, [(0, event)])
        return answer

    async def segment(self, caller: Caller, data: Any, raw: str) -> Answer:
        answer = Answer()
        calls, why = _segment_calls(data)
        if why:
            await self.hold(caller, answer, None, raw, [why])
            return answer
        events: list[tuple[int, Event]] = []
        for index, call in enumerate(calls):
            problem = _segment_problem(call)
            if problem:
                await self.hold(caller, answer, index, call, [problem])
            elif call["type"] in ("group", "identify"):
                # links first, in order: a later track call of this delivery uses them
                await self._signals(caller, answer, events)
                events = []
                await self._link(caller, answer, index, call)
            elif call["type"] == "track":
                name = call.get("event") if isinstance(call.get("event"), str) else ""
                events.append((index, Event(name, call, call["messageId"], "timestamp", "iso")))
            else:
                answer.ignored.append(
                    {"index": index, "event": call["type"], "reason": "not mapped"}
                )
        await self._signals(caller, answer, events)
        return answer

    async def _link(self, caller: Caller, answer: Answer, index: int, call: dict[str, Any]) -> None:
        mapping = caller.spec.mapping
        rules = mapping.group or GROUP_DEFAULT if call["type"] == "group" else mapping.identify
        user = call.get("userId") or call.get("anonymousId")
        account = find_account(rules, call, lambda _: None) if rules else None
        if account is None:
            if call["type"] == "group":
                where = ", ".join(r.from_ for r in rules)
                why = FieldError(where, "no account in this group call")
                await self.hold(caller, answer, index, call, [why])
            else:  # an identify call that names no account is fine: nothing to link
                answer.ignored.append({"index": index, "event": "identify", "reason": "no account"})
            return
        if not isinstance(user, str) or not user:
            why = FieldError("userId", "missing: a group call links a user (or anonymousId)")
            await self.hold(caller, answer, index, call, [why])
            return
        if await self.intake.accounts.unknown({account}):
            why = FieldError("groupId", f"unknown account '{account[:128]}'")
            await self.hold(caller, answer, index, call, [why])
            return
        when = _when(call.get("timestamp"))
        await asyncio.to_thread(
            link_user, self.store, caller.name, user, account, when, call["messageId"]
        )
        answer.linked += 1

    async def _signals(
        self, caller: Caller, answer: Answer, events: list[tuple[int, Event]]
    ) -> None:
        """Map the events; hold what cannot become a signal; take the rest in one go."""
        vendor = caller.spec.auth

        def users(user: str) -> str | None:
            return user_account(self.store, caller.name, user)

        items: list[Any] = []
        where: list[int] = []  # each item's index in the delivery
        for index, event in events:
            answer.events += 1
            done = await asyncio.to_thread(map_event, vendor, caller.spec.mapping, event, users)
            if done is None:
                answer.ignored.append({"index": index, "event": event.name, "reason": "not mapped"})
                continue
            if done.errors:
                await self.hold(caller, answer, index, event.doc, done.errors)
                continue
            for item in done.no_account:
                paths = ", ".join(r.from_ for r in caller.spec.mapping.account) or "none"
                why = FieldError("account_id", f"no account found for this event ({paths})")
                await self.hold(caller, answer, index, item, [why])
            items += done.signals
            where += [index] * len(done.signals)
        if not items:
            return
        took = await self.intake.take(caller, items)
        out = answer.outcome
        out.stored += [(where[i], key) for i, key in took.stored]
        out.duplicates += [(where[i], key) for i, key in took.duplicates]
        out.errors += [
            ItemError(None if e.index is None else where[e.index], e.field, e.message)
            for e in took.errors
        ]
        out.quarantined += took.quarantined


def _intercom_problem(data: Any) -> FieldError | None:
    if not isinstance(data, dict) or data.get("type") != "notification_event":
        return FieldError("type", 'expected an Intercom notification: "type": "notification_event"')
    for name in ("topic", "id"):
        if not isinstance(data.get(name), str) or not data[name]:
            return FieldError(name, "missing: every Intercom notification has one")
    if data["topic"] != "ping" and lookup(data, "data.item") is MISSING:
        return FieldError("data.item", "missing: the notification's object")
    return None


def _segment_calls(data: Any) -> tuple[list[Any], FieldError | None]:
    if isinstance(data, dict) and "batch" in data:
        batch = data["batch"]
        if not isinstance(batch, list) or not batch:
            return [], FieldError("batch", "expected a list of calls")
        context = data.get("context")
        if isinstance(context, dict):
            batch = [
                {"context": context, **c} if isinstance(c, dict) and "context" not in c else c
                for c in batch
            ]
        return batch, None
    if isinstance(data, dict):
        return [data], None
    return [], FieldError("", 'expected a Segment call or {"batch": [calls]}')


def _segment_problem(call: Any) -> FieldError | None:
    if not isinstance(call, dict):
        return FieldError("", "expected a Segment call (a JSON object)")
    if call.get("type") not in SEGMENT_CALLS:
        return FieldError("type", f"expected one of {', '.join(SEGMENT_CALLS)}")
    if not isinstance(call.get("messageId"), str) or not call["messageId"]:
        return FieldError("messageId", "missing: it keeps a redelivered call from counting twice")
    return None


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0).astimezone()
