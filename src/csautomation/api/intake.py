"""The signal intake: POST /v1/signals.

        auth: a source's token (Authorization: Bearer) or its HMAC signature
              (X-Csauto-Source, X-Csauto-Timestamp, X-Csauto-Signature), per sources.yaml
        202  every item stored durably (or already stored: a duplicate delivery)
        422  some item is bad: `errors` names each (index, field, message); the bad items
             are in the quarantine (`quarantine_ids`); the good ones were stored all the same.
             A body that cannot be read (not JSON, nested too deep, a number too long:
             ingest/validate.py) is quarantined as it came, with field "body"
        401  no source proven; 413 body or batch too large; 503 the store is down (nothing
             was stored: retry)

Each signal's `idempotency_key` (or, for a single signal, the Idempotency-Key header;
otherwise one derived from its content) makes a delivery repeated any number of times one
stored signal.

The traffic is served by `SignalIntake`, an ASGI layer in front of FastAPI that hands the
raw body to `accept_signals` (bench/ingest.py: FastAPI's and Starlette's layers cost more
than the intake's own work). The FastAPI route at the end of this module documents the
same endpoint for /docs and answers the same way when the app runs without that layer.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from csautomation import metrics
from csautomation.errors import ServiceUnavailableError
from csautomation.facts.model import PAYLOADS, Signal
from csautomation.ingest.intake import MAX_BATCH, Intake, items_of
from csautomation.ingest.sources import SourceAuthError, Sources
from csautomation.ingest.validate import clean_json, read_json

__all__ = ["MAX_BODY", "SignalBatch", "SignalIntake", "accept_signals", "router"]

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024


class SignalBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signals: list[Signal] = Field(max_length=MAX_BATCH)


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
    data, why = read_json(body)
    if why:
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


def router(intake: Intake, sources: Sources) -> APIRouter:
    """The documented route of POST /v1/signals (see the module docstring)."""
    api = APIRouter(prefix="/v1", tags=["signals"])

    @api.post(
        "/signals",
        status_code=202,
        summary="Send one signal or a batch",
        description=__doc__.split("\n\n")[2] + "\n\n" + _payload_docs(),
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

    return api


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
