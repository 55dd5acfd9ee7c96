"""Vendors' webhooks: POST /v1/intercom/{source} and POST /v1/segment/{source}.

        auth: the source's secret, as the vendor signs (ingest/vendor_push.py)
        200  the delivery was read: each event stored (or already stored), linked (a
             Segment `group` call), ignored (nothing mapped for it), or held in the
             quarantine with its reason (`held`, `quarantine_ids`), every stored signal
             committed before this answer
        401  the signature or write key does not prove the source named in the path
        413  the body is too large; 503 the store is down (nothing acknowledged: retry)

`sources.yaml` names each source with `auth: intercom` or `auth: segment`, its secret's
environment variable and its `mapping:` (ingest/mapping.py).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from csautomation.api.intake import MAX_BODY
from csautomation.ingest.intake import Intake
from csautomation.ingest.sources import SourceAuthError, Sources
from csautomation.ingest.validate import FieldError, read_json
from csautomation.ingest.vendor_push import Answer, VendorIntake, prove

__all__ = ["router"]

log = logging.getLogger(__name__)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "read: each event stored, linked, ignored or held with its reason"},
    401: {"description": "the signature does not prove the source"},
    413: {"description": "the body is too large"},
    503: {"description": "the store is unavailable; nothing was acknowledged"},
}


def router(intake: Intake, sources: Sources) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["signals"])
    vendors = VendorIntake(intake)

    async def accept(kind: str, source: str, request: Request) -> JSONResponse:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"detail": _too_large()}, 413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"detail": _too_large()}, 413)
        try:
            caller = prove(sources, source, kind, request.headers, body)
        except SourceAuthError as exc:
            return JSONResponse({"detail": str(exc)}, 401)
        data, why = read_json(body)
        text = body.decode("utf-8", "replace")
        try:
            if why:
                answer = Answer()
                await vendors.hold(caller, answer, None, text, [FieldError("body", why)])
            elif kind == "intercom":
                answer = await vendors.intercom(caller, data, text)
            else:
                answer = await vendors.segment(caller, data, text)
        except Exception:  # the request edge: logged, answered 503, the vendor retries
            log.exception("%s delivery to source %s failed", kind, source)
            detail = "the signal store is unavailable; nothing was acknowledged, retry"
            return JSONResponse({"detail": detail}, 503)
        return JSONResponse(answer.to_json(), 200)

    @api.post(
        "/intercom/{source}",
        summary="An Intercom webhook notification",
        description=__doc__.split("\n\n")[1],
        responses=_RESPONSES,
    )
    async def post_intercom(source: str, request: Request) -> JSONResponse:
        return await accept("intercom", source, request)

    @api.post(
        "/segment/{source}",
        summary="A Segment-spec call (track, identify, group) or a batch of them",
        description=__doc__.split("\n\n")[1],
        responses=_RESPONSES,
    )
    async def post_segment(source: str, request: Request) -> JSONResponse:
        return await accept("segment", source, request)

    return api


def _too_large() -> str:
    return f"the body is over {MAX_BODY // 1024 // 1024} MB"
