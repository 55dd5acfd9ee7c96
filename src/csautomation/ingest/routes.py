"""The ingestion API, in the review app:

    POST /v1/signals                    one signal, {"signals": [...]} or a list (up to 1000)
        auth: a source's token (Authorization: Bearer) or its HMAC signature
              (X-Csauto-Source, X-Csauto-Timestamp, X-Csauto-Signature), per sources.yaml
        202  every item stored durably (or already stored: a duplicate delivery)
        422  some item is bad: `errors` names each (index, field, message); the bad items
             are in the quarantine (`quarantine_ids`); the good ones were stored all the same
        401  no source proven; 413 body or batch too large; 503 the store is down (nothing
             was stored: retry)
    GET  /v1/quarantine                 ?status=open&source=...   (people token: admin, ops)
    GET  /v1/quarantine/{id}
    POST /v1/quarantine/{id}/reprocess  optional body: the corrected signal
    POST /v1/quarantine/{id}/discard

Each signal's `idempotency_key` (or, for a single signal, the Idempotency-Key header;
otherwise one derived from its content) makes a delivery repeated any number of times one
stored signal.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from csautomation import metrics
from csautomation.api.auth import Authenticator
from csautomation.api.errors import NotAllowedError, NotSignedInError, ReviewError
from csautomation.errors import ServiceUnavailableError
from csautomation.escalation.people import Person
from csautomation.facts.model import PAYLOADS, Signal
from csautomation.ingest.intake import MAX_BATCH, Intake, discard, items_of, reprocess
from csautomation.ingest.sources import SourceAuthError, Sources
from csautomation.ingest.validate import clean_json
from csautomation.store.quarantine import get_held, held
from csautomation.store.tables import QuarantineRow

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024
QUARANTINE_ROLES = frozenset({"admin", "ops"})


class QuarantineNotFoundError(ReviewError):
    status = 404


class SignalBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signals: list[Signal] = Field(max_length=MAX_BATCH)


class QuarantineItem(BaseModel):
    id: int
    source: str
    status: str
    times: int
    errors: list[dict[str, Any]]
    raw: str
    signal_key: str
    received_at: str
    last_seen_at: str
    resolved_by: str
    result_key: str

    @classmethod
    def of(cls, row: QuarantineRow) -> "QuarantineItem":
        assert row.id is not None
        return cls(
            id=row.id,
            source=row.source,
            status=row.status,
            times=row.times,
            errors=row.errors,
            raw=row.raw,
            signal_key=row.signal_key,
            received_at=row.received_at.isoformat(),
            last_seen_at=row.last_seen_at.isoformat(),
            resolved_by=row.resolved_by,
            result_key=row.result_key,
        )


def _payload_docs() -> str:
    lines = ["Payload fields per signal type:", ""]
    for kind, model in PAYLOADS.items():
        fields = ", ".join(
            f"{name}{'' if f.is_required() else '?'}" for name, f in model.model_fields.items()
        )
        lines.append(f"- `{kind.value}`: {fields or '(none)'}")
    return "\n".join(lines)


def _body_schema() -> dict[str, Any]:
    single = {"$ref": "#/components/schemas/Signal"}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        single,
                        {"$ref": "#/components/schemas/SignalBatch"},
                        {"type": "array", "items": single, "maxItems": MAX_BATCH},
                    ]
                }
            }
        },
    }


def router(intake: Intake, sources: Sources, authn: Authenticator) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["signals"])

    def staff(request: Request) -> Person:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotSignedInError("send 'Authorization: Bearer <token>'")
        person = authn.from_token(token.strip())
        if person is None:
            raise NotSignedInError("unknown API token")
        if person.role not in QUARANTINE_ROLES:
            raise NotAllowedError("the quarantine is for admins and ops")
        return person

    Staff = Annotated[Person, Depends(staff)]

    @api.post(
        "/signals",
        status_code=202,
        summary="Send one signal or a batch",
        description=__doc__.split("\n\n")[1] + "\n\n" + _payload_docs(),
        openapi_extra={"requestBody": _body_schema()},
        responses={
            202: {"description": "stored (or already stored)"},
            401: {"description": "no source proven"},
            413: {"description": "body or batch too large"},
            422: {"description": "field errors; the bad items are in the quarantine"},
            503: {"description": "the store is unavailable; nothing was stored"},
        },
    )
    async def post_signals(request: Request) -> JSONResponse:
        # Served by `SignalIntake` in front of the app; this route documents it (and
        # answers the same way should the app be mounted without it).
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            return _json(_too_large())
        body = await request.body()
        return _json(await accept_signals(intake, sources, request.headers, body))

    @api.get(
        "/quarantine",
        tags=["quarantine"],
        summary="Signals held back, with why",
        dependencies=[Depends(staff)],
    )
    def list_quarantine(
        status: Annotated[str | None, Query(pattern="^(open|reprocessed|discarded)$")] = "open",
        source: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        rows = held(intake.store, status, source, limit)
        items = [QuarantineItem.of(r).model_dump() for r in rows]
        return {"count": len(items), "items": items}

    @api.get("/quarantine/{row_id}", tags=["quarantine"], dependencies=[Depends(staff)])
    def show_quarantine(row_id: int) -> QuarantineItem:
        row = get_held(intake.store, row_id)
        if row is None:
            raise QuarantineNotFoundError(f"no quarantined item {row_id}")
        return QuarantineItem.of(row)

    @api.post(
        "/quarantine/{row_id}/reprocess",
        tags=["quarantine"],
        summary="Re-process an item, optionally with a corrected signal as the body",
    )
    async def reprocess_item(row_id: int, request: Request, person: Staff) -> JSONResponse:
        body = await request.body()
        corrected: Any = None
        if body.strip():
            try:
                corrected = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _json(_error(422, "the corrected signal is not JSON"))
        done = await asyncio.to_thread(reprocess, intake.store, row_id, person.id, corrected)
        if done is None:
            raise QuarantineNotFoundError(f"no quarantined item {row_id}")
        if done.already:
            return JSONResponse({"detail": f"item {row_id} is already {done.already}"}, 409)
        if not done.ok:
            errors = [e.to_dict() for e in done.errors]
            text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return JSONResponse({"detail": text, "errors": errors}, 422)
        intake.writer.notify()
        return JSONResponse({"id": row_id, "status": "reprocessed", "idempotency_key": done.key})

    @api.post("/quarantine/{row_id}/discard", tags=["quarantine"])
    def discard_item(row_id: int, person: Staff) -> JSONResponse:
        status = discard(intake.store, row_id, person.id)
        if status is None:
            raise QuarantineNotFoundError(f"no quarantined item {row_id}")
        if status != "open":
            return JSONResponse({"detail": f"item {row_id} is already {status}"}, 409)
        return JSONResponse({"id": row_id, "status": "discarded"})

    return api


Answer = tuple[int, dict[str, Any], dict[str, str] | None]


async def accept_signals(
    intake: Intake, sources: Sources, headers: Mapping[str, str], body: bytes
) -> Answer:
    """POST /v1/signals: (status, JSON body, extra headers)."""
    if len(body) > MAX_BODY:
        return _too_large()
    try:
        caller = sources.authenticate(headers, body)
    except SourceAuthError as exc:
        metrics.count_rejected("", ["unauthenticated"])
        return 401, {"detail": str(exc)}, {"www-authenticate": "Bearer"}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"not JSON: {getattr(exc, 'msg', 'not UTF-8')}"
        text = body.decode("utf-8", "replace")
        return _outcome(await _guard(intake.hold_unreadable(caller, text, why)))
    items = items_of(data)
    if items is None:
        text = body.decode("utf-8", "replace")
        why = 'expected a signal object, {"signals": [...]} or a list of signals'
        return _outcome(await _guard(intake.hold_unreadable(caller, text, why)))
    if not items:
        metrics.count_rejected(caller.name, ["empty"])
        return _error(422, "no signals in the body")
    if len(items) > MAX_BATCH:
        metrics.count_rejected(caller.name, ["too_large"])
        return _error(413, f"at most {MAX_BATCH} signals per request; got {len(items)}")
    key = headers.get("idempotency-key", "").strip()[:200]
    try:
        return _outcome(await _guard(intake.take(caller, items, key, clean_json(body))))
    except ServiceUnavailableError:
        metrics.SIGNALS_REJECTED.labels(caller.name, "unavailable").inc(len(items))
        raise


class SignalIntake:
    """POST /v1/signals straight to `accept_signals`, in front of FastAPI and its routing,
    sessions and exception layers: the intake's hot path, which the benchmark
    (bench/ingest.py) found spent more time in those layers than in its own work. Every
    other request goes on to the app; so does the same route's documentation."""

    def __init__(
        self, app: ASGIApp, intake: Intake, sources: Sources, extra: Mapping[str, str]
    ) -> None:
        self.app = app
        self.intake = intake
        self.sources = sources
        self.extra = [(k.encode(), v.encode()) for k, v in extra.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["path"] == "/v1/signals" and scope["method"] == "POST"
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            await self._send(send, _too_large())
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await self._send(send, _too_large())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            answer = await accept_signals(self.intake, self.sources, headers, b"".join(chunks))
        except ServiceUnavailableError as exc:
            answer = 503, {"detail": str(exc)}, None
        except Exception:  # the request edge: logged, never a traceback to the sender
            log.exception("signal intake failed")
            answer = 500, {"detail": "internal error; nothing was acknowledged, retry"}, None
        await self._send(send, answer)

    async def _send(self, send: Send, answer: Answer) -> None:
        status, payload, more = answer
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.extra,
            *((k.encode(), v.encode()) for k, v in (more or {}).items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _json(answer: Answer) -> JSONResponse:
    status, body, headers = answer
    return JSONResponse(body, status, headers=headers)


def _too_large() -> Answer:
    metrics.count_rejected("", ["too_large"])
    return _error(413, f"the body is over {MAX_BODY // 1024 // 1024} MB")


async def _guard(work: Any) -> Any:
    """A store that fails: 503, and the client retries (nothing half-acknowledged)."""
    try:
        return await work
    except Exception as exc:  # the request edge: logged, answered 503
        log.exception("signal intake failed")
        raise ServiceUnavailableError(
            "the signal store is unavailable; nothing was acknowledged, retry"
        ) from exc


def _outcome(outcome: Any) -> Answer:
    return (422 if outcome.errors else 202), outcome.to_json(), None


def _error(status: int, message: str) -> Answer:
    body: dict[str, Any] = {"detail": message}
    if status == 422:  # every 422 names its field(s), as the item errors do
        body["errors"] = [{"index": None, "field": "body", "message": message}]
    return status, body, None
